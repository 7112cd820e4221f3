"""authsvc: a gRPC authentication service backed by Redis."""

__version__ = "0.1.0"
