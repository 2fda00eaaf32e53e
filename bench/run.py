"""`make bench`: measure the ceiling and hookline's Twilio inbound path in one run, and report.

Order: make sure wrk exists, sign the request file for hookline's port, then run the cases one
after another (never two servers at once: they would share the 2 cores with each other as well as
with wrk), print the table and write bench/results/<UTC time>.json and .md. Every server is
stopped when its case ends, whatever happened; SIGTERM/SIGINT unwind the same way.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: `python bench/run.py`

from bench import cases, cpu, report, servers, signed_requests, wrk  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per case (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each case (default 2)")
    parser.add_argument("--requests", type=int, default=300_000, help="signed requests to pre-generate (default 300000)")
    parser.add_argument("--senders", type=int, default=1000, help="distinct customer phones they come from (default 1000)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL case")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing to bench/results/")
    return parser.parse_args()


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally`, stopping servers


def main() -> int:
    args = _arguments()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        binary = wrk.ensure_wrk()
    except wrk.WrkMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    busy = cpu.idle_check()
    if busy > cpu.DISTURBED_CORES:
        print(f"bench: warning: {busy:.2f} of {os.cpu_count()} cores are busy before the bench starts; "
              "cases measured while that lasts are marked disturbed", flush=True)
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        workdir = Path(tmp)
        load = cases.Load(
            wrk_binary=binary, requests_file=workdir / "requests.txt", nonce=signed_requests.new_nonce(),
            warm_end=args.requests // 10, end=args.requests, duration=args.duration, warmup=args.warmup,
            workdir=workdir, hookline_port=servers.free_port(), auth_token=secrets.token_hex(16),
        )
        began = time.monotonic()
        signed_requests.write(
            load.requests_file, args.requests, f"http://127.0.0.1:{load.hookline_port}{cases.WEBHOOK_PATH}",
            load.auth_token, load.nonce, args.senders,
        )
        print(f"bench: signed {args.requests} requests in {time.monotonic() - began:.1f} s", flush=True)
        chosen = [cases.ceiling, cases.hookline_sqlite] + ([] if args.no_postgres else [cases.hookline_postgres])
        results = []
        for run_case in chosen:
            print(f"bench: {run_case.__name__} ({args.warmup:g} s warm-up + {args.duration:g} s)…", flush=True)
            try:
                result = run_case(load)
            except KeyboardInterrupt:
                print("bench: interrupted; servers stopped, nothing written", file=sys.stderr)
                return 130
            except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
                result = cases.CaseResult(run_case.__name__, "", status="failed", reasons=[f"{type(exc).__name__}: {exc}"])
            results.append(result)
            for reason in result.reasons:
                print(f"bench:   {result.status}: {reason}", flush=True)
    if args.no_postgres:
        results.append(cases.CaseResult("twilio inbound: PostgreSQL", "", status="skipped", reasons=["--no-postgres"]))
    settings = {
        "duration": args.duration, "warmup": args.warmup, "connections": wrk.CONNECTIONS, "threads": wrk.THREADS,
        "timeout": wrk.TIMEOUT, "requests_generated": args.requests, "senders": args.senders,
        "cores_busy_before_start": round(busy, 2),
    }
    host = report.machine()
    print()
    print(report.table(results))
    print()
    for line in report.budget_lines(results) + [""] + report.details(results):
        print(line)
    if not args.no_save:
        json_path, md_path = report.write(results, settings, started, host)
        print(f"\nwrote {json_path.relative_to(servers.REPO)} and {md_path.relative_to(servers.REPO)}")
    return 1 if any(case.status == "failed" for case in results) else 0


if __name__ == "__main__":
    sys.exit(main())
