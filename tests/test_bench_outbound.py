"""The outbound drain case of the bench (bench/outbound.py) with a small queue: it must finish
ok, count every message, and its fake must have seen each exactly once. On SQLite always, on
PostgreSQL as the rest of the suite has it (skipped when none answers, an error in CI); the case
makes and drops its own database on that server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cases, outbound
from tests.conftest import clean_postgres

MESSAGES = 120


def _load(tmp_path: Path) -> cases.Load:
    return cases.Load(wrk_binary="", duration=1.0, warmup=0.0, workdir=tmp_path, hookline_port=0, files={})


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_drain_sends_each_message_once(tmp_path: Path, database: str, postgres_url: str | None) -> None:
    if database == "postgres":
        clean_postgres(postgres_url)  # no server: skipped, or an error under HOOKLINE_REQUIRE_POSTGRES=1
    case = outbound.outbound(_load(tmp_path), database, messages=MESSAGES)
    assert case.status == "ok", case.reasons
    assert case.key == f"outbound-{database}" and case.compare_to == "outbound-ceiling"
    assert case.drain is not None and case.drain["messages"] == MESSAGES
    assert case.drain["per_second"] > 0 and case.drain["latency_ms"]["50"] <= case.drain["latency_ms"]["99"]
    assert case.cpu is not None and case.cpu["server_cores"] > 0
    assert case.jobs_left == 0


def test_ceiling_sends_each_message_once(tmp_path: Path) -> None:
    case = outbound.outbound_ceiling(_load(tmp_path), messages=MESSAGES)
    assert case.status == "ok", case.reasons
    assert case.drain is not None and case.drain["messages"] == MESSAGES and case.compare_to is None


def test_a_lost_or_repeated_send_fails_the_case() -> None:
    """The check the drain relies on: ids the fake saw against the ids queued."""
    case = cases.CaseResult("x", "")
    outbound._check_arrivals(case, {"ids": [1, 2, 2, 9]}, [1, 2, 3])
    assert case.status == "failed"
    assert any("never reached" in reason for reason in case.reasons)
    assert any("more than once" in reason for reason in case.reasons)
    assert any("not ours" in reason for reason in case.reasons)
