"""ocpp-bridge: a reverse proxy that lets OCPP 1.6-J chargers run on an OCPP 2.0.1 / 2.1 CSMS."""

__version__ = "0.1.0"
