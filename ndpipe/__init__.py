"""ndpipe: streaming NDJSON tools for Auth0 user exports and any large NDJSON."""

__version__ = "0.1.0"
