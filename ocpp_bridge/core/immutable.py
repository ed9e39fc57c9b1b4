"""``@immutable``: the dataclass decorator of the values the core makes per frame (events, commands, frames).

Why this exists: those values are immutable by design, and ``@dataclass(frozen=True)`` enforces that at run time
by assigning every field through ``object.__setattr__`` in ``__init__``: three times slower than a plain slotted
dataclass (0.31 against 0.10 us for three fields), and the core makes several per frame (5.5 % of its time in
``benchmarks/core_bench.py``). Here the type checker enforces it instead: to mypy (``--strict`` runs in the
test command) these classes are frozen, so an assignment to a field is a type error; at run time they are
slotted dataclasses whose equality and hash are the frozen ones' (``unsafe_hash``: by value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def immutable(cls: type[_T]) -> type[_T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
