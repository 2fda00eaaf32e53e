"""The bench harness judges and reports what it measured, and nothing it did not (bench/).

The numbers themselves belong to `make bench`, never to a test; these check the harness: which
cases a selection runs, how targets are judged from case results (met, NOT met, not measured),
that a table row without numbers shows dashes, and one real, short run end to end on SQLite
(a ceiling, the verify-and-insert ceiling and WPPConnect inbound under wrk, start-up timing)
that must finish with every case ok and its rows stored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cases, report, signed_requests, targets
from tests.system_packages import ensure_program

REPO = Path(__file__).resolve().parent.parent


def _builders() -> dict[str, signed_requests.RequestBuilder]:
    built = {}
    for name, batch in cases.SHAPES:
        builder = signed_requests.BUILDERS[name](batch=batch, secret="s" * 32, nonce="n0", senders=10,
                                                 public_url="http://127.0.0.1:1")
        built[builder.key] = builder
    return built


def _case(key: str, rate: float, p99: float = 10.0, status: str = "ok", **fields: Any) -> cases.CaseResult:
    wrk = {"requests_per_second": rate, "latency_ms": {"50": p99 / 2, "99": p99}, "non_2xx": 0, "statuses": {}}
    return cases.CaseResult(key, "", status=status, key=key, wrk=wrk, **fields)


def test_a_selection_brings_the_ceilings_and_peers_its_ratios_need() -> None:
    plan = [case.key for case in cases.select(cases.all_cases(_builders()), ["twilio-postgres"])]
    assert plan == ["ceiling", "ceiling-insert-postgres", "peer-flask-twilio", "twilio-postgres"]
    web = [case.key for case in cases.select(cases.all_cases(_builders()), ["web"])]
    assert web == ["ceiling", "ceiling-insert-postgres", "peer-flask-twilio", "twilio-postgres-web"]
    outbound = [case.key for case in cases.select(cases.all_cases(_builders()), ["outbound"])]
    assert outbound == ["ceiling", "outbound-ceiling", "outbound-sqlite", "outbound-postgres"]
    with pytest.raises(ValueError, match="names no case"):
        cases.select(cases.all_cases(_builders()), ["telegram"])


def test_targets_are_met_not_met_or_not_measured() -> None:
    results = [
        _case("ceiling-insert-postgres", 1000.0, compare_to=None),
        _case("twilio-postgres", 650.0, p99=30.0, compare_to="ceiling-insert-postgres", peer="peer-flask-twilio"),
        _case("meta1-postgres", 500.0, p99=80.0, compare_to="ceiling-insert-postgres", peer="peer-pywa-meta"),
        _case("peer-flask-twilio", 300.0, compare_to=None),
        _case("peer-pywa-meta", 900.0, status="failed", compare_to=None),
    ]
    verdicts = [target.verdict for target in targets.judge(results, None)]
    share, web_share, p99 = targets.judge(results, None)[:3]
    assert share.met is True and "0.65" in share.measured
    assert web_share.met is None  # the web-tier case did not run
    assert p99.met is False and "1 of 2 within" in p99.measured and "meta1-postgres" in p99.measured
    peers = [target for target in targets.judge(results, None) if target.goal.startswith("ahead")]
    assert [peer.met for peer in peers] == [True, None]  # a failed peer is no comparison
    assert verdicts.count("not measured") == 6  # web tier, soak, both outbound, start-up, the failed peer


def test_the_soak_is_judged_on_its_curve() -> None:
    def soak(series: list[tuple[float, float]]) -> targets.Target:
        return targets.judge([_case("soak-twilio-postgres", 500.0, rss_series=series)], None)[3]

    flat = [(float(t), 100.0 + t / 300) for t in range(0, 301, 10)]
    assert soak(flat).met is True
    growing = [(float(t), 100.0 + t / 10) for t in range(0, 301, 10)]
    assert soak(growing).met is False  # 106 MB at 60 s, 130 MB at the end: +23 %
    assert soak(flat[:10]).met is None  # 90 s is too short to judge a 5-minute target


def test_a_row_without_numbers_shows_dashes() -> None:
    results = [cases.CaseResult("outbound drain: SQLite", "", status="failed", key="outbound-sqlite"),
               _case("ceiling", 20000.0, compare_to=None)]
    rows = report.table(results).splitlines()
    assert rows[2].startswith("| outbound drain: SQLite | – |") and rows[2].endswith("| FAILED |")
    assert "20,000" in rows[3]


def test_a_short_real_run_ends_ok(tmp_path: Path) -> None:
    ensure_program(Path("/usr/bin/wrk"), "wrk")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOOKLINE_")}
    completed = subprocess.run(
        [sys.executable, "bench/run.py", "--duration", "1", "--warmup", "1", "--requests", "20000",
         "--cases", "ceiling-insert-sqlite,wppconnect-sqlite", "--soak", "0", "--no-save"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    table = completed.stdout
    for name in ("ceiling: bare Starlette POST", "ceiling: verify + insert, SQLite", "wppconnect inbound: SQLite"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert "| ok" in row and "FAILED" not in row, row
    assert "start-up to /healthz" in table and "| –" not in table.split("start-up to /healthz")[1].splitlines()[0]
