"""`make bench`: ceilings, peers, hookline inbound and outbound, a soak and start-up, in one run, and report.

Order: make sure wrk exists, sign one request file per request builder (bench/signed_requests.py)
for hookline's port, then run the cases one after another (never two servers at once: they would
share the 2 cores with each other as well as with wrk), then the soak (Twilio inbound on
PostgreSQL for --soak seconds, its request file sized from the rate just measured) and the
start-up timing; print the table and the targets and write bench/results/<UTC time>.json, .md and
.png. Every server is stopped when its case ends, whatever happened; SIGTERM/SIGINT unwind the
same way.
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

from bench import cases, cpu, report, servers, signed_requests, startup, targets, wrk  # noqa: E402

#: Requests per file for one-message requests; a batch-of-n file gets 1/n as many (as many messages).
DEFAULT_REQUESTS = 300_000


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per case (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each case (default 2)")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                        help=f"signed requests to pre-generate for the ceilings' file (default {DEFAULT_REQUESTS}); "
                             "the other files get a third as many (a batch-of-10 file a tenth of that: as many messages)")
    parser.add_argument("--senders", type=int, default=1000, help="distinct customer phones they come from (default 1000)")
    parser.add_argument("--cases", action="append", default=[], metavar="PATTERN[,PATTERN…]",
                        help="run only these cases (and the ceiling): keys such as twilio-sqlite, meta10-postgres, "
                             "a part (meta, meta1, meta10, twilio, sqlite, postgres) or a glob; default: all")
    parser.add_argument("--mixed-senders", action="store_true",
                        help="each message from a random sender (batches overlap in any order) instead of "
                             "consecutive senders; see docs/performance.md")
    parser.add_argument("--soak", type=float, default=targets.SOAK_SECONDS, metavar="SECONDS",
                        help=f"seconds of the memory soak, Twilio inbound on PostgreSQL (default {targets.SOAK_SECONDS:g}, "
                             "what the RSS target is stated for; 0: none)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL cases")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing to bench/results/")
    return parser.parse_args()


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally`, stopping servers


def main() -> int:
    args = _arguments()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    nonce, secret, port = signed_requests.new_nonce(), secrets.token_hex(16), servers.free_port()
    builders = {}
    for name, batch in cases.SHAPES:
        builder = signed_requests.BUILDERS[name](
            batch=batch, secret=secret, nonce=nonce, senders=args.senders, public_url=f"http://127.0.0.1:{port}",
            mixed_senders=args.mixed_senders)
        builders[builder.key] = builder
    patterns = [pattern.strip() for value in args.cases for pattern in value.split(",") if pattern.strip()]
    soak_wanted = not patterns or "soak" in patterns
    patterns = [pattern for pattern in patterns if pattern != "soak"]
    try:
        plan = cases.select(cases.all_cases(builders), patterns) if patterns else cases.all_cases(builders)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
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
    running = [case for case in plan if not (args.no_postgres and case.database == "postgres")]
    results: list[cases.CaseResult] = []
    request_files: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        workdir = Path(tmp)
        files = {}
        for key in dict.fromkeys(case.file for case in running if case.file):
            # The ceilings' file must outlast the bare ceiling (tens of thousands of req/s); the others a storing path.
            share = 1 if key == cases.CEILING_FILE else 3
            count = max(20, args.requests // share // builders[key].batch)
            files[key] = _signed_file(builders[key], workdir / f"requests-{key}.txt", count, request_files)
        load = cases.Load(
            wrk_binary=binary, duration=args.duration, warmup=args.warmup, workdir=workdir, hookline_port=port,
            files=files,
        )
        for case in plan:
            if case not in running:
                results.append(case.skipped("--no-postgres"))
                continue
            shape = f"{args.warmup:g} s warm-up + {args.duration:g} s" if case.file else "a pre-filled queue drained"
            print(f"bench: {case.key} ({shape})…", flush=True)
            try:
                result = case.run(load)
            except KeyboardInterrupt:
                print("bench: interrupted; servers stopped, nothing written", file=sys.stderr)
                return 130
            except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
                result = cases.CaseResult(case.name, "", status="failed", reasons=[f"{type(exc).__name__}: {exc}"], key=case.key)
            results.append(result)
            for reason in result.reasons:
                print(f"bench:   {result.status}: {reason}", flush=True)
        soak_seconds = args.soak if soak_wanted and not args.no_postgres else 0.0
        if soak_seconds > 0:
            results.append(_soak(load, builders["twilio"], results, soak_seconds, request_files))
        print("bench: start-up of hookline serve…", flush=True)
        try:
            started_up: dict[str, float] | None = startup.measure(workdir, builders["twilio"])
        except Exception as exc:  # noqa: BLE001 - a number not measured is reported as such
            print(f"bench:   start-up not measured: {type(exc).__name__}: {exc}", flush=True)
            started_up = None
    settings = {
        "duration": args.duration, "warmup": args.warmup, "connections": wrk.CONNECTIONS, "threads": wrk.THREADS,
        "timeout": wrk.TIMEOUT, "requests_generated": args.requests, "request_files": request_files,
        "senders": args.senders, "mixed_senders": args.mixed_senders, "cases": [case.key for case in plan],
        "soak_seconds": soak_seconds, "startup": started_up,
        "cores_busy_before_start": round(busy, 2), "code": report.code(),
    }
    judged = targets.judge(results, started_up)
    host = report.machine()
    print()
    print(report.table(results))
    print()
    for line in report.target_lines(judged) + [""] + report.details(results):
        print(line)
    if not args.no_save:
        written = report.write(results, judged, settings, started, host)
        print("\nwrote " + ", ".join(str(path.relative_to(servers.REPO)) for path in written))
    return 1 if any(case.status == "failed" for case in results) else 0


def _signed_file(builder: signed_requests.RequestBuilder, path: Path, count: int,
                 request_files: dict[str, dict[str, int]], name: str | None = None,
                 warm_end: int | None = None) -> cases.RequestFile:
    """Sign `count` requests into `path`; the first `warm_end` (a tenth) are the warm-up's."""
    began = time.monotonic()
    builder.write(path, count)
    request_files[name or builder.key] = {"requests": count, "messages_per_request": builder.batch,
                                          "bytes": path.stat().st_size}
    print(f"bench: signed {count} {builder.label} requests ({path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.monotonic() - began:.1f} s", flush=True)
    return cases.RequestFile(builder, path, warm_end=count // 10 if warm_end is None else warm_end, end=count)


#: Requests per second assumed for sizing the soak's file when twilio-postgres did not run.
SOAK_RATE_GUESS = 3000.0


def _soak(load: cases.Load, builder: signed_requests.RequestBuilder, results: list[cases.CaseResult],
          seconds: float, request_files: dict[str, dict[str, int]]) -> cases.CaseResult:
    """Twilio inbound on PostgreSQL for `seconds`: the RSS curve the memory target is judged on.
    Its file holds 1.3 × what the rate measured a moment ago would send, so it never repeats."""
    measured = next((case.rate() for case in results if case.key == "twilio-postgres" and case.rate()), None)
    rate = (measured or SOAK_RATE_GUESS) * 1.3
    warm = int(rate * load.warmup) + 20
    load.files["soak"] = _signed_file(builder, load.workdir / "requests-soak.txt", warm + int(rate * seconds),
                                      request_files, "soak", warm_end=warm)
    name = f"soak: {builder.label}: PostgreSQL, {seconds:g} s"
    print(f"bench: {name} ({load.warmup:g} s warm-up + {seconds:g} s)…", flush=True)
    try:
        result = cases.hookline_inbound(load, "soak", name, "postgres", duration=seconds)
    except Exception as exc:  # noqa: BLE001 - reported, like any case
        result = cases.CaseResult(name, "", status="failed", reasons=[f"{type(exc).__name__}: {exc}"], key="soak-twilio-postgres")
    result.key, result.compare_to, result.peer = "soak-twilio-postgres", "ceiling-insert-postgres", None
    for reason in result.reasons:
        print(f"bench:   {result.status}: {reason}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
