"""Turning one run's case results into the printed table and the files in bench/results/.

Ratios are against the ceiling measured in the same run, never a stored number: the machine,
its load and its clock speed change between runs, a same-run ratio much less.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.cases import CaseResult

RESULTS = Path(__file__).resolve().parent / "results"
CEILING_PREFIX = "ceiling"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk_version = "unknown"
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk_version.split(" Copyright")[0].strip(),
    }


def _ceiling_rps(results: list[CaseResult]) -> float | None:
    for case in results:
        if case.name.startswith(CEILING_PREFIX) and case.wrk and case.wrk["requests_per_second"] > 0:
            return float(case.wrk["requests_per_second"])
    return None


def ratio(case: CaseResult, results: list[CaseResult]) -> float | None:
    ceiling = _ceiling_rps(results)
    if case.wrk is None or ceiling is None:
        return None
    return float(case.wrk["requests_per_second"]) / ceiling


def _verdict(case: CaseResult) -> str:
    verdict = "FAILED" if case.status == "failed" else case.status
    return verdict + (", disturbed" if case.warnings else "")


def table(results: list[CaseResult]) -> str:
    lines = [
        "| case | req/s | p50 ms | p99 ms | non-2xx | ratio to ceiling | result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for case in results:
        if case.wrk is None:
            lines.append(f"| {case.name} | – | – | – | – | – | {_verdict(case)} |")
            continue
        latency = case.wrk["latency_ms"]
        share = ratio(case, results)
        lines.append(
            f"| {case.name} | {case.wrk['requests_per_second']:,.0f} | {latency.get('50', float('nan')):.2f} | "
            f"{latency.get('99', float('nan')):.2f} | {case.wrk['non_2xx']} | "
            f"{'–' if share is None else f'{share:.3f}'} | {_verdict(case)} |"
        )
    return "\n".join(lines)


def budget_lines(results: list[CaseResult]) -> list[str]:
    """DESIGN.md section 7's line for the inbound path, with this run's ratios."""
    lines = []
    for case in results:
        share = ratio(case, results)
        if case.name.startswith("twilio inbound") and share is not None and case.wrk is not None:
            lines.append(
                f"Budget (DESIGN.md §7, verify + idempotent insert + enqueue + ack): {case.name} = "
                f"{case.wrk['requests_per_second']:,.0f} req/s = {share:.3f} of the same-run ceiling"
                f"{'' if case.status == 'ok' else f' [{case.status}]'}"
            )
    if lines:
        lines.append(
            "(DESIGN's budget is >= 0.6 of a raw-asyncpg insert ceiling, which this harness does not run; "
            "the bare-Starlette ceiling is higher, so these ratios are lower bounds of that one.)"
        )
    return lines


def details(results: list[CaseResult]) -> list[str]:
    """Why a case failed or was skipped, what it stored, and what its server complained about."""
    lines = []
    for case in results:
        facts = list(case.reasons) + list(case.warnings)
        if case.cpu and case.wrk:
            per_request = case.cpu["server_cores"] / max(case.wrk["requests_per_second"], 1e-9) * 1e6
            facts.append(f"CPU during the run: the server {case.cpu['server_cores']:.2f} cores "
                         f"({per_request:,.0f} µs per request), the bench's processes in all "
                         f"{case.cpu['ours_cores']:.2f}, anything else {case.cpu['others_cores']:.2f}")
        if case.wrk is not None and case.messages_total is not None and case.jobs_left is not None:
            ok = sum(n for code, n in case.wrk["statuses"].items() if 200 <= int(code) < 300)
            facts.append(f"{ok} answered 2xx, {case.stored_messages} new messages stored; the queue worker ran "
                         f"{case.messages_total - case.jobs_left} of the {case.messages_total} jobs enqueued "
                         f"(warm-up included) before the server stopped")
        facts += [f"server log: {line}" for line in case.server_log_problems]
        lines += [f"- {case.name}: {fact}" for fact in facts]
    return lines


def markdown(results: list[CaseResult], settings: dict[str, Any], started: datetime, host: dict[str, Any]) -> str:
    head = [
        f"# hookline bench, {started:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Machine: {host['cores']} cores, {host['cpu']}, {host['system']}; Python {host['python']}; {host['wrk']}.",
        f"Load: wrk, {settings['connections']} connections, {settings['threads']} threads, "
        f"{settings['duration']:g} s per case after a {settings['warmup']:g} s warm-up; one uvicorn worker per server; "
        f"{settings['senders']} distinct senders.",
        "",
        table(results),
        "",
        *[f"- {case.name}: {case.measures}" for case in results if case.measures],
        "",
    ]
    extra = budget_lines(results)
    notes = details(results)
    return "\n".join(head + extra + ([""] + notes if notes else [])) + "\n"


def write(results: list[CaseResult], settings: dict[str, Any], started: datetime, host: dict[str, Any]) -> tuple[Path, Path]:
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / started.strftime("%Y-%m-%dT%H%M%SZ")
    data = {
        "started_utc": started.isoformat(),
        "machine": host,
        "settings": settings,
        "ceiling_requests_per_second": _ceiling_rps(results),
        "cases": [dict(case.as_json(), ratio_to_ceiling=ratio(case, results)) for case in results],
    }
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results, settings, started, host), encoding="utf-8")
    return json_path, md_path
