"""The REST API under /api (docs/api.md)."""
