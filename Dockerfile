# ocpp-bridge as a sidecar container: small, non-root, read-only root filesystem friendly.
# Build:  docker build -t ocpp-bridge .
# Run:    docker run -p 9000:9000 -e OCPP_BRIDGE_UPSTREAM=wss://csms.example.com/ocpp \
#                    -v bridge-state:/var/lib/ocpp-bridge ocpp-bridge
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ocpp_bridge ./ocpp_bridge
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/ocpp-bridge --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/ocpp-bridge && chown bridge /var/lib/ocpp-bridge
COPY --from=build /install /usr/local
ENV OCPP_BRIDGE_LISTEN=0.0.0.0:9000 \
    OCPP_BRIDGE_STATE=/var/lib/ocpp-bridge/state.db \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/ocpp-bridge"]
USER 10001
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["ocpp-bridge"]
CMD ["serve"]
