"""The outbound drain: how fast one `hookline serve` worker empties a full send queue against a
local fake Graph API with no rate limit, on SQLite and on PostgreSQL; and the ceiling, a
hand-written httpx loop posting the same messages to the same fake.

What a drain case does, in order:

1. starts the fake (bench/fake_graph.py, its own uvicorn process), gate closed;
2. writes a config: Meta plugin, `mark_read` off, logs at warning, `NUMBERS` Meta numbers
   whose `api_base_url` is the fake, each with `rate_limit` at Meta's cap (1,000/s, burst 1,000)
   and `recipient_rate_limit` at 1,000,000/s: `NUMBERS` × 1,000/s is above the issue's target,
   so the limits cannot be what the rate shows (checked afterwards: the server's
   `hookline_rate_limit_waits_total` must be 0). On a fresh SQLite file, or a throwaway
   PostgreSQL database after `hookline migrate`; the queue is the default a user gets
   (`[queue] backend = "auto"`: the embedded queue on SQLite, pgqueuer lanes on PostgreSQL);
3. pre-fills N outbound texts with `python -m bench.outbound fill`: hookline's own
   `Host.send_text(…, sender="human")`, what `POST /api/conversations/{id}/messages` calls, so each
   is a `pending` message + its `send` job + its event, one transaction each. They go to
   `CUSTOMERS` (500) conversations round robin (message i to customer i mod 500, the customers
   split over the numbers), so a conversation's one-at-a-time ordering never leaves the worker
   idle: 500 lanes for 8 workers;
4. starts `hookline serve`. Its worker starts sending at once and the fake holds those sends;
   once the worker's concurrency is in flight (or after GATE_TIMEOUT_SECONDS), the bench starts
   the CPU window (server + fake + PostgreSQL backends + the bench itself) and opens the gate.
   The drain runs from the gate opening until the fake has answered N sends and the job table
   is empty. So start-up is not in the drain and the first sends are not half-started ones.
   **Latency** of a message: the fake's answer − the gate opening. Every message was due before
   the server started (the queue was full), so "when it became due" would measure start-up;
   from the drain's start, p50 is about half the drain and p99 nearly all of it: how long a
   backlog's messages wait, which is what a drain's latency is;
5. checks: the fake saw every message id exactly once and no other, every message is out of
   `pending` with a provider id (Meta's `accepted` is hookline's `queued`), no job is left, no
   rate-limit wait happened; otherwise the case fails.

The ceiling is a process of its own (uvloop, as `hookline serve` runs): one httpx.AsyncClient,
`QueueConfig.concurrency` (8) coroutines posting the Meta client's text payloads and reading the
answer's message id, no storage; behind the same gate.

N is one number for the three cases, sized so hookline drains for about `--duration` at the rate
it was measured at (EXPECTED_PER_SECOND); the ceiling drains it much faster.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import cpu, hookline_config, rss, servers, storage
from bench.cases import DATABASES, CaseResult, Drain, Load, _database, _log_problems

CUSTOMERS = 500
NUMBERS = 2
#: Meta's cap on a number's own rate_limit: NUMBERS × this is the most the limits allow.
NUMBER_RATE = 1000
#: The queue's default `[queue] concurrency`: the ceiling posts with as many at once.
CONCURRENCY = 8
#: Messages per second hookline drained when this was written (2 cores): sizes N, nothing else.
EXPECTED_PER_SECOND = 100.0
MIN_MESSAGES, MAX_MESSAGES = 200, 20_000
#: The held sends must be answered well within the Meta client's 10 s timeout, or they are retried.
GATE_TIMEOUT_SECONDS = 5.0
#: No answer for this long: the drain is stuck (or failing), the case fails.
STALL_SECONDS = 15.0
POLL_SECONDS = 0.05
#: The fake using more than this many cores might be what limits the rate.
FAKE_CORES_WARNING = 0.5


def messages_for(load: Load) -> int:
    return max(MIN_MESSAGES, min(MAX_MESSAGES, int(EXPECTED_PER_SECOND * load.duration)))


# --------------------------------------------------------------------------- the cases


def outbound(load: Load, database: str, messages: int | None = None) -> CaseResult:
    """`hookline serve` draining a pre-filled queue of `messages` (default: messages_for) texts
    to the fake, on "sqlite" or "postgres" (skipped when PostgreSQL is not usable)."""
    label = DATABASES[database]
    count = messages or messages_for(load)
    case = CaseResult(
        f"outbound drain: {label}",
        f"hookline serve draining {count:,} queued texts to {CUSTOMERS} customers: claim, rate-limit slots, "
        f"Graph API POST to a local fake, store the provider id + status event; "
        f"{'embedded queue, SQLite' if database == 'sqlite' else 'pgqueuer lanes, PostgreSQL'}",
        key=f"outbound-{database}", compare_to="outbound-ceiling",
    )
    home = load.workdir / case.key
    home.mkdir(parents=True, exist_ok=True)
    with _database(case, database, home) as (url, count_target, backends):
        if url is None:
            return case
        _drain_case(case, database, home, url, count_target, backends, count)
    return case


def _drain_case(case: CaseResult, database: str, home: Path, url: str, count_target: str,
                backends: Callable[[], list[int]], count: int) -> None:
    """Fake, config, fill, serve, drain, checks: the body of `outbound` once storage exists."""
    with _fake(home) as fake:
        config = home / "hookline.toml"
        port = servers.free_port()
        _write_config(config, port, url, fake.url)
        if database == "postgres":
            servers.run_once([str(servers.BIN / "hookline"), "migrate", "--config", str(config)], cwd=home)
        expected = _fill(config, count, home)
        log = home / "server.log"
        try:
            with servers.serving(servers.hookline_command(config, port), port, log, home) as server:
                jobs = lambda: int(storage.scalar(count_target, "SELECT count(*) FROM hookline_job"))  # type: ignore[arg-type]  # noqa: E731
                arrivals = _drain(case, fake, server.pid, backends, count, jobs)
                waits = _rate_limit_waits(server.url)
        finally:
            case.server_log_problems = _log_problems(log)
        _check_arrivals(case, arrivals, expected)
        if waits:
            case.fail(f"{waits:g} sends waited for a rate-limit slot: the limit, not hookline, set part of the rate")
        left = int(storage.scalar(count_target, "SELECT count(*) FROM hookline_message WHERE direction = 'outbound'"  # type: ignore[arg-type]
                                  " AND (status = 'pending' OR external_id IS NULL)"))
        if left:
            case.fail(f"{left} messages still pending (or without a provider id) after the drain")
        case.jobs_left = int(storage.scalar(count_target, "SELECT count(*) FROM hookline_job"))  # type: ignore[arg-type]
        if case.jobs_left:
            case.fail(f"{case.jobs_left} jobs left in the queue after the drain")
        case.messages_total = count


def outbound_ceiling(load: Load, messages: int | None = None) -> CaseResult:
    """The most one Python process sends to the fake: the same N, no storage."""
    count = messages or messages_for(load)
    case = CaseResult(
        "outbound ceiling: httpx loop to the fake",
        f"one process (uvloop): one httpx.AsyncClient, {CONCURRENCY} coroutines POSTing {count:,} Meta text payloads "
        "to the fake and reading the message id; no storage, no queue, no rate limit",
        key="outbound-ceiling", compare_to=None,
    )
    home = load.workdir / case.key
    home.mkdir(parents=True, exist_ok=True)
    with _fake(home) as fake:
        url = f"{fake.url}/v23.0/{_phone_number_id(0)}/messages"
        command = [sys.executable, "-m", "bench.outbound", "ceiling", url, str(count), str(CONCURRENCY)]
        with (home / "sender.log").open("ab") as log:
            sender = subprocess.Popen(command, cwd=servers.REPO, env=servers.clean_env(), stdin=subprocess.PIPE,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            arrivals = _drain(case, fake, sender.pid, lambda: [], count, None, alive=lambda: sender.poll() is None)
        finally:
            assert sender.stdin is not None
            sender.stdin.close()  # it waits for this, so the CPU window could read its /proc entry
            try:
                sender.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
        if sender.returncode:
            case.fail(f"the sender exited {sender.returncode}: {servers.log_tail(home / 'sender.log', 5)}")
        _check_arrivals(case, arrivals, list(range(1, count + 1)))
    return case


# --------------------------------------------------------------------------- the drain


@contextmanager
def _fake(home: Path) -> Iterator[servers.Running]:
    port = servers.free_port()
    with servers.serving(servers.uvicorn_command("bench.fake_graph:app", port), port, home / "fake.log", servers.REPO) as fake:
        yield fake


def _http(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _drain(
    case: CaseResult, fake: servers.Running, sender: int, backends: Callable[[], list[int]], count: int,
    jobs: Callable[[], int] | None, alive: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Open the gate once the sender's concurrency is held, wait for `count` answers (and, with
    `jobs`, an empty job table); fills case.drain, cpu, peak RSS. Returns the fake's arrivals."""
    deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
    while _http(fake.url + "/state")["held"] < CONCURRENCY and time.monotonic() < deadline and alive():
        time.sleep(0.02)
    window = cpu.Window([sender, fake.pid, os.getpid(), *backends()])
    fake_window = cpu.Window([fake.pid])
    with rss.Sampler(sender) as memory:
        window.start()
        fake_window.start()
        opened = float(_http(fake.url + "/open", "POST")["opened_at"])
        answered, progress = 0, time.monotonic()
        while answered < count and alive():
            time.sleep(POLL_SECONDS)
            now_answered = int(_http(fake.url + "/state")["answered"])
            if now_answered != answered:
                answered, progress = now_answered, time.monotonic()
            elif time.monotonic() - progress > STALL_SECONDS:
                break
        end = time.monotonic()
        while jobs is not None and answered >= count and time.monotonic() - end < STALL_SECONDS:
            asked = time.monotonic()
            if jobs() == 0:
                end = asked
                break
            time.sleep(0.01)
        usage = window.stop()
        fake_usage = fake_window.stop()
    arrivals = _http(fake.url + "/arrivals")
    case.peak_rss_mb, case.rss_series = memory.peak_mb, memory.series
    case.cpu = {**asdict(usage), "fake_cores": fake_usage.server_cores}
    if answered < count:
        case.fail(f"the fake answered {answered} of {count} sends (no progress for {STALL_SECONDS:g} s, or the sender stopped)")
    times = sorted(arrivals["times"])
    seconds = max(end, times[-1] if times else end) - opened
    latencies = [(moment - opened) * 1000 for moment in times]
    case.drain = asdict(Drain(len(times), round(seconds, 3), round(len(times) / seconds, 1) if seconds > 0 else 0.0,
                              {"50": _percentile(latencies, 50), "99": _percentile(latencies, 99)}))
    if usage.disturbed:
        case.warnings.append(f"disturbed: other processes used {usage.others_cores:.2f} of {os.cpu_count()} cores "
                             "during the drain; rerun on a quiet machine")
    if fake_usage.server_cores > FAKE_CORES_WARNING:
        case.warnings.append(f"the fake used {fake_usage.server_cores:.2f} cores: it may be part of what limits the rate")
    return arrivals


def _percentile(values: list[float], percent: float) -> float:
    """Nearest rank: the smallest value with at least `percent` % of them at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return round(ordered[int(rank) - 1], 2)


def _check_arrivals(case: CaseResult, arrivals: dict[str, Any], expected: list[int]) -> None:
    """Every expected id exactly once at the fake, nothing else."""
    seen = Counter(arrivals["ids"])
    wanted = set(expected)
    missing = [i for i in expected if i not in seen]
    twice = sorted(i for i, n in seen.items() if n > 1)
    strangers = sorted(i for i in seen if i not in wanted)
    if missing:
        case.fail(f"{len(missing)} of {len(expected)} messages never reached the fake (first: {missing[:5]})")
    if twice:
        case.fail(f"{len(twice)} messages reached the fake more than once (first: {twice[:5]})")
    if strangers:
        case.fail(f"{len(strangers)} sends the fake saw were not ours (ids {strangers[:5]})")


def _rate_limit_waits(server_url: str) -> float:
    """hookline_rate_limit_waits_total, all scopes, from the server's /metrics."""
    with urllib.request.urlopen(server_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hookline_rate_limit_waits_total{"))


# --------------------------------------------------------------------------- config and fill


def _phone_number_id(index: int) -> str:
    return f"10990000000{index:04d}"


def _write_config(path: Path, port: int, database_url: str, fake_url: str) -> None:
    numbers = "".join(f"""
[[numbers]]
id = "bench{index}"
provider = "meta"
phone = "+1555000{index:04d}"
rate_limit = {{ messages = {NUMBER_RATE}, burst = {NUMBER_RATE} }}
recipient_rate_limit = {{ messages = 1000000, burst = 1000000 }}
[numbers.settings]
phone_number_id = "{_phone_number_id(index)}"
access_token = "bench-token"
app_secret = "bench-secret"
verify_token = "bench-verify"
api_base_url = "{fake_url}"
""" for index in range(NUMBERS))
    path.write_text(hookline_config.text(port, database_url, path.parent / "data", f"""[plugins]
enabled = ["meta"]

[plugins.meta]
mark_read = false
{numbers}"""), encoding="utf-8")


def _fill(config: Path, count: int, home: Path) -> list[int]:
    """Queue `count` texts through hookline's own send path, in a process of its own; their ids."""
    completed = subprocess.run([sys.executable, "-m", "bench.outbound", "fill", str(config), str(count)], cwd=home,
                               env=servers.clean_env(), capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise servers.ServerFailed(f"bench.outbound fill exited {completed.returncode}:\n{completed.stderr.strip()[-2000:]}")
    ids = json.loads(completed.stdout.strip().splitlines()[-1])
    if len(ids) != count:
        raise servers.ServerFailed(f"bench.outbound fill queued {len(ids)} messages, not {count}")
    return ids


async def _fill_queue(config: Path, count: int) -> list[int]:
    from core.numbers import sync_config_numbers  # noqa: PLC0415 - only the helper process needs hookline
    from core.runtime import build_runtime  # noqa: PLC0415
    from core.storage.database import close_storage, open_storage, prepare_schema  # noqa: PLC0415

    runtime = build_runtime(config)
    host = runtime.host
    await open_storage(runtime.settings.database.url)
    try:
        await prepare_schema(runtime.settings.database.url)  # SQLite: migrate; PostgreSQL: migrated already
        await sync_config_numbers(runtime.settings.numbers)
        await host.api_numbers.refresh()
        numbers = sorted(number.id for number in runtime.settings.numbers)
        conversations = [await host.conversation_with(numbers[c % len(numbers)], f"+1444{c:07d}") for c in range(CUSTOMERS)]
        ids = []
        for index in range(count):
            message = await host.send_text(conversations[index % CUSTOMERS], f"bench outbound {index}", sender="human")
            ids.append(message.id)
        return ids
    finally:
        await close_storage()


# --------------------------------------------------------------------------- the ceiling's sender


async def _send_all(url: str, count: int, concurrency: int) -> None:
    import httpx  # noqa: PLC0415

    headers = {"Authorization": "Bearer bench-token"}
    pending = iter(range(1, count + 1))
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
        async def sender() -> None:
            for index in pending:
                payload = {"messaging_product": "whatsapp", "recipient_type": "individual",
                           "to": f"1444{index % CUSTOMERS:07d}", "type": "text",
                           "text": {"body": f"bench outbound {index}", "preview_url": False},
                           "biz_opaque_callback_data": f"hookline:{index}"}
                response = await client.post(url, json=payload, headers=headers)
                response.raise_for_status()
                if not response.json()["messages"][0]["id"]:
                    raise RuntimeError("no message id")

        await asyncio.gather(*(sender() for _ in range(concurrency)))


def _main(argv: list[str]) -> int:
    """`fill CONFIG N` (prints the queued ids as JSON) or `ceiling URL N CONCURRENCY`."""
    if argv[:1] == ["fill"]:
        print(json.dumps(asyncio.run(_fill_queue(Path(argv[1]), int(argv[2])))), flush=True)
        return 0
    if argv[:1] == ["ceiling"]:
        try:
            import uvloop  # noqa: PLC0415 - what `hookline serve` runs on (uvicorn picks it)

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_send_all(argv[1], int(argv[2]), int(argv[3])))
        sys.stdin.read()  # stay until the bench has read our CPU time
        return 0
    print(f"usage: python -m bench.outbound fill CONFIG N | ceiling URL N CONCURRENCY (got {argv})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
