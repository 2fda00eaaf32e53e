"""The cases: what each one starts, what it loads, and whether its numbers can be trusted.

Every case gets the same wrk settings and a request stream through bench/post.lua over a signed
request file (one per request builder, bench/signed_requests.py): a warm-up on lines
[0, warm_end) whose numbers are kept but not compared, then the measured run on lines
[warm_end, end). The ceiling gets the Twilio file. Only the hookline cases store anything; they
are checked afterwards against the database: each 2xx answer must have stored all of its
request's new messages.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import cpu, hookline_config, rss, servers, storage, wrk
from bench.signed_requests import RequestBuilder


@dataclass
class RequestFile:
    """One builder's signed requests, written before any server starts."""

    builder: RequestBuilder
    path: Path
    warm_end: int  # requests [0, warm_end) are the warm-up's
    end: int  # requests [warm_end, end) the measured run's

    def stream(self, measured: bool) -> wrk.Stream:
        first, end = (self.warm_end, self.end) if measured else (0, self.warm_end)
        return wrk.Stream(self.path, first, end, self.builder.content_type, self.builder.signature_header)


@dataclass
class Load:
    """What every case shares in one run."""

    wrk_binary: str
    duration: float
    warmup: float
    workdir: Path
    hookline_port: int  # the port the request files were signed for
    files: dict[str, RequestFile]  # by builder key (`twilio`, `meta1`, `meta10`)


@dataclass
class Drain:
    """A case without wrk: `messages` went through in `seconds`; latency is per message (from
    being due to the fake provider answering), percentiles "50" and "99" in ms."""

    messages: int
    seconds: float
    per_second: float
    latency_ms: dict[str, float]


@dataclass
class CaseResult:
    name: str
    measures: str
    status: str = "ok"  # ok, failed, skipped
    reasons: list[str] = field(default_factory=list)
    batch: int = 1  # messages per request: messages/s = req/s × batch
    wrk: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    stored_messages: int | None = None  # new messages from the measured slice, counted after stop
    messages_total: int | None = None  # warm-up included: one queue job each
    jobs_left: int | None = None  # queue rows not yet done when the server stopped
    server_log_problems: list[str] = field(default_factory=list)
    cpu: dict[str, Any] | None = None  # cores used during the measured run (bench/cpu.py)
    warnings: list[str] = field(default_factory=list)  # numbers taken, but not to be trusted
    key: str = ""  # the plan's key (`twilio-postgres`): what targets and comparisons name
    compare_to: str | None = "ceiling"  # the key of the case its ratio is against (a ceiling or a peer)
    peak_rss_mb: float | None = None  # the server's process tree, sampled during the measured run (bench/rss.py)
    drain: dict[str, Any] | None = None  # a case measured without wrk (outbound): see Drain
    rss_series: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB) during the measured run
    peer: str | None = None  # the key of the peer doing the same job (hookline must be ahead of it)

    def rate(self) -> float | None:
        """Requests per second (wrk cases) or messages per second (a drain)."""
        if self.wrk is not None:
            return float(self.wrk["requests_per_second"])
        if self.drain is not None:
            return float(self.drain["per_second"])
        return None

    def latency_ms(self, percent: str) -> float | None:
        source = self.wrk if self.wrk is not None else self.drain
        return None if source is None else source["latency_ms"].get(percent)

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.reasons.append(reason)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _summary(result: wrk.WrkResult) -> dict[str, Any]:
    data = asdict(result)
    data.pop("output")
    return data


def _ok_answers(result: wrk.WrkResult) -> int:
    return sum(n for code, n in result.statuses.items() if 200 <= code < 300)


def _check_http(case: CaseResult, label: str, result: wrk.WrkResult) -> None:
    """Any answer but 2xx, or any socket error, fails the case: its throughput is not the path's."""
    # wrk counts statuses >= 400 only; post.lua counts every code, so a 3xx fails the case too.
    refused = max(result.non_2xx, sum(result.statuses.values()) - _ok_answers(result))
    if refused:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()) if not 200 <= code < 300)
        case.fail(f"{label}: {refused} non-2xx responses ({codes})")
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
    case: CaseResult,
    load: Load,
    server: servers.Running,
    requests: RequestFile,
    extra_pids: Callable[[], list[int]] = lambda: [],
    duration: float | None = None,
) -> wrk.WrkResult:
    """Warm up, then the measured run (`duration`, else the run's) with CPU and RSS watched."""
    url = server.url + requests.builder.path
    warm = wrk.run(load.wrk_binary, url, load.warmup, requests.stream(measured=False))
    case.warmup = _summary(warm)
    _check_http(case, "warm-up", warm)
    window = cpu.Window([server.pid, *extra_pids()])
    with rss.Sampler(server.pid) as memory:
        window.start()
        measured = wrk.run(load.wrk_binary, url, duration or load.duration, requests.stream(measured=True))
        usage = window.stop()
    case.peak_rss_mb, case.rss_series = memory.peak_mb, memory.series
    case.wrk = _summary(measured)
    case.cpu = asdict(usage)
    _check_http(case, "measured", measured)
    if usage.disturbed:
        case.warnings.append(
            f"disturbed: other processes used {usage.others_cores:.2f} of {os.cpu_count()} cores during the run; "
            "rerun on a quiet machine"
        )
    return measured


# --------------------------------------------------------------------------- the ceilings

#: The request file the ceilings are loaded with.
CEILING_FILE = "twilio"


def ceiling(load: Load) -> CaseResult:
    case = CaseResult("ceiling: bare Starlette POST", "uvicorn + Starlette, read body, constant TwiML; no verify, no storage",
                      key="ceiling", compare_to=None)
    port = servers.free_port()
    log = load.workdir / "ceiling.log"
    with servers.serving(servers.uvicorn_command("bench.ceiling_app:app", port), port, log, servers.REPO) as server:
        _load(case, load, server, load.files[CEILING_FILE])
    case.server_log_problems = _log_problems(log)
    return case


def _stored_or_fail(case: CaseResult, measured: wrk.WrkResult, stored: int, batch: int = 1) -> None:
    """Each 2xx must have stored its request's new messages, and nothing more can be stored than
    was sent: otherwise the rate is not the path's, or the count is wrong."""
    ok = _ok_answers(measured) * batch
    if measured.wraps:
        case.fail(f"the request file ran out ({measured.wraps} wrap(s)): some requests repeated; use --requests")
    if stored < ok:
        case.fail(f"{_ok_answers(measured)} answers were 2xx ({ok} messages) but only {stored} new messages were stored")
    if stored > measured.sent * batch:
        case.fail(f"{stored} messages stored from {measured.sent} requests built "
                  f"({measured.sent * batch} messages): the count is wrong")


def verify_insert(load: Load, database: str) -> CaseResult:
    """bench/verify_insert_app.py on a fresh SQLite file or a throwaway PostgreSQL database,
    loaded with the Twilio file on hookline's port (the signatures cover the URL)."""
    label = DATABASES[database]
    case = CaseResult(f"ceiling: verify + insert, {label}",
                      f"hand-written Twilio handler: lean signature check, one insert-if-new + job statement "
                      f"({'raw asyncpg' if database == 'postgres' else 'stdlib sqlite3, WAL, synchronous=FULL'}), TwiML",
                      key=f"ceiling-insert-{database}", compare_to=None)
    requests = load.files[CEILING_FILE]
    home = load.workdir / case.key
    home.mkdir(parents=True, exist_ok=True)
    with _database(case, database, home) as (url, count_target, backends):
        if url is None:
            return case
        env = {"BENCH_DATABASE_URL": url, "BENCH_AUTH_TOKEN": requests.builder.secret,
               "BENCH_PUBLIC_URL": requests.builder.public_url}
        log = home / "server.log"
        command = servers.uvicorn_command("bench.verify_insert_app:app", load.hookline_port)
        with servers.serving(command, load.hookline_port, log, servers.REPO, env=env) as server:
            measured = _load(case, load, server, requests, backends)
        case.server_log_problems = _log_problems(log)
        first, end = requests.builder.ids_of(requests.warm_end, requests.end)
        stored = int(storage.scalar(count_target, "SELECT count(*) FROM inbound WHERE sid >= $1 AND sid < $2",  # type: ignore[arg-type]
                                    first, end))
        case.stored_messages = stored
        _stored_or_fail(case, measured, stored)
    return case


@contextmanager
def _database(case: CaseResult, database: str, home: Path) -> Iterator[tuple[str | None, str, Callable[[], list[int]]]]:
    """(URL for the server or None when PostgreSQL is unusable — the case is then skipped, what
    storage.scalar counts in, the PostgreSQL backends' pids for the CPU window)."""
    if database == "sqlite":
        path = home / "bench.sqlite3"
        yield f"sqlite://{path}", str(path), lambda: []
        return
    try:
        url = storage.create_postgres_database()
    except Exception as exc:  # noqa: BLE001 - whatever makes the server unusable skips the case
        case.status = "skipped"
        where = storage.postgres_server().rsplit("@", 1)[-1]
        case.reasons.append(f"PostgreSQL not usable at {where}: {type(exc).__name__}: {exc}")
        yield None, "", lambda: []
        return
    try:
        yield url, url, lambda: cpu.postgres_backends(url.rsplit("/", 1)[-1])
    finally:
        storage.drop_postgres_database(url)


# --------------------------------------------------------------------------- hookline

_MEASURES = "hookline serve: {proof} check, parse, store {what} + enqueue {jobs} in one transaction, {ack}"


def _measures(builder: RequestBuilder, database: str) -> str:
    what = "a new message" if builder.batch == 1 else f"{builder.batch} new messages"
    return _MEASURES.format(
        proof="signature" if builder.signature_header else "URL secret",
        what=what,
        jobs="its job" if builder.batch == 1 else "their jobs",
        ack="TwiML ack" if builder.provider == "twilio" else "200 ack",
    ) + ("" if database == "sqlite" else " (PostgreSQL: hookline migrate first)")


#: The peer doing the same job as hookline's case for a request file (bench/peers/).
PEERS = {"twilio": "peer-flask-twilio", "meta1": "peer-pywa-meta"}


#: `hookline serve` without its queue workers: the web tier of scale mode (docs/deploy.md), whose
#: jobs `hookline worker` processes run.
WEB_ONLY = ("--no-queue",)


def hookline_inbound(load: Load, key: str, name: str, database: str, duration: float | None = None,
                     serve_args: tuple[str, ...] = ()) -> CaseResult:
    """`hookline serve` with the builder's provider and number, on a fresh SQLite file or a
    throwaway PostgreSQL database, loaded with the builder's file; then the stored-row check."""
    requests = load.files[key]
    builder = requests.builder
    web_only = serve_args == WEB_ONLY
    case = CaseResult(name, _measures(builder, database) + ("; web only: no queue workers in the process" if web_only else ""),
                      batch=builder.batch, key=f"{key}-{database}" + ("-web" if web_only else ""),
                      compare_to=f"ceiling-insert-{database}", peer=PEERS.get(key))
    home = load.workdir / case.key
    home.mkdir(parents=True, exist_ok=True)
    with _database(case, database, home) as (url, count_target, backends):
        if url is None:
            return case
        config = home / "hookline.toml"
        hookline_config.write(config, load.hookline_port, url, builder)
        log = home / "server.log"
        try:
            if database == "postgres":
                servers.run_once([str(servers.BIN / "hookline"), "migrate", "--config", str(config)], cwd=home)
            command = servers.hookline_command(config, load.hookline_port) + list(serve_args)
            with servers.serving(command, load.hookline_port, log, home) as server:
                measured = _load(case, load, server, requests, backends, duration)
            stored = storage.count_stored(count_target, builder.provider, *builder.ids_of(requests.warm_end, requests.end))
        finally:
            case.server_log_problems = _log_problems(log)
        case.stored_messages, case.messages_total, case.jobs_left = stored.messages, stored.messages_total, stored.jobs_left
        _stored_or_fail(case, measured, stored.messages, builder.batch)
    return case


# --------------------------------------------------------------------------- the plan

#: The request files of a full run: (builder, messages per request), in table order.
SHAPES: list[tuple[str, int]] = [("twilio", 1), ("meta", 1), ("meta", 10), ("wppconnect", 1)]
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


@dataclass(frozen=True)
class Case:
    key: str  # `ceiling`, `twilio-sqlite`, `meta10-postgres`: what --cases matches
    name: str  # the table's name for it
    file: str | None  # the request file it loads (a builder key); None for a case without wrk
    run: Callable[[Load], CaseResult]
    database: str | None = None
    needs: tuple[str, ...] = ()  # the cases its comparisons need (its ceiling, its peer)

    def skipped(self, reason: str) -> CaseResult:
        return CaseResult(self.name, "", status="skipped", reasons=[reason], key=self.key)


def all_cases(builders: dict[str, RequestBuilder]) -> list[Case]:
    """Every case, in the order they run and are reported: the ceilings, the peers, then per
    provider (in SHAPES order) its builders on SQLite, then on PostgreSQL, then outbound."""
    from bench import outbound, peers  # noqa: PLC0415 - they import this module

    cases = [Case("ceiling", "ceiling: bare Starlette POST", CEILING_FILE, ceiling)]
    for database, label in DATABASES.items():
        cases.append(Case(f"ceiling-insert-{database}", f"ceiling: verify + insert, {label}", CEILING_FILE,
                          lambda load, database=database: verify_insert(load, database), database))
    cases += [
        Case("peer-flask-twilio", "peer: Flask + twilio RequestValidator", "twilio", peers.flask_twilio),
        Case("peer-pywa-meta", "peer: pywa server, signature validation on", "meta1", peers.pywa_meta),
    ]
    providers = dict.fromkeys(builder.provider for builder in builders.values())
    for provider in providers:
        for database, label in DATABASES.items():
            for key, builder in builders.items():
                if builder.provider != provider:
                    continue
                name = f"{builder.label}: {label}"
                needs = (f"ceiling-insert-{database}",) + ((PEERS[key],) if key in PEERS else ())
                cases.append(Case(f"{key}-{database}", name, key,
                                  lambda load, key=key, name=name, database=database: hookline_inbound(load, key, name, database),
                                  database, needs))
    web = "twilio inbound: PostgreSQL, web only (serve --no-queue)"
    cases.insert(next(i for i, case in enumerate(cases) if case.key == "twilio-postgres") + 1,
                 Case("twilio-postgres-web", web, "twilio",
                      lambda load: hookline_inbound(load, "twilio", web, "postgres", serve_args=WEB_ONLY),
                      "postgres", ("ceiling-insert-postgres", PEERS["twilio"])))
    cases.append(Case("outbound-ceiling", "outbound ceiling: httpx loop to the fake", None, outbound.outbound_ceiling))
    for database, label in DATABASES.items():
        cases.append(Case(f"outbound-{database}", f"outbound drain: {label}", None,
                          lambda load, database=database: outbound.outbound(load, database), database, ("outbound-ceiling",)))
    return cases


def select(cases: list[Case], patterns: list[str]) -> list[Case]:
    """The cases any pattern names — a key (`meta10-sqlite`), a part of one (`meta10`, `sqlite`,
    `twilio`, `peer`, `outbound`; `meta` means both Meta batches), or a glob (`meta*-postgres`) —
    with the bare ceiling and what their comparisons need. Raises ValueError for a pattern that
    names nothing."""
    chosen = {"ceiling"}
    for pattern in patterns:
        matched = {
            case.key for case in cases
            if fnmatch.fnmatch(case.key, pattern) or pattern in case.key.split("-")
            or (pattern.isalpha() and case.key.split("-")[0].rstrip("0123456789") == pattern)
        }
        if not matched:
            raise ValueError(f"--cases: {pattern!r} names no case (cases: {', '.join(case.key for case in cases)})")
        chosen |= matched
    needed = {need for case in cases if case.key in chosen for need in case.needs}
    return [case for case in cases if case.key in chosen | needed]
