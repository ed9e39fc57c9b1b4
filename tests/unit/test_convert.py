"""Field conversions whose fast paths must give exactly what the general path gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from ocpp_bridge.core.convert import _number, rfc3339, timestamp

_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), _OFFSETS,
       st.sampled_from(["ms", "none", "us", "z"]))
def test_timestamp_is_rfc3339_of_the_instant_whatever_the_input_spelling(moment: datetime, offset: timezone,
                                                                        spelling: str) -> None:
    moment = moment.replace(tzinfo=offset)
    if spelling == "ms":  # the spelling the fast path returns unchanged
        moment = moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        if moment.year < 1000:
            text = f"{moment.year:04d}" + text[text.index("-"):]
    elif spelling == "none":
        text = moment.replace(microsecond=0).isoformat()
    elif spelling == "us":
        text = moment.isoformat(timespec="microseconds")
    else:
        text = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "z")
    assert timestamp(text) == rfc3339(datetime.fromisoformat(text.replace("z", "Z")))


@given(st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(str),
                 st.from_regex(r"[+-]?\d{0,25}(\.\d{0,5})?([eE][+-]?\d{1,4})?", fullmatch=True), st.text(max_size=12)))
def test_number_accepts_what_the_reference_accepts(text: str) -> None:
    assert _number(text) == _reference_number(text)


def _reference_number(text: str) -> int | float | None:
    """The conversion as it was written before the fast paths (raising ValueError for every decimal)."""
    import math
    import re

    if text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    if not re.fullmatch(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", text, re.ASCII):
        return None
    try:
        whole = int(text)
    except ValueError:
        pass
    else:
        if -(2**63) <= whole <= 2**64 - 1:
            return whole
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
