"""GET /metrics: the counters match what the test did, the queue gauges what the job table holds,
the [metrics] token and address rules, and one sum across several processes.

In-process tests run the app's lifespan, which makes the test process count into its own
`<data_dir>/metrics`, so every count starts from zero. The process tests run real `hookline
serve` and `hookline worker` processes sharing one directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from tortoise.transactions import in_transaction

import core.metrics.endpoint
import core.webhooks
from core import metrics
from core.app import create_app
from core.config import ConfigError
from core.metrics import directory as metrics_directory
from core.metrics.directory import SharedDirectory, default_directory
from core.storage.models import Job, Message
from tests.fake_api import running_fake_api
from tests.helpers import SECRET, eventually, inbound_body, post_signed, runtime_for, started, write_config
from tests.recording_provider import signed_headers
from tests.test_process import RECORDER, serving, wait_until, working

TOKEN = "metrics-token-0123456789abcdef"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series never written is 0 (the test then asserts 0)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "+1555" not in response.text  # no phone number ever becomes a label
    return parse(response.text)


# --------------------------------------------------------------------------- counters


@pytest.mark.anyio
async def test_a_scrape_counts_the_webhooks_and_sends_the_test_made(tmp_path, database_url, monkeypatch):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url, queue={"max_attempts": 2}))
        # Sends run one at a time in one conversation, so the fake answers them in this order:
        fake.answer(
            (503, {}), (201, {"sid": "S-A", "status": "queued"}),  # A: transient, then sent
            (400, {"code": 21211, "message": "invalid To"}),       # B: permanent failure
            (201, {"sid": "S-C", "status": "queued"}),             # C: sent
            (503, {}), (503, {}),                                  # D: transient twice = given up (dead job)
        )
        async with started(runtime) as client:
            for index in (1, 2, 3):  # three new messages, three requests
                assert (await post_signed(client, inbound_body((f"m{index}", "+15550100001", "hola")))).status_code == 200
            for index in (1, 2):  # two redeliveries
                assert (await post_signed(client, inbound_body((f"m{index}", "+15550100001", "hola")))).status_code == 200
            # one batch with a redelivered and a new message: accepted, one of each
            assert (await post_signed(client, inbound_body(("m3", "+15550100001", "hola"), ("m4", "+15550100002", "hi")))).status_code == 200
            # a status for an id hookline never sent: kept, moves nothing, still accepted
            assert (await post_signed(client, inbound_body(statuses=[{"id": "SM-unknown", "status": "delivered"}]))).status_code == 200
            body = inbound_body(("m5", "+15550100001", "forged"))
            for _ in range(2):
                forged = await client.post("/webhooks/whatsapp/recorder", content=body, headers=signed_headers("n1", "wrong", body))
                assert forged.status_code == 403
            unknown = await client.post("/webhooks/whatsapp/recorder", content=body, headers=signed_headers("nope", SECRET, body))
            assert unknown.status_code == 404
            assert (await post_signed(client, b"not json")).status_code == 400
            huge = b"x" * (runtime.settings.server.max_body_bytes + 1)
            assert (await post_signed(client, huge)).status_code == 413

            async def storage_down(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("database unreachable")

            with monkeypatch.context() as patch:
                patch.setattr(core.webhooks, "record_webhook", storage_down)
                assert (await post_signed(client, inbound_body(("m6", "+15550100001", "later")))).status_code == 503

            conversation = await runtime.host.conversation_with("n1", "+15550100009")
            sent = [await runtime.host.send_text(conversation, text) for text in ("A", "B", "C", "D")]

            async def settled() -> bool:
                final = await Message.filter(id__in=[m.id for m in sent]).order_by("id").values_list("status", flat=True)
                jobs = await Job.all().values_list("state", flat=True)
                return [status.value for status in final] == ["queued", "failed", "queued", "failed"] and list(jobs) == ["dead"]

            await eventually(settled, timeout=20)
            samples = await scrape(client)

    webhooks = {outcome: value(samples, "hookline_webhooks_total", provider="recorder", outcome=outcome)
                for outcome in metrics.OUTCOMES}
    assert webhooks == {"accepted": 5, "duplicate": 2, "rejected": 3, "invalid": 2, "unavailable": 1}
    assert value(samples, "hookline_webhook_messages_total", provider="recorder", result="stored") == 4
    assert value(samples, "hookline_webhook_messages_total", provider="recorder", result="duplicate") == 3

    assert value(samples, "hookline_messages_sent_total", provider="recorder") == 2
    assert value(samples, "hookline_messages_failed_total", provider="recorder", error_code="21211") == 1
    assert value(samples, "hookline_messages_failed_total", provider="recorder", error_code="retries_exhausted") == 1
    assert value(samples, "hookline_send_transient_errors_total", provider="recorder", error_code="503") == 3
    assert value(samples, "hookline_send_duration_seconds_count", provider="recorder") == 6  # every provider call
    assert value(samples, "hookline_send_duration_seconds_bucket", provider="recorder", le="+Inf") == 6
    assert 0 < value(samples, "hookline_send_duration_seconds_sum", provider="recorder") < 6 * 5

    for state, count in {"ready": 0, "scheduled": 0, "running": 0, "dead": 1}.items():
        assert value(samples, "hookline_queue_jobs", state=state) == count, state
    assert value(samples, "hookline_queue_oldest_ready_age_seconds") == 0
    assert value(samples, "hookline_storage_up") == 1
    assert value(samples, "hookline_processes", role="server") == 1


@pytest.mark.anyio
async def test_queue_gauges_are_read_from_the_job_table_at_scrape_time(tmp_path, database_url, monkeypatch):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime, run_workers=False) as client:  # nothing runs the jobs
        for index in range(4):
            assert (await post_signed(client, inbound_body((f"q{index}", "+15550100001", "hola")))).status_code == 200
        async with in_transaction() as connection:
            await runtime.host.queue.enqueue(connection, "timer", {"conversation_id": None}, delay_seconds=600)
        ids = sorted(await Job.filter(kind="inbound").values_list("id", flat=True))
        oldest = await Job.get(id=ids[0])
        await Job.filter(id=ids[0]).update(run_at_ms=oldest.run_at_ms - 10_000)  # due for 10 s
        await Job.filter(id=ids[1]).update(state="running", locked_until_ms=oldest.run_at_ms + 60_000)
        await Job.filter(id=ids[2]).update(state="dead")
        samples = await scrape(client)
        assert {state: value(samples, "hookline_queue_jobs", state=state) for state in ("ready", "scheduled", "running", "dead")} == {
            "ready": 2, "scheduled": 1, "running": 1, "dead": 1,
        }
        assert 10 <= value(samples, "hookline_queue_oldest_ready_age_seconds") < 40
        await Job.all().delete()
        samples = await scrape(client)
        assert [value(samples, "hookline_queue_jobs", state=state) for state in ("ready", "scheduled", "running", "dead")] == [0] * 4
        assert ("hookline_queue_jobs", (("state", "dead"),)) in samples  # zeros are reported, not left out
        assert value(samples, "hookline_queue_oldest_ready_age_seconds") == 0

        async def unreachable(*args: Any) -> Any:
            raise ConnectionError("database unreachable")

        with monkeypatch.context() as patch:  # storage down: the scrape still answers, and says so
            patch.setattr(core.metrics.endpoint, "query", unreachable)
            samples = await scrape(client)
        assert value(samples, "hookline_storage_up") == 0
        assert not any(name.startswith("hookline_queue_") for name, _ in samples)
        assert value(samples, "hookline_processes", role="server") == 1


@pytest.mark.anyio
async def test_rate_limit_waits_reported_through_the_function_the_limiter_calls(tmp_path):
    runtime = runtime_for(write_config(tmp_path, f"sqlite://{tmp_path}/h.sqlite3"))
    async with started(runtime, run_workers=False) as client:
        metrics.rate_limit_waited("number", 0.2)
        metrics.rate_limit_waited("number", 0.2)
        metrics.rate_limit_waited("recipient", 1.5)
        with pytest.raises(ValueError):
            metrics.rate_limit_waited("global", 1.0)  # type: ignore[arg-type]
        samples = await scrape(client)
    assert value(samples, "hookline_rate_limit_waits_total", scope="number") == 2
    assert value(samples, "hookline_rate_limit_waits_total", scope="recipient") == 1
    assert value(samples, "hookline_rate_limit_wait_seconds_sum", scope="number") == pytest.approx(0.4)
    assert value(samples, "hookline_rate_limit_wait_seconds_bucket", scope="number", le="0.25") == 2
    assert value(samples, "hookline_rate_limit_wait_seconds_bucket", scope="recipient", le="1.0") == 0
    assert value(samples, "hookline_rate_limit_wait_seconds_bucket", scope="recipient", le="2.5") == 1
    assert not any(labels and dict(labels).get("scope") == "global" for _, labels in samples)


def test_error_code_labels_stay_bounded():
    label = metrics.error_code_label
    assert [label("p-codes", code) for code in ("21211", 131026, "http_503", "retries_exhausted", None, "")] == [
        "21211", "131026", "http_503", "retries_exhausted", "none", "none",
    ]
    # a phone number, free text, a secret-looking blob: never a label
    assert {label("p-codes", code) for code in ("+15550100001", "15550100001", "Invalid 'To' number", "x" * 80, "sk_live_ABC")} == {"other"}
    kept = [label("p-capped", f"code_{index}") for index in range(metrics.MAX_ERROR_CODES + 10)]
    assert kept[: metrics.MAX_ERROR_CODES] == [f"code_{index}" for index in range(metrics.MAX_ERROR_CODES)]
    assert set(kept[metrics.MAX_ERROR_CODES:]) == {"other"}
    assert label("p-capped", "code_0") == "code_0"  # codes already labelled keep their label


# --------------------------------------------------------------------------- who may scrape


@asynccontextmanager
async def _app(tmp_path: Path, metrics_table: str) -> AsyncIterator[Starlette]:
    config = write_config(tmp_path, f"sqlite://{tmp_path}/h.sqlite3", extra=f"[metrics]\n{metrics_table}\n")
    app = create_app(runtime_for(config))
    async with app.router.lifespan_context(app):
        yield app


async def _get(app: Starlette, address: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/metrics", headers=headers)


@pytest.mark.anyio
async def test_a_token_or_an_allowed_address_and_nothing_else(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with _app(tmp_path, f"token = {json.dumps(TOKEN)}") as app:  # allow: the default, this machine
        for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            assert (await _get(app, address)).status_code == 200, address
        refused = await _get(app, "203.0.113.9")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert (await _get(app, "203.0.113.9", TOKEN)).status_code == 200
        assert (await _get(app, "203.0.113.9", TOKEN + "x")).status_code == 401
        assert (await _get(app, "203.0.113.9", TOKEN[:-1])).status_code == 401
        assert (await _get(app, "127.0.0.1", "wrong-token")).status_code == 401  # a wrong token is never ignored
        assert (await _get(app, "203.0.113.9", **{"Authorization": TOKEN})).status_code == 401  # not a bearer header
        openmetrics = await _get(app, "203.0.113.9", TOKEN, Accept="application/openmetrics-text; version=1.0.0")
        assert openmetrics.status_code == 200 and openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.rstrip().endswith("# EOF")
    assert TOKEN[:12] not in caplog.text
    assert "metrics: refused 401 for 203.0.113.9" in caplog.text


@pytest.mark.anyio
async def test_without_a_token_only_the_allowed_networks_get_in(tmp_path):
    async with _app(tmp_path, 'allow = ["10.1.0.0/16", "2001:db8::1"]') as app:
        assert (await _get(app, "10.1.2.3")).status_code == 200
        assert (await _get(app, "2001:db8::1")).status_code == 200
        for address in ("127.0.0.1", "10.2.0.1", "2001:db8::2"):
            refused = await _get(app, address)
            assert refused.status_code == 403, address
            assert refused.json()["error"]["code"] == "forbidden"
        assert (await _get(app, "10.2.0.1", TOKEN)).status_code == 403  # no token is configured: none helps


@pytest.mark.anyio
async def test_metrics_can_be_switched_off(tmp_path):
    async with _app(tmp_path, "enabled = false") as app:
        assert (await _get(app, "127.0.0.1")).status_code == 404
        assert (await _get(app, "127.0.0.1", TOKEN)).status_code == 404
    assert not (tmp_path / "data" / "metrics").exists()  # and nothing was written for it


@pytest.mark.parametrize(("table", "key", "message"), [
    ('token = "short-token"', "metrics.token", "at least 16 characters"),
    ('allow = ["127.0.0.1/32", "localhost"]', "metrics.allow[1]", "expected an IP address or network"),
    ("allow = []", "metrics", "/metrics would refuse everyone"),
    ("colour = 1", "metrics.colour", "unknown key (expected one of: enabled, token, allow, directory)"),
])
def test_bad_metrics_settings_are_configuration_errors(tmp_path, table, key, message):
    config = write_config(tmp_path, f"sqlite://{tmp_path}/h.sqlite3", extra=f"[metrics]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        runtime_for(config)
    assert any(f": {key}: " in line and message in line for line in str(caught.value).splitlines()), str(caught.value)
    assert "short-token" not in str(caught.value)  # the token is never echoed


def test_an_empty_token_from_the_environment_means_no_token(tmp_path):
    config = write_config(tmp_path, f"sqlite://{tmp_path}/h.sqlite3", extra='[metrics]\ntoken = "${HOOKLINE_METRICS_TOKEN:-}"\n')
    assert runtime_for(config).settings.metrics.token is None


# --------------------------------------------------------------------------- several processes


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_shared_directory_is_emptied_only_by_a_process_starting_alone(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    dead = _dead_pid()
    (directory / f"counter_{dead}.db").write_bytes(b"a previous run")
    first = SharedDirectory(directory)
    first.open()  # nobody else holds it: a new run starts from zero
    assert not list(directory.glob("*.db"))

    (directory / f"counter_{dead}.db").write_bytes(b"counted by a process that died during this run")
    (directory / f"gauge_livesum_{dead}.db").write_bytes(b"it was alive")
    (directory / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"this one is")
    second = SharedDirectory(directory)
    second.open()  # another process runs: keep the counts, drop only the dead process's live gauge
    assert sorted(path.name for path in directory.glob("*.db")) == [f"counter_{dead}.db", f"gauge_livesum_{os.getpid()}.db"]
    second.close()
    first.close()
    assert [path.name for path in directory.glob("*.db")] == [f"counter_{dead}.db"]  # leaving drops the live gauge

    third = SharedDirectory(directory)
    third.open()  # everyone had stopped
    assert not list(directory.glob("*.db"))
    third.close()


def _scrape_url(url: str) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _post(url: str, message_id: str) -> int:
    """Post one webhook until it is stored, as a provider would; returns how many 503s it got
    (SQLite can refuse a write transaction that meets another process's: `database is locked`)."""
    body = inbound_body((message_id, "+15550100001", "hola"))
    for refused in range(5):
        response = httpx.post(f"{url}/webhooks/whatsapp/recorder", content=body, headers=signed_headers("n1", SECRET, body), timeout=10)
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            return refused
        time.sleep(0.1)
    raise AssertionError(f"{url} answered 503 five times")


async def _queue_send(config: Path) -> None:
    from core.numbers import sync_config_numbers
    from core.storage.database import close_storage, open_storage

    runtime = runtime_for(config)
    await open_storage(runtime.settings.database.url)
    try:
        await sync_config_numbers(runtime.settings.numbers)
        conversation = await runtime.host.conversation_with("n1", "+15550100007")
        await runtime.host.send_text(conversation, "from the worker")
    finally:
        await close_storage()


def test_two_servers_and_a_worker_report_one_sum(tmp_path, database_url, monkeypatch):
    """Two `serve --no-queue` processes and a `hookline worker` share one metrics directory: a
    scrape of either server reports everybody's counts, a killed process's counts stay, and the
    queue gauges are the table's (not multiplied by the processes)."""
    monkeypatch.chdir(tmp_path)
    with running_fake_api() as fake:
        config = write_config(tmp_path, database_url, api_url=fake.url, modules=[RECORDER])
        with serving(config, tmp_path, "--no-queue") as a:  # first: it migrates a new SQLite file
            with working(config, tmp_path, "worker") as worker, serving(config, tmp_path, "--no-queue") as b:  # both start at once
                wait_until(lambda: "hookline worker ready" in (tmp_path / "worker.log").read_text(), 15, "the worker")
                assert value(_scrape_url(a.url), "hookline_processes", role="worker") == 1
                unavailable = sum(_post(a.url, f"a{index}") for index in range(3))
                unavailable += _post(b.url, "b0") + _post(b.url, "b1")
                unavailable += _post(b.url, "a0")  # a redelivery, to the other server
                asyncio.run(_queue_send(config))
                fake.wait_for(1, timeout=15)

                def worked() -> bool:
                    samples = _scrape_url(a.url)
                    return value(samples, "hookline_messages_sent_total", provider="recorder") == 1 and all(
                        value(samples, "hookline_queue_jobs", state=state) == 0 for state in ("ready", "running"))

                wait_until(worked, 15, "the worker to send and run every job", poll=0.1)
                for server in (a, b):
                    samples = _scrape_url(server.url)
                    assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="accepted") == 5
                    assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="duplicate") == 1
                    assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="unavailable") == unavailable
                    assert value(samples, "hookline_webhook_messages_total", provider="recorder", result="stored") == 5
                    assert value(samples, "hookline_messages_sent_total", provider="recorder") == 1  # counted by the worker
                    assert value(samples, "hookline_send_duration_seconds_count", provider="recorder") == 1
                    assert value(samples, "hookline_processes", role="server") == 2
                    assert value(samples, "hookline_processes", role="worker") == 1

                b.kill()  # SIGKILL: no goodbye, its files stay
                samples = _scrape_url(a.url)
                assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="accepted") == 5
                assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="duplicate") == 1
                assert value(samples, "hookline_processes", role="server") == 1

                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=20) == 0
                assert _post(a.url, "a3") + _post(a.url, "a4") == 0  # nobody else writes now
                samples = _scrape_url(a.url)
                assert value(samples, "hookline_processes", role="worker") == 0
                assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="accepted") == 7
                assert value(samples, "hookline_messages_sent_total", provider="recorder") == 1  # the worker's, kept
                assert value(samples, "hookline_queue_jobs", state="ready") == 2  # the table's two, once
            assert a.stop() == 0


def test_serve_with_two_workers_counts_into_one_directory(tmp_path):
    """`serve --workers 2`: both uvicorn processes count into the directory, whichever answers."""
    config = write_config(tmp_path, f"sqlite://{tmp_path}/h.sqlite3", modules=[RECORDER])
    with serving(config, tmp_path, "--workers", "2", "--no-queue", healthy_within=30) as server:  # two interpreters start
        wait_until(lambda: value(_scrape_url(server.url), "hookline_processes", role="server") == 2, 20, "both processes")
        for index in range(20):  # new connections each: the kernel spreads them over both processes
            _post(server.url, f"w{index}")
        for _ in range(3):
            samples = _scrape_url(server.url)
            assert value(samples, "hookline_webhooks_total", provider="recorder", outcome="accepted") == 20
            assert value(samples, "hookline_queue_jobs", state="ready") == 20
        shared = default_directory(tmp_path / "data")  # where the processes met: /dev/shm by default
        files = sorted(path.name for path in shared.glob("counter_*.db"))
        assert 1 <= len(files) <= 2, files
        assert server.stop() == 0
    assert not list(shared.glob("gauge_live*.db"))  # both left the live gauge


def test_the_default_directory_is_in_shared_memory_ours_alone_and_one_per_data_directory(tmp_path, monkeypatch):
    """Memory (no journal waits), one per installation, never a directory another user prepared."""
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(metrics_directory, "SHARED_MEMORY", shm)
    first, second = default_directory(tmp_path / "a" / "data"), default_directory(tmp_path / "b" / "data")
    assert first.parent == shm and first != second and first == default_directory(tmp_path / "a" / "data")
    assert first.stat().st_mode & 0o777 == 0o700
    first.chmod(0o777)  # someone widened it: not trusted any more
    assert default_directory(tmp_path / "a" / "data") == tmp_path / "a" / "data" / "metrics"
    monkeypatch.setattr(metrics_directory, "SHARED_MEMORY", tmp_path / "no-such-dir")  # not Linux
    assert default_directory(tmp_path / "c" / "data") == tmp_path / "c" / "data" / "metrics"
