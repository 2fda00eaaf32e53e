"""Every bundled provider (and the recording provider the core's tests use) passes the provider
conformance suite of core.testing, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conformance_recorder import RecorderConformance


class TestRecorderConformance(RecorderConformance):
    """The recording provider: what tests/recording_provider.py promises authors it shows."""
