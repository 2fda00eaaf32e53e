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

from bench import chart
from bench.cases import CaseResult
from bench.targets import Target

RESULTS = Path(__file__).resolve().parent / "results"
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


def _by_key(results: list[CaseResult]) -> dict[str, CaseResult]:
    return {case.key: case for case in results}


def ratio(case: CaseResult, results: list[CaseResult], to: str | None = None) -> float | None:
    """This case's rate over its ceiling's (or `to`'s), both from this run; None when either is
    missing or did not finish ok."""
    other = _by_key(results).get(to or case.compare_to or "")
    if other is None or other.status != "ok" or case.rate() is None or not other.rate():
        return None
    return case.rate() / other.rate()  # type: ignore[operator]


def _verdict(case: CaseResult) -> str:
    verdict = "FAILED" if case.status == "failed" else case.status
    return verdict + (", disturbed" if case.warnings else "")


def _cpu_per_unit(case: CaseResult) -> float | None:
    """Server CPU µs per request (per message for a drain): cores used / rate."""
    if not case.cpu or not case.rate():
        return None
    return case.cpu["server_cores"] / case.rate() * 1e6  # type: ignore[operator]


def _number(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "–" if value is None else pattern.format(value)


def _short(key: str | None, results: list[CaseResult]) -> str:
    other = _by_key(results).get(key or "")
    return other.name.split(":", 1)[-1].strip() if other else (key or "")


def table(results: list[CaseResult]) -> str:
    """req/s is requests (a drain's row shows messages); msg/s is req/s × the messages each
    request carries. CPU is the server process's (not PostgreSQL's), per request or message."""
    lines = [
        "| case | req/s | msg/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | ratio | vs peer | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in results:
        rate = case.rate()
        if rate is None:
            lines.append(f"| {case.name} | – | – | – | – | – | – | – | – | {_verdict(case)} |")
            continue
        share = ratio(case, results)
        against = f"{share:.2f} of {_short(case.compare_to, results)}" if share is not None else "–"
        versus = ratio(case, results, case.peer) if case.peer else None
        messages = rate if case.drain else rate * case.batch
        lines.append(
            f"| {case.name} | {'–' if case.drain else f'{rate:,.0f}'} | {_number(messages)} | "
            f"{_number(case.latency_ms('50'), '{:.2f}')} | {_number(case.latency_ms('99'), '{:.2f}')} | "
            f"{_number(_cpu_per_unit(case))} | {_number(case.peak_rss_mb)} | {against} | "
            f"{'–' if versus is None else f'{versus:.2f}×'} | {_verdict(case)} |"
        )
    return "\n".join(lines)


def target_lines(targets: list[Target]) -> list[str]:
    return ["| target | measured | verdict |", "|---|---|---|"] + [
        f"| {target.goal} | {target.measured} | {target.verdict} |" for target in targets
    ]


def details(results: list[CaseResult]) -> list[str]:
    """Why a case failed or was skipped, what it stored, and what its server complained about."""
    lines = []
    for case in results:
        facts = list(case.reasons) + list(case.warnings)
        per_unit = _cpu_per_unit(case)
        if case.cpu and per_unit is not None:
            unit = "message" if case.drain else "request"
            per_message = f", {per_unit / case.batch:,.0f} µs per message" if case.batch > 1 else ""
            facts.append(f"CPU during the run: the server {case.cpu['server_cores']:.2f} cores "
                         f"({per_unit:,.0f} µs per {unit}{per_message}), the bench's processes in all "
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


def _startup_line(startup: dict[str, float] | None) -> str:
    if not startup:
        return "Start-up: not measured."
    return (f"Start-up of `hookline serve` to /healthz 200 (median of {startup['repeats']:g}): "
            f"{startup['first_start_s']:.2f} s on a fresh SQLite home (migrations, secret key), "
            f"{startup['restart_s']:.2f} s restarted on it.")


def markdown(results: list[CaseResult], targets: list[Target], settings: dict[str, Any], started: datetime,
             host: dict[str, Any], chart_name: str | None) -> str:
    lines = [
        f"# hookline bench, {started:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"Machine: {host['cores']} cores, {host['cpu']}, {host['system']}; Python {host['python']}; {host['wrk']}.",
        _code_line(settings["code"]),
        f"Load: wrk, {settings['connections']} connections, {settings['threads']} threads, "
        f"{settings['duration']:g} s per case after a {settings['warmup']:g} s warm-up; one worker per server; "
        f"{settings['senders']} distinct senders{' (mixed: --mixed-senders)' if settings.get('mixed_senders') else ''}.",
        _files_line(settings["request_files"]),
        "",
        table(results),
        "",
        *target_lines(targets),
        "",
        _startup_line(settings.get("startup")),
        "",
        *[f"- {case.name}: {case.measures}" for case in results if case.measures],
    ]
    if chart_name:
        lines += ["", f"![throughput, p99 and memory per case]({chart_name})"]
    notes = details(results)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def write(results: list[CaseResult], targets: list[Target], settings: dict[str, Any], started: datetime,
          host: dict[str, Any]) -> list[Path]:
    """bench/results/<time>.json, .md and .png (the chart is left out, and said so, when
    matplotlib is missing: the numbers matter more)."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / started.strftime("%Y-%m-%dT%H%M%SZ")
    data = {
        "started_utc": started.isoformat(),
        "machine": host,
        "settings": settings,
        "targets": [dict(goal=t.goal, measured=t.measured, met=t.met) for t in targets],
        "cases": [dict(case.as_json(), ratio=ratio(case, results),
                       ratio_to_peer=ratio(case, results, case.peer) if case.peer else None) for case in results],
    }
    json_path, md_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    written = [json_path, md_path]
    try:
        chart.write(results, png_path, f"hookline bench {started:%Y-%m-%d %H:%M} UTC, commit {settings['code']['commit']}")
        written.append(png_path)
    except ImportError as exc:
        print(f"bench: no chart ({exc}); `make bench` installs matplotlib (the bench extra)", flush=True)
    md_path.write_text(markdown(results, targets, settings, started, host, png_path.name if png_path in written else None),
                       encoding="utf-8")
    return written
