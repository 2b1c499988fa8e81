"""mpp-server: the server side of a wallet whose customers pay Kaspi Pay QR codes."""

__version__ = "0.1.0"
