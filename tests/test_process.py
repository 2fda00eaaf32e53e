"""Real `hookline serve` processes: start-up, clean stop, refusing an unmigrated database, and the
outbound queue surviving kill -9 (SQLite and PostgreSQL).

Also the process helpers the CLI tests share: `hookline(...)` runs one command, `serving(...)`
runs a server until the block ends. Every wait is bounded and every process is killed on the way
out, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.testing.database import execute as _admin
from core.testing.database import with_database as _with_database
from tests.fake_api import running_fake_api
from tests.helpers import runtime_for, write_config
from tests.reliability import Stopwatch, backend_of, report

REPO = Path(__file__).resolve().parent.parent
HOOKLINE = Path(sys.executable).parent / "hookline"  # the console script of the venv running the tests
DEFAULT_CONFIG = REPO / "config" / "hookline.toml"
RECORDER = "tests.recording_provider"


# --------------------------------------------------------------------------- process helpers


def cli_env() -> dict[str, str]:
    """The test's environment without hookline's own variables, with the repo importable (the
    recorder plugin is loaded by import path)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOOKLINE_") and key != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def hookline(*args: Any, cwd: Path, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `hookline` command to completion (killed if it outlives `timeout`)."""
    return subprocess.run(
        [str(HOOKLINE), *map(str, args)], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
        input=input,
    )


def messages_json(config: Path, cwd: Path) -> list[dict[str, Any]]:
    listed = hookline("messages", "--json", "--config", config, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    spawned_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float) -> float:
        """Seconds from spawn until GET /healthz answered 200; fails after `timeout` from spawn."""
        deadline = self.spawned_at + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"hookline serve exited with {code} before it was healthy:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return time.monotonic() - self.spawned_at
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"hookline serve was not healthy {timeout}s after spawn:\n{self.output()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then the exit status (a graceful stop lets running jobs finish)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def serving(config: Path, cwd: Path, *extra: str, healthy_within: float = 15, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`hookline serve --config config [extra…]` on a free port, healthy before the block runs;
    killed on the way out if still running. `env` adds variables (plugins' test switches)."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as out:
        spawned_at = time.monotonic()
        process = subprocess.Popen(
            [str(HOOKLINE), "serve", "--config", str(config), "--port", str(port), *extra],
            cwd=cwd, env={**cli_env(), **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log, spawned_at)
    try:
        server.wait_healthy(healthy_within)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------- tests


def test_default_config_becomes_healthy_and_stops_cleanly_on_sigterm(tmp_path):
    """How fast it starts is the benchmark's to say (bench: the `startup` case), not a timed test's."""
    with serving(DEFAULT_CONFIG, tmp_path) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=5).json() == {"status": "ready", "storage": "ok"}
        code = server.stop()
        assert code == 0, f"exit status {code} after SIGTERM:\n{server.output()}"
    # The embedded default: SQLite under the working directory, no DATABASE_URL.
    assert (tmp_path / "data" / "hookline.sqlite3").is_file()


def test_serve_refuses_an_unmigrated_postgres_database_until_migrate(tmp_path, postgres_url):
    if postgres_url is None:  # the conftest's policy: fails instead under HOOKLINE_REQUIRE_POSTGRES=1
        pytest.skip("PostgreSQL not reachable (set DATABASE_URL, or HOOKLINE_REQUIRE_POSTGRES=1 to fail)")
    name = f"hookline_unmigrated_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        config = write_config(tmp_path, _with_database(postgres_url, name), modules=[RECORDER])
        refused = hookline("serve", "--config", config, "--port", free_port(), cwd=tmp_path, timeout=20)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "hookline migrate" in refused.stderr
        assert not asyncio.run(_tables(_with_database(postgres_url, name))), "serve must not create the schema itself"

        migrated = hookline("migrate", "--config", config, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.startswith("applied: ")
        with serving(config, tmp_path) as server:
            assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
            code = server.stop()
            assert code == 0, server.output()
        again = hookline("migrate", "--config", config, cwd=tmp_path)
        assert (again.returncode, again.stdout.strip()) == (0, "the database is up to date")
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _tables(url: str) -> list[str]:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=3)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'hookline%'")
    finally:
        await connection.close()
    return [row["tablename"] for row in rows]


MESSAGES = 100
RECIPIENTS = 20  # 5 messages each: concurrent across conversations, in order within one


def test_kill_9_with_100_messages_queued_loses_none(tmp_path, database_url, monkeypatch):
    clock = Stopwatch()
    monkeypatch.chdir(tmp_path)  # the in-process runtime keeps its data folder here, like the server
    with running_fake_api(delay=0.05) as fake:
        config = write_config(
            tmp_path, database_url, api_url=fake.url, queue={"lease_seconds": 1, "concurrency": 4}, modules=[RECORDER]
        )
        queued = asyncio.run(_queue_messages(config))
        assert len(set(queued)) == MESSAGES

        def received() -> set[int]:
            return {body["id"] for body in list(fake.received)}

        with serving(config, tmp_path) as first:
            wait_until(lambda: len(fake.received) >= 10, timeout=20, what="the first sends")
            first.kill()
            assert first.process.returncode == -signal.SIGKILL
        before_restart = received()
        assert 0 < len(before_restart) < MESSAGES, f"the kill did not interrupt the queue ({len(before_restart)} sent)"

        with serving(config, tmp_path) as second:
            wait_until(lambda: received() >= set(queued), timeout=30, what=f"all {MESSAGES} messages at the fake API")
            code = second.stop()
            assert code == 0, second.output()
        assert received() == set(queued)  # duplicates allowed (at-least-once), nothing lost or invented

        # Within a conversation the queue keeps enqueue order, across the crash too.
        first_seen: dict[str, list[int]] = {}
        for body in list(fake.received):
            sent = first_seen.setdefault(body["to"], [])
            if body["id"] not in sent:
                sent.append(body["id"])
        assert len(first_seen) == RECIPIENTS
        assert all(ids == sorted(ids) for ids in first_seen.values()), first_seen

        rows = messages_json(config, tmp_path)
        assert sorted(row["id"] for row in rows) == sorted(queued)
        assert {row["status"] for row in rows} == {"queued"}
        assert all(row["external_id"] for row in rows)
        duplicates = len(fake.received) - len(received())
    report(f"kill -9 during outbound {backend_of(database_url)}: {MESSAGES} messages queued, server killed after "
           f"{len(before_restart)} sent, restarted; {MESSAGES} delivered, 0 lost, in order in all {RECIPIENTS} conversations, "
           f"{duplicates} sent twice (at-least-once: a send whose answer the kill lost) ({clock})")


async def _queue_messages(config: Path) -> list[int]:
    """100 `host.send_text` calls, as a workflow or an agent would queue them, before any server runs."""
    from core.numbers import sync_config_numbers
    from core.storage.database import close_storage, open_storage, prepare_schema

    runtime = runtime_for(config)
    url = runtime.settings.database.url
    await open_storage(url)
    try:
        await prepare_schema(url)
        await sync_config_numbers(runtime.settings.numbers)
        ids = []
        for index in range(MESSAGES):
            conversation = await runtime.host.conversation_with("n1", f"+1555010{index % RECIPIENTS:04d}")
            ids.append((await runtime.host.send_text(conversation, f"message {index}")).id)
        return ids
    finally:
        await close_storage()


@contextmanager
def working(config: Path, cwd: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """`hookline worker --config config`, logging to `<name>.log`; killed on the way out."""
    with (cwd / f"{name}.log").open("wb") as out:
        process = subprocess.Popen([str(HOOKLINE), "worker", "--config", str(config)], cwd=cwd, env=cli_env(),
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_web_and_queue_workers_run_apart_and_a_killed_workers_jobs_are_done_by_another(tmp_path, database_url, monkeypatch):
    """`serve --no-queue` answers HTTP and runs no jobs; `hookline worker` processes run them. A
    worker killed mid-batch leaves leased jobs that another picks up when the lease runs out."""
    monkeypatch.chdir(tmp_path)
    with running_fake_api(delay=0.05) as fake:
        config = write_config(tmp_path, database_url, api_url=fake.url, queue={"lease_seconds": 1, "concurrency": 4},
                              modules=[RECORDER])
        queued = asyncio.run(_queue_messages(config))

        def received() -> set[int]:
            return {body["id"] for body in list(fake.received)}

        with serving(config, tmp_path, "--no-queue") as web:
            time.sleep(1.0)  # a server with its queue workers would have sent several by now
            assert not fake.received and "queue workers: off" in web.output()
            with working(config, tmp_path, "worker-a") as first, working(config, tmp_path, "worker-b") as second:
                wait_until(lambda: len(fake.received) >= 10, timeout=20, what="the first sends")
                first.kill()
                wait_until(lambda: received() >= set(queued), timeout=40, what=f"all {MESSAGES} messages at the fake API")
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=20) == 0
            assert first.returncode == -signal.SIGKILL
            assert "hookline worker stopped" in (tmp_path / "worker-b.log").read_text()
            assert web.stop() == 0
        assert received() == set(queued)
        rows = messages_json(config, tmp_path)
        assert {row["status"] for row in rows} == {"queued"}
