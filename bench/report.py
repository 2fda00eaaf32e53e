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
#: Changes there do not change what the server runs.
NOT_SERVER_CODE = ("bench/", "docs/", "tests/")


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


def code() -> dict[str, Any]:
    """What code was measured: the commit and the files changed in the working tree (the bench
    runs what is on disk, committed or not)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=normal").splitlines()
               if line[3:] and not line[3:].startswith(NOT_SERVER_CODE)]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "uncommitted": changed}


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
    """req/s is requests; msg/s is req/s × the messages each request carries (its batch)."""
    lines = [
        "| case | req/s | msg/s | p50 ms | p99 ms | non-2xx | ratio to ceiling | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in results:
        if case.wrk is None:
            lines.append(f"| {case.name} | – | – | – | – | – | – | {_verdict(case)} |")
            continue
        latency = case.wrk["latency_ms"]
        share = ratio(case, results)
        rate = float(case.wrk["requests_per_second"])
        messages = "–" if case.name.startswith(CEILING_PREFIX) else f"{rate * case.batch:,.0f}"
        lines.append(
            f"| {case.name} | {rate:,.0f} | {messages} | {latency.get('50', float('nan')):.2f} | "
            f"{latency.get('99', float('nan')):.2f} | {case.wrk['non_2xx']} | "
            f"{'–' if share is None else f'{share:.3f}'} | {_verdict(case)} |"
        )
    return "\n".join(lines)


def budget_lines(results: list[CaseResult]) -> list[str]:
    """DESIGN.md section 7's line for the inbound path, with this run's ratios (every provider's
    inbound case; for a batch, per request and per message)."""
    lines = []
    for case in results:
        share = ratio(case, results)
        if " inbound" in case.name and share is not None and case.wrk is not None:
            rate = float(case.wrk["requests_per_second"])
            per_message = (f" ({rate * case.batch:,.0f} messages/s = {share * case.batch:.3f} of the ceiling's rate)"
                           if case.batch > 1 else "")
            lines.append(
                f"Budget (DESIGN.md §7, verify + idempotent insert + enqueue + ack): {case.name} = "
                f"{rate:,.0f} req/s = {share:.3f} of the same-run ceiling{per_message}"
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
            per_message = f", {per_request / case.batch:,.0f} µs per message" if case.batch > 1 else ""
            facts.append(f"CPU during the run: the server {case.cpu['server_cores']:.2f} cores "
                         f"({per_request:,.0f} µs per request{per_message}), the bench's processes in all "
                         f"{case.cpu['ours_cores']:.2f}, anything else {case.cpu['others_cores']:.2f}")
        if case.wrk is not None and case.messages_total is not None and case.jobs_left is not None:
            ok = sum(n for code, n in case.wrk["statuses"].items() if 200 <= int(code) < 300)
            carried = f" ({ok * case.batch} messages)" if case.batch > 1 else ""
            facts.append(f"{ok} answered 2xx{carried}, {case.stored_messages} new messages stored; the queue worker ran "
                         f"{case.messages_total - case.jobs_left} of the {case.messages_total} jobs enqueued "
                         f"(warm-up included) before the server stopped")
        facts += [f"server log: {line}" for line in case.server_log_problems]
        lines += [f"- {case.name}: {fact}" for fact in facts]
    return lines


def _code_line(code: dict[str, Any]) -> str:
    changed = code["uncommitted"]
    if not changed:
        return f"Code: commit {code['commit']} (clean outside {_listed(NOT_SERVER_CODE)})."
    shown = ", ".join(changed[:8]) + (", …" if len(changed) > 8 else "")
    return (f"Code: commit {code['commit']} with {len(changed)} uncommitted file(s)/folder(s) outside "
            f"{_listed(NOT_SERVER_CODE)} ({shown}).")


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def _files_line(files: dict[str, dict[str, int]]) -> str:
    return "Request files: " + "; ".join(
        f"{key} {info['requests']:,} requests × {info['messages_per_request']} message(s), {info['bytes'] / 1e6:.0f} MB"
        for key, info in files.items()
    ) + "."


def markdown(results: list[CaseResult], settings: dict[str, Any], started: datetime, host: dict[str, Any]) -> str:
    head = [
        f"# hookline bench, {started:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Machine: {host['cores']} cores, {host['cpu']}, {host['system']}; Python {host['python']}; {host['wrk']}.",
        _code_line(settings["code"]),
        f"Load: wrk, {settings['connections']} connections, {settings['threads']} threads, "
        f"{settings['duration']:g} s per case after a {settings['warmup']:g} s warm-up; one uvicorn worker per server; "
        f"{settings['senders']} distinct senders{' (mixed: --mixed-senders)' if settings.get('mixed_senders') else ''}.",
        _files_line(settings["request_files"]),
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
