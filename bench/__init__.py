"""hookline's benchmark harness: `make bench` (see docs/performance.md)."""
