"""The work queue's contract, run against every implementation: the embedded queue on SQLite and
on PostgreSQL, and scale mode's pgqueuer lanes on PostgreSQL (core/pgqueue.py). Retries and
backoff, order per key, leases of crashed workers, graceful stop, burial, durability, duplicate
enqueues, a 100-job burst in one conversation.

Driven directly (no app): storage opened as the app's lifespan opens it, a queue and its
consumer with small intervals.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from core.config import QueueConfig
from core.queue import ClaimedJob, Consumer, EmbeddedQueue, WorkQueue, now_ms
from core.storage.models import Job
from core.worker import DeadHandler, JobHandler, JobRunner, Postpone, RetryLater, Worker, backoff_delay
from tests.conftest import clean_postgres
from tests.helpers import eventually, storage

pytestmark = pytest.mark.anyio


def queue_config(**overrides: Any) -> QueueConfig:
    values: dict[str, Any] = {
        "concurrency": 4,
        "max_attempts": 5,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "lease_seconds": 5.0,
        "poll_interval_seconds": 0.05,
    }
    values.update(overrides)
    return QueueConfig(**values)


@dataclass
class Implementation:
    """One queue implementation on one database, as a process would build it."""

    name: str
    url: str

    def queue(self) -> WorkQueue:
        if self.name == "pgqueuer":
            from core.pgqueue import PgQueue

            return PgQueue(self.url)
        return EmbeddedQueue()

    async def crash_claim(self, queue: WorkQueue, lane: str, lease_seconds: float) -> list[ClaimedJob]:
        """Claim as a worker would, and never finish: what a worker killed mid-job leaves."""
        if self.name == "pgqueuer":
            job = await queue.claim_head(lane, lease_seconds)  # type: ignore[attr-defined]
            return [job] if job else []
        return await queue.claim(10, lease_seconds)  # type: ignore[attr-defined]


@pytest.fixture(params=["embedded-sqlite", "embedded-postgres", "pgqueuer-postgres"])
def implementation(request: pytest.FixtureRequest, tmp_path, postgres_url: str | None) -> Implementation:
    """Each queue on each database it runs on (pgqueuer is PostgreSQL's only)."""
    name, backend = request.param.split("-")
    if backend == "sqlite":
        return Implementation(name, f"sqlite://{tmp_path}/hookline.sqlite3")
    return Implementation(name, clean_postgres(postgres_url))


def consumer(
    queue: WorkQueue, handlers: Mapping[str, JobHandler], config: QueueConfig, on_dead: Mapping[str, DeadHandler] | None = None
) -> Consumer:
    return queue.consumer(JobRunner(queue, handlers, config, on_dead))


@asynccontextmanager
async def running(worker: Consumer) -> AsyncIterator[Consumer]:
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace_seconds=1.0)


async def enqueue(
    queue: WorkQueue, kind: str, payload: dict[str, Any], key: str | None = None, delay: float = 0, dedupe: str | None = None
) -> None:
    await queue.enqueue(get_connection("default"), kind, payload, ordering_key=key, dedupe_key=dedupe, delay_seconds=delay)
    queue.wake()


async def no_jobs() -> bool:
    return await Job.all().count() == 0


def exists(**filters: Any):
    async def check() -> bool:
        return await Job.filter(**filters).exists()

    return check


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 10.0)):
        delays = [backoff_delay(attempt, 1.0, 10.0) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered, so retries of many jobs spread out


async def test_retry_later_runs_again_after_its_delay(implementation):
    runs: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        runs.append(now_ms())
        if len(runs) < 3:
            raise RetryLater("provider busy", delay=0.15)

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"work": handler}, queue_config())):
            await enqueue(queue, "work", {"n": 1})
            await eventually(no_jobs, timeout=5)
        assert len(runs) == 3
        # The job cannot be claimed before its run_at: each retry waited at least its delay.
        assert runs[1] - runs[0] >= 150
        assert runs[2] - runs[1] >= 150


async def test_plain_exception_is_retried_with_backoff_and_recorded(implementation):
    seen: list[tuple[int, str | None, int]] = []

    async def handler(payload: dict[str, Any]) -> None:
        job = await Job.get(kind="flaky")
        seen.append((job.attempts, job.last_error, now_ms()))
        if len(seen) == 1:
            raise ValueError("boom")

    async with storage(implementation.url):
        queue = implementation.queue()
        config = queue_config(backoff_base_seconds=0.2, backoff_max_seconds=1.0)
        async with running(consumer(queue, {"flaky": handler}, config)):
            await enqueue(queue, "flaky", {})
            await eventually(no_jobs, timeout=5)
        assert [(attempts, error) for attempts, error, _ in seen] == [(1, None), (2, "ValueError: boom")]
        assert seen[1][2] - seen[0][2] >= 100  # first backoff is base/2 .. base


async def test_same_key_runs_one_at_a_time_in_order_even_during_backoff(implementation):
    events: list[str] = []
    active: dict[str, int] = {"k": 0}
    overlap: list[str] = []
    attempts: dict[str, int] = {}

    async def handler(payload: dict[str, Any]) -> None:
        name = payload["name"]
        attempts[name] = attempts.get(name, 0) + 1
        active["k"] += 1
        if active["k"] > 1:
            overlap.append(name)
        events.append(f"start {name}")
        try:
            await asyncio.sleep(0.02)
            if name == "a" and attempts[name] == 1:
                raise RetryLater("not yet", delay=0.3)
        finally:
            active["k"] -= 1
            events.append(f"end {name}")

    other_ran_during_backoff: list[bool] = []

    async def other(payload: dict[str, Any]) -> None:
        # Runs before "a" has succeeded: a different key is not held up by k's retries.
        other_ran_during_backoff.append(attempts.get("a") == 1)

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"keyed": handler, "other": other}, queue_config(concurrency=8))):
            for name in ("a", "b", "c", "d"):
                await queue.enqueue(get_connection("default"), "keyed", {"name": name}, ordering_key="k")
            await queue.enqueue(get_connection("default"), "other", {}, ordering_key="elsewhere")
            queue.wake()
            await eventually(no_jobs, timeout=5)
    assert overlap == []
    assert events == [
        "start a", "end a",  # failed, in backoff: b, c, d must wait for it
        "start a", "end a",
        "start b", "end b",
        "start c", "end c",
        "start d", "end d",
    ]
    assert other_ran_during_backoff == [True]


async def test_slow_job_on_one_key_does_not_hold_up_another_key(implementation):
    other_done = asyncio.Event()
    outcome: list[str] = []

    async def slow(payload: dict[str, Any]) -> None:
        # Finishes only when the other key's job has run, which it must do meanwhile.
        try:
            await asyncio.wait_for(other_done.wait(), timeout=1.5)
            outcome.append("slow saw other finish")
        except TimeoutError:
            outcome.append("slow timed out: other key was held up")

    async def fast(payload: dict[str, Any]) -> None:
        other_done.set()

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"slow": slow, "fast": fast}, queue_config(concurrency=2))):
            await enqueue(queue, "slow", {}, key="conversation-1")
            await eventually(exists(kind="slow", state="running"), timeout=5)
            await enqueue(queue, "fast", {}, key="conversation-2")
            await eventually(no_jobs, timeout=5)
    assert outcome == ["slow saw other finish"]


async def test_expired_lease_of_a_crashed_worker_is_claimed_again(implementation):
    ran: list[tuple[dict[str, Any], int]] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append((payload, (await Job.get(kind="orphan")).attempts))

    async with storage(implementation.url):
        queue = implementation.queue()
        await enqueue(queue, "orphan", {"x": 1}, key="k")
        crashed = await implementation.crash_claim(queue, "k", lease_seconds=0.3)  # claimed, then the worker "dies"
        assert [(job.kind, job.attempts) for job in crashed] == [("orphan", 1)]
        assert await implementation.crash_claim(queue, "k", lease_seconds=30) == []  # leased: nobody else may take it
        async with running(consumer(queue, {"orphan": handler}, queue_config())):
            await eventually(no_jobs, timeout=5)
    assert ran == [({"x": 1}, 2)]


async def test_stop_returns_unfinished_jobs_without_counting_an_attempt(implementation):
    started = asyncio.Event()

    async def stuck(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.Event().wait()  # never finishes on its own

    seen_attempts: list[int] = []

    async def quick(payload: dict[str, Any]) -> None:
        seen_attempts.append((await Job.get(kind="long")).attempts)

    async with storage(implementation.url):
        queue = implementation.queue()
        worker = consumer(queue, {"long": stuck}, queue_config())
        worker.start()
        try:
            await enqueue(queue, "long", {}, key="k")
            await asyncio.wait_for(started.wait(), timeout=5)
        finally:
            await worker.stop(grace_seconds=0.05)
        job = await Job.get(kind="long")
        assert (job.state, job.attempts, job.locked_until_ms) == ("ready", 0, None)
        # Another worker (a restarted process) takes it at once, as a first attempt.
        async with running(consumer(queue, {"long": quick}, queue_config())):
            await eventually(no_jobs, timeout=5)
    assert seen_attempts == [1]


async def test_stop_lets_a_running_job_finish_within_the_grace_period(implementation):
    started = asyncio.Event()
    finished: list[bool] = []

    async def short(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.append(True)

    async with storage(implementation.url):
        queue = implementation.queue()
        worker = consumer(queue, {"short": short}, queue_config())
        worker.start()
        try:
            await enqueue(queue, "short", {})
            await asyncio.wait_for(started.wait(), timeout=5)
        finally:
            await worker.stop(grace_seconds=5)
        assert finished == [True]
        assert await no_jobs()  # completed, not handed back


async def test_stop_while_a_claim_is_in_flight_leaves_no_job_leased(database_url):
    """A claim that committed as the worker stopped must not strand its jobs until the lease ends.
    (The embedded worker's claim loop; pgqueuer lanes claim inside the job they run.)"""
    in_claim = asyncio.Event()
    finish_claim = asyncio.Event()

    class SlowToAnswer(EmbeddedQueue):
        async def claim(self, limit: int, lease_seconds: float):  # type: ignore[override]
            jobs = await super().claim(limit, lease_seconds)
            if jobs:
                in_claim.set()
                await finish_claim.wait()  # the UPDATE committed; its answer is still on its way
            return jobs

    async def handler(payload: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async with storage(database_url):
        queue = SlowToAnswer()
        worker = Worker(queue, JobRunner(queue, {"work": handler}, queue_config(lease_seconds=60)))
        worker.start()
        try:
            await enqueue(queue, "work", {})
            await asyncio.wait_for(in_claim.wait(), timeout=5)
            stopping = asyncio.create_task(worker.stop(grace_seconds=0.05))
            await asyncio.sleep(0)
            finish_claim.set()
            await asyncio.wait_for(stopping, timeout=5)
        finally:
            finish_claim.set()
            await worker.stop(grace_seconds=0.05)
        job = await Job.get(kind="work")
        assert (job.state, job.attempts, job.locked_until_ms) == ("ready", 0, None)


async def test_job_out_of_attempts_is_buried_and_its_dead_handler_runs(implementation):
    calls: list[int] = []
    dead: list[tuple[dict[str, Any], str]] = []
    order: list[str] = []

    async def failing(payload: dict[str, Any]) -> None:
        calls.append(1)
        order.append("failing")
        raise ValueError("nope")

    async def on_dead(payload: dict[str, Any], reason: str) -> None:
        dead.append((payload, reason))

    async def next_in_line(payload: dict[str, Any]) -> None:
        order.append("next")

    async with storage(implementation.url):
        queue = implementation.queue()
        worker = consumer(queue, {"doomed": failing, "next": next_in_line}, queue_config(max_attempts=3), {"doomed": on_dead})
        async with running(worker):
            await enqueue(queue, "doomed", {"id": 7}, key="k")
            await enqueue(queue, "next", {}, key="k")
            await eventually(exists(kind="doomed", state="dead"), timeout=5)
            await eventually(lambda: order[-1:] == ["next"], timeout=5)
        job = await Job.get(kind="doomed")
        assert (job.state, job.attempts, job.last_error, job.locked_until_ms) == ("dead", 3, "ValueError: nope", None)
        assert await implementation.crash_claim(queue, "k", lease_seconds=30) == []  # the dead are never claimed again
    assert len(calls) == 3
    assert dead == [({"id": 7}, "ValueError: nope")]
    assert order == ["failing", "failing", "failing", "next"]  # its successor waited for the burial


async def test_jobs_survive_closing_and_reopening_storage(implementation):
    ran: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append(payload)

    async with storage(implementation.url):
        queue = implementation.queue()
        await enqueue(queue, "kept", {"n": 1}, key="k")
        await enqueue(queue, "kept", {"n": 2}, key="k")
        await enqueue(queue, "kept", {"n": 3, "nested": {"list": [1, "two"]}})
    async with storage(implementation.url):  # a new process: fresh queue, same database
        assert await Job.all().count() == 3
        queue = implementation.queue()
        async with running(consumer(queue, {"kept": handler}, queue_config(concurrency=1))):
            await eventually(no_jobs, timeout=5)
    assert sorted(ran, key=lambda payload: payload["n"]) == [{"n": 1}, {"n": 2}, {"n": 3, "nested": {"list": [1, "two"]}}]
    assert ran.index({"n": 1}) < ran.index({"n": 2})  # one key: in order; other keys may interleave


async def test_a_duplicate_enqueue_runs_once_and_the_key_is_free_again_once_done(implementation):
    ran: list[int] = []

    async def handler(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    async with storage(implementation.url):
        queue = implementation.queue()
        for n in (1, 2):  # the same message queued twice (a retried request, a double click)
            await enqueue(queue, "send", {"n": n}, key="conversation-1", dedupe="send:7")
        assert await Job.filter(dedupe_key="send:7").count() == 1
        async with running(consumer(queue, {"send": handler}, queue_config())):
            await eventually(no_jobs, timeout=5)
            await enqueue(queue, "send", {"n": 3}, key="conversation-1", dedupe="send:7")
            await eventually(no_jobs, timeout=5)
    assert ran == [1, 3]


async def test_a_burst_of_100_in_one_conversation_runs_one_at_a_time_in_order(implementation):
    seen: list[int] = []
    active = {"now": 0, "most": 0}

    async def handler(payload: dict[str, Any]) -> None:
        active["now"] += 1
        active["most"] = max(active["most"], active["now"])
        await asyncio.sleep(0)
        seen.append(payload["n"])
        active["now"] -= 1

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"inbound": handler}, queue_config(concurrency=8))):
            async with in_transaction() as connection:  # one webhook batch, one transaction
                for n in range(100):
                    await queue.enqueue(connection, "inbound", {"n": n}, ordering_key="conversation-9")
            queue.wake()
            await eventually(no_jobs, timeout=20)
    assert seen == list(range(100))
    assert active["most"] == 1


async def test_two_instances_on_one_database_share_a_conversation_without_overlap(implementation):
    """Two consumers (two processes' worth) drain one database; a conversation's jobs never run at
    once and stay in order, other conversations spread over both."""
    log: list[tuple[str, int, str]] = []
    busy: dict[str, str] = {}
    overlaps: list[str] = []

    def handler_for(instance: str) -> JobHandler:
        async def handler(payload: dict[str, Any]) -> None:
            key = payload["key"]
            if key in busy:
                overlaps.append(f"{key}: {busy[key]} and {instance}")
            busy[key] = instance
            await asyncio.sleep(0.005)
            log.append((key, payload["n"], instance))
            del busy[key]

        return handler

    async with storage(implementation.url):
        first, second = implementation.queue(), implementation.queue()
        async with running(consumer(first, {"work": handler_for("a")}, queue_config())), \
                running(consumer(second, {"work": handler_for("b")}, queue_config())):
            for n in range(20):
                for key in ("c1", "c2", "c3"):
                    await enqueue(first if n % 2 else second, "work", {"key": key, "n": n}, key=key)
            first.wake()
            second.wake()
            await eventually(no_jobs, timeout=20)
    assert overlaps == []
    for key in ("c1", "c2", "c3"):
        assert [n for k, n, _ in log if k == key] == list(range(20))
    assert len(log) == 60


async def test_a_delayed_job_runs_after_its_delay_and_not_before(implementation):
    ran_at: list[int] = []

    async def timer(payload: dict[str, Any]) -> None:
        ran_at.append(now_ms())

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"timer": timer}, queue_config())):
            queued_at = now_ms()
            await enqueue(queue, "timer", {}, delay=0.4)
            await eventually(no_jobs, timeout=5)
    assert len(ran_at) == 1 and ran_at[0] - queued_at >= 400


async def test_retry_without_counting_gives_the_claimed_attempt_back(implementation):
    async with storage(implementation.url):
        queue = implementation.queue()
        await enqueue(queue, "work", {}, key="k")
        [job] = await implementation.crash_claim(queue, "k", lease_seconds=30)
        await queue.retry(job.id, 0, "rate limit", count_attempt=False)
        row = await Job.get(id=job.id)
        assert (row.state, row.attempts, row.locked_until_ms, row.last_error) == ("ready", 0, None, "rate limit")
        [again] = await implementation.crash_claim(queue, "k", lease_seconds=30)
        await queue.retry(again.id, 0, "boom")  # counted, as every failure is
        assert (again.attempts, (await Job.get(id=job.id)).attempts) == (1, 1)


async def test_a_postponed_job_uses_no_attempt_and_keeps_its_place_before_its_key(implementation):
    """Postponed three times with max_attempts=1: one counted attempt would have buried it."""
    order: list[str] = []
    attempts: list[int] = []

    async def send(payload: dict[str, Any]) -> None:
        if payload["name"] == "first":
            attempts.append((await Job.filter(ordering_key="out:1").order_by("id").first()).attempts)
            if order.count("postponed") < 3:
                order.append("postponed")
                raise Postpone(0.1, "rate limit of number n1: next slot in 2.1s")
        order.append(payload["name"])

    async with storage(implementation.url):
        queue = implementation.queue()
        async with running(consumer(queue, {"send": send}, queue_config(max_attempts=1, concurrency=4))):
            await enqueue(queue, "send", {"name": "first"}, key="out:1")
            await enqueue(queue, "send", {"name": "second"}, key="out:1")
            await enqueue(queue, "send", {"name": "elsewhere"}, key="out:2")
            await eventually(exists(ordering_key="out:1", last_error="rate limit of number n1: next slot in 2.1s"), timeout=5)
            await eventually(no_jobs, timeout=5)  # none buried: dead jobs are kept
    assert attempts == [1, 1, 1, 1]  # each claim counted one, and each postponement gave it back
    assert order.index("elsewhere") < order.index("first")  # another conversation is not held up
    assert [name for name in order if name != "elsewhere"] == ["postponed", "postponed", "postponed", "first", "second"]


def test_unread_pgqueuer_notices_are_bounded():
    """Each webhook notifies every consumer; pgqueuer keeps what it has not read. A flood of
    notices (a busy worker under sustained load) must not grow its memory without end."""
    from pgqueuer.core import listeners

    from core.pgqueue import MAX_PENDING_NOTICES, BoundedNotices

    notices = listeners.PGNoticeEventListener()  # what QueueManager.run makes
    assert isinstance(notices, BoundedNotices)
    for n in range(MAX_PENDING_NOTICES * 3):
        notices.put_nowait(n)  # type: ignore[arg-type]
    assert notices.qsize() == MAX_PENDING_NOTICES
    assert notices.get_nowait() == 0  # the oldest are kept: a wake-up is a wake-up
