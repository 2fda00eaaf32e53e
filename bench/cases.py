"""The cases: what each one starts, what it loads, and whether its numbers can be trusted.

Every case gets the same wrk settings and the same request stream (bench/post.lua over the signed
request file): a warm-up on lines [0, warm_end) whose numbers are kept but not compared, then
the measured run on lines [warm_end, end). Only the hookline cases store anything; they are
checked afterwards against the database: each 2xx answer must have stored a new message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import cpu, hookline_config, servers, signed_requests, storage, wrk

WEBHOOK_PATH = "/webhooks/whatsapp/twilio"


@dataclass
class Load:
    """What every case shares in one run."""

    wrk_binary: str
    requests_file: Path
    nonce: str
    warm_end: int
    end: int
    duration: float
    warmup: float
    workdir: Path
    hookline_port: int  # the port the request file was signed for
    auth_token: str


@dataclass
class CaseResult:
    name: str
    measures: str
    status: str = "ok"  # ok, failed, skipped
    reasons: list[str] = field(default_factory=list)
    wrk: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    stored_messages: int | None = None  # new messages from the measured slice, counted after stop
    messages_total: int | None = None  # warm-up included: one queue job each
    jobs_left: int | None = None  # queue rows not yet done when the server stopped
    server_log_problems: list[str] = field(default_factory=list)
    cpu: dict[str, Any] | None = None  # cores used during the measured run (bench/cpu.py)
    warnings: list[str] = field(default_factory=list)  # numbers taken, but not to be trusted

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.reasons.append(reason)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _summary(result: wrk.WrkResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("output")
    return data


def _check_http(case: CaseResult, label: str, result: wrk.WrkResult) -> None:
    """Any answer but 2xx, or any socket error, fails the case: its throughput is not the path's."""
    if result.non_2xx:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()) if not 200 <= code < 300)
        case.fail(f"{label}: {result.non_2xx} non-2xx responses ({codes})")
    errors = {name: n for name, n in result.socket_errors.items() if n}
    if errors:
        case.fail(f"{label}: socket errors {errors}")
    if result.requests == 0:
        case.fail(f"{label}: no request completed")


def _log_problems(log: Path, limit: int = 5) -> list[str]:
    """The first distinct warning/error lines the server wrote (it logs at warning and above)."""
    seen: list[str] = []
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return seen
    for line in lines:
        if ("WARNING" in line or "ERROR" in line or "Traceback" in line) and "secret.key" not in line:
            text = line.split(" ", 2)[-1][:300]  # drop the timestamp so repeats collapse
            if text not in seen:
                seen.append(text)
        if len(seen) == limit:
            break
    return seen


def _load(
    case: CaseResult, load: Load, server: servers.Running, extra_pids: Callable[[], list[int]] = lambda: []
) -> wrk.WrkResult:
    url = server.url + WEBHOOK_PATH
    warm = wrk.run(load.wrk_binary, url, load.warmup, load.requests_file, 0, load.warm_end)
    case.warmup = _summary(warm)
    _check_http(case, "warm-up", warm)
    window = cpu.Window([server.pid, *extra_pids()])
    window.start()
    measured = wrk.run(load.wrk_binary, url, load.duration, load.requests_file, load.warm_end, load.end)
    usage = window.stop()
    case.wrk = _summary(measured)
    case.cpu = asdict(usage)
    _check_http(case, "measured", measured)
    if usage.disturbed:
        case.warnings.append(
            f"disturbed: other processes used {usage.others_cores:.2f} of {os.cpu_count()} cores during the run; "
            "rerun on a quiet machine"
        )
    return measured


def ceiling(load: Load) -> CaseResult:
    case = CaseResult("ceiling: bare Starlette POST", "uvicorn + Starlette, read body, constant TwiML; no verify, no storage")
    port = servers.free_port()
    log = load.workdir / "ceiling.log"
    with servers.serving(servers.ceiling_command(port), port, log, servers.REPO) as server:
        _load(case, load, server)
    case.server_log_problems = _log_problems(log)
    return case


def _hookline(
    load: Load,
    case: CaseResult,
    home: Path,
    database_url: str,
    count: Callable[[str, str], storage.Stored],
    migrate_first: bool,
    extra_pids: Callable[[], list[int]] = lambda: [],
) -> CaseResult:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "hookline.toml"
    hookline_config.write(config, load.hookline_port, load.auth_token, database_url)
    log = home / "server.log"
    if migrate_first:
        servers.run_once([str(servers.BIN / "hookline"), "migrate", "--config", str(config)], cwd=home)
    try:
        with servers.serving(servers.hookline_command(config, load.hookline_port), load.hookline_port, log, home) as server:
            measured = _load(case, load, server, extra_pids)
        stored = count(signed_requests.sid_of(load.nonce, load.warm_end), signed_requests.sid_of(load.nonce, load.end))
    finally:
        case.server_log_problems = _log_problems(log)
    case.stored_messages, case.messages_total, case.jobs_left = stored.messages, stored.messages_total, stored.jobs_left
    ok = sum(n for code, n in measured.statuses.items() if 200 <= code < 300)
    if measured.wraps:
        case.fail(f"the request file ran out ({measured.wraps} wrap(s)): some requests repeated; use --requests")
    if stored.messages < ok:
        case.fail(f"{ok} answers were 2xx but only {stored.messages} new messages were stored")
    if stored.messages > measured.sent:
        case.fail(f"{stored.messages} messages stored from {measured.sent} requests built: the count is wrong")
    return case


def hookline_sqlite(load: Load) -> CaseResult:
    case = CaseResult(
        "twilio inbound: SQLite",
        "hookline serve: signature check, parse, store a new message + enqueue its job in one transaction, TwiML ack",
    )
    home = load.workdir / "sqlite"
    database = home / "hookline.sqlite3"
    count = lambda first, end: storage.count_sqlite(str(database), first, end)  # noqa: E731
    return _hookline(load, case, home, f"sqlite://{database}", count, migrate_first=False)


def hookline_postgres(load: Load) -> CaseResult:
    case = CaseResult("twilio inbound: PostgreSQL", "the same on a throwaway PostgreSQL database (hookline migrate, then serve)")
    try:
        url = storage.create_postgres_database()
    except Exception as exc:  # noqa: BLE001 - whatever makes the server unusable skips the case
        case.status = "skipped"
        where = storage.postgres_server().rsplit("@", 1)[-1]
        case.reasons.append(f"PostgreSQL not usable at {where}: {type(exc).__name__}: {exc}")
        return case
    try:
        count = lambda first, end: storage.count_postgres(url, first, end)  # noqa: E731
        backends = lambda: cpu.postgres_backends(url.rsplit("/", 1)[-1])  # noqa: E731
        return _hookline(load, case, load.workdir / "postgres", url, count, migrate_first=True, extra_pids=backends)
    finally:
        storage.drop_postgres_database(url)
