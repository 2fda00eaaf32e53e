"""The work queue of scale mode: hookline's job rows in lanes, dispatched by pgqueuer.

pgqueuer gives what many instances on one PostgreSQL need — dequeueing with `FOR UPDATE SKIP
LOCKED`, a LISTEN/NOTIFY wake-up on every insert, heartbeats that hand a crashed worker's work to
another — but it has no notion of order within a key, and hookline's contract is that jobs with
the same `ordering_key` (a conversation) run one at a time, in enqueue order. So the unit
pgqueuer dispatches is a **lane**, not a job:

* A job is a `hookline_job` row, as on the embedded queue (state, attempts, run_at, lease). Its
  lane is its ordering key, or `#<id>` for a job without one.
* A `hookline_lane` row exists while a lane has work or someone draining it. Enqueueing writes
  the job, upserts its lane row and — only when that row is new — a pgqueuer job naming the lane.
  All of it is one statement inside the caller's transaction: no job without its row, no row
  without a way to be run, and nothing if the caller rolls back.
* The consumer's pgqueuer entrypoint drains a lane: it claims the lane's head (its oldest ready
  or running job) with a lease, runs it, and goes on to the next. Only the head can be claimed,
  so a lane never runs two jobs at once, even on two instances, and never out of order.
* When the head is not runnable now (in backoff, or leased by another worker), the drainer
  settles the lane under the lane row's lock: no job left → the row is deleted; a job due later
  → a pgqueuer job is queued for then. Enqueueing locks the same row, so a job committed while
  a drainer settles is never stranded: either the drainer sees it, or the enqueue sees the row
  gone and schedules the lane anew.

Several pgqueuer jobs may name one lane (a wake-up scheduled while another drainer is still on
it); that is harmless, because claiming the head is atomic: the extra drainer finds nothing to
claim and settles. Crashes: a claimed job's lease runs out and any drainer of its lane claims it
again; a crashed drainer's pgqueuer job is re-picked by pgqueuer after its heartbeat stops.

Retry delays are relative (`now() + interval` on the database's clock), so instances whose
clocks disagree still wake lanes on time; run_at stays on each process's clock, as on the
embedded queue (keep instances' clocks in step with NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from pgqueuer import AsyncpgDriver, QueueManager, Queries
from pgqueuer.core import listeners
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job as PgqJob
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction

from core.config import QueueConfig
from core.queue import ClaimedJob, JobRows, insert_jobs_from, now_ms
from core.storage.sql import from_json, query
from core.worker import JobRunner, backoff_delay

log = logging.getLogger("hookline.queue")

LANE_ENTRYPOINT = "hookline_lane"
SETTLE_MIN_DELAY = 0.05  # never wake a lane sooner than this: no busy loop on clock jitter

#: Unread pgqueuer notices a consumer keeps; more are dropped (see BoundedNotices).
MAX_PENDING_NOTICES = 1000


class BoundedNotices(listeners.PGNoticeEventListener):
    """pgqueuer's queue of NOTIFY wake-ups, bounded.

    pgqueuer's change trigger fires once per statement on its table, even a statement that
    changes no row, and hookline's intake statement holds such an insert (a lane's first job:
    `_lanes_of_jobs`), so every webhook notifies every consumer. pgqueuer reads one notice per
    job it dispatches or per wait, and keeps the rest in an unbounded asyncio.Queue: under
    sustained load a worker grew ~1 KB per webhook (the bench soak: 129 MB at 1 min, 264 MB at
    5). A notice only says "look again"; beyond a thousand unread ones another adds nothing, and
    is dropped. (Making the trigger per row instead stops the flood but loses wake-ups: pgqueuer
    discounts one notice per dispatched job and relies on the surplus; tests showed jobs waiting
    for its 5 s poll.)
    """

    def __init__(self) -> None:
        super().__init__(maxsize=MAX_PENDING_NOTICES)

    def put_nowait(self, item: Any) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            super().put_nowait(item)


# QueueManager.run builds its queue from this name: every consumer in the process gets the bound.
listeners.PGNoticeEventListener = BoundedNotices  # type: ignore[misc]


def _lanes_of_jobs(delay_seconds: str) -> str:
    """After `enqueued`: each job's lane row, and a pgqueuer job for each lane that had none."""
    return (
        ", lane AS (INSERT INTO hookline_lane (lane, touched_at) SELECT lane, now() FROM enqueued"
        " ON CONFLICT (lane) DO UPDATE SET touched_at = EXCLUDED.touched_at RETURNING lane, (xmax = 0) AS new)"
        ", lane_job AS (INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status)"
        f" SELECT 0, '{LANE_ENTRYPOINT}', convert_to(lane, 'UTF8'), now() + make_interval(secs => {delay_seconds}), 'queued'"
        " FROM lane WHERE new)"
    )


_LANE_OF_JOB = "COALESCE(ordering_key, '#' || id::text) AS lane"
_ENQUEUE = (
    "WITH source AS (SELECT ?::text AS kind, ?::jsonb AS payload, ?::text AS ordering_key, ?::text AS dedupe_key)"
    + insert_jobs_from("source", "?", "?", _LANE_OF_JOB) + _lanes_of_jobs("?") + " SELECT 1"
)
_WAKE_LANE = (
    "INSERT INTO pgqueuer (priority, entrypoint, payload, execute_after, status)"
    " VALUES (0, '" + LANE_ENTRYPOINT + "', convert_to(?, 'UTF8'), now() + make_interval(secs => ?), 'queued')"
)


def _lane_filter(lane: str) -> tuple[str, Any]:
    """The job rows of a lane: by ordering key, or the one job of a `#<id>` lane."""
    if lane.startswith("#"):
        return "id = ? AND ordering_key IS NULL", int(lane[1:])
    return "ordering_key = ?", lane


_DSN_OPTIONS = ("host", "sslmode")  # what asyncpg reads from the query; Tortoise's pool options are not


def asyncpg_dsn(url: str) -> str:
    """A hookline PostgreSQL URL as asyncpg takes it (a Unix socket's `host` and `sslmode` kept,
    Tortoise's pool options such as `maxsize` dropped: asyncpg would send them as settings)."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query) if key in _DSN_OPTIONS]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(kept)))


class PgQueue(JobRows):
    """Job rows as on the embedded queue (complete, retry, bury, release and lease renewal are
    the same statements); enqueueing and claiming go by lane."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    _enqueue_sql = _ENQUEUE

    def _enqueue_extra(self, delay_seconds: float, ordering_key: str | None) -> list[Any]:
        return [max(0.0, delay_seconds)]  # the lane's first wake-up

    def enqueue_from(self, source: str, run_at_ms: str, now: str) -> str:
        return insert_jobs_from(source, run_at_ms, now, _LANE_OF_JOB) + _lanes_of_jobs("0")

    def wake(self) -> None:
        """Nothing to do: pgqueuer's trigger notifies every instance when the lane job commits."""

    async def claim_head(self, lane: str, lease_seconds: float) -> ClaimedJob | None:
        """The lane's oldest unfinished job, if it may run now: due, and not leased by a live worker."""
        where, value = _lane_filter(lane)
        current = now_ms()
        rows = await query(
            get_connection("default"),
            "UPDATE hookline_job SET state = 'running', attempts = attempts + 1, locked_until_ms = ?"
            f" WHERE id = (SELECT id FROM hookline_job WHERE {where} AND state IN ('ready', 'running') ORDER BY id LIMIT 1)"
            " AND ((state = 'ready' AND run_at_ms <= ?) OR (state = 'running' AND locked_until_ms < ?))"
            " RETURNING id, kind, payload, attempts",
            [current + int(lease_seconds * 1000), value, current, current],
        )
        if not rows:
            return None
        row = rows[0]
        return ClaimedJob(row["id"], row["kind"], from_json(row["payload"]), row["attempts"])

    async def settle(self, lane: str) -> bool:
        """Called when the head could not be claimed. True: claim again now. False: the lane is
        closed (no work left) or scheduled for when its head can run."""
        where, value = _lane_filter(lane)
        async with in_transaction() as connection:
            await query(connection, "SELECT lane FROM hookline_lane WHERE lane = ? FOR UPDATE", [lane])
            heads = await query(
                connection,
                f"SELECT state, run_at_ms, locked_until_ms FROM hookline_job WHERE {where}"
                " AND state IN ('ready', 'running') ORDER BY id LIMIT 1",
                [value],
            )
            if not heads:
                await query(connection, "DELETE FROM hookline_lane WHERE lane = ?", [lane])
                return False
            head, current = heads[0], now_ms()
            due_ms = head["run_at_ms"] if head["state"] == "ready" else head["locked_until_ms"]
            if due_ms <= current:
                return True
            await query(connection, _WAKE_LANE, [lane, max(SETTLE_MIN_DELAY, (due_ms - current) / 1000)])
            return False

    async def reschedule(self, lane: str, delay_seconds: float = 0.0) -> None:
        """Queue the lane to be drained again (after giving its work back)."""
        await query(get_connection("default"), _WAKE_LANE, [lane, max(0.0, delay_seconds)])

    def consumer(self, runner: JobRunner) -> LaneConsumer:
        return LaneConsumer(self, runner)


class LaneConsumer:
    """Runs pgqueuer's QueueManager on a dedicated connection; its one entrypoint drains lanes."""

    def __init__(self, queue: PgQueue, runner: JobRunner) -> None:
        self.queue = queue
        self.runner = runner
        self.config: QueueConfig = runner.config
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._stopping = asyncio.Event()
        self._running: dict[int, asyncio.Task[Any]] = {}
        self._manager: QueueManager | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._serve(), name="hookline-pgqueuer"),
            asyncio.create_task(self._lease_loop(), name="hookline-lease"),
        ]

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop draining: running jobs finish within the grace period, the rest go back to the
        queue untouched, and every lane with work left is scheduled again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        self._stopping.set()
        if self._manager is not None:
            self._manager.shutdown.set()  # dequeue no more; the drains in flight end after their job
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=max(0.0, deadline - loop.time()))
        for task in list(self._running.values()):
            task.cancel()
        serve, lease = self._tasks
        lease.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(serve), timeout=max(5.0, deadline - loop.time()))
        except TimeoutError:
            serve.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self) -> None:
        """pgqueuer's loop, reconnecting with backoff when the database goes away."""
        failures = 0
        while not self._stopping.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(asyncpg_dsn(self.queue.database_url), timeout=10)
                manager = QueueManager(Queries(AsyncpgDriver(connection)))
                manager.entrypoint(LANE_ENTRYPOINT)(self._lane_job)
                self._manager = manager
                if self._stopping.is_set():  # stop() came while we connected
                    manager.shutdown.set()
                failures = 0
                batch = max(1, self.config.concurrency // 2)
                await manager.run(
                    dequeue_timeout=timedelta(seconds=5),
                    batch_size=batch,
                    max_concurrent_tasks=max(2 * batch, self.config.concurrency),
                    heartbeat_timeout=timedelta(seconds=self.config.lease_seconds),
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff_delay(failures, 0.5, 10.0)
                log.warning("queue consumer lost the database (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            finally:
                self._manager = None
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 5)

    async def _lane_job(self, job: PgqJob) -> None:
        lane = (job.payload or b"").decode()
        try:
            await self._drain(lane)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # our own bookkeeping failed (storage down): let pgqueuer retry the lane
            log.warning("lane %s could not be drained (%s: %s); retrying", lane, type(exc).__name__, exc)
            raise RetryRequested(delay=timedelta(seconds=1), reason=str(exc)) from exc

    async def _drain(self, lane: str) -> None:
        while True:
            if self._stopping.is_set():
                await self.queue.reschedule(lane)  # another instance (or our restart) goes on with it
                return
            async with self._slots:
                job = await self.queue.claim_head(lane, self.config.lease_seconds)
                if job is not None:
                    await self._run(lane, job)
                    continue
            if not await self.queue.settle(lane):
                return

    async def _run(self, lane: str, job: ClaimedJob) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running[job.id] = task
        try:
            await self.runner.run(job)
        except asyncio.CancelledError:  # stopped past the grace period: give it back untouched
            await asyncio.shield(self._give_back(lane, job))
            raise
        finally:
            self._running.pop(job.id, None)

    async def _give_back(self, lane: str, job: ClaimedJob) -> None:
        try:
            await self.queue.release([job.id])
            await self.queue.reschedule(lane)
        except Exception as exc:  # the lease runs out and the lane's next drainer takes it
            log.warning("job %s could not be given back (%s); it runs again after its lease", job.id, exc)

    async def _lease_loop(self) -> None:
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.extend(list(self._running), self.config.lease_seconds)
            except Exception as exc:
                log.warning("could not renew job leases: %s", exc)


# --------------------------------------------------------------------------- schema


async def queue_schema_installed(url: str) -> bool:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return bool(await Queries(AsyncpgDriver(connection)).schema_is_installed())
    finally:
        await connection.close()


async def install_queue_schema(url: str) -> bool:
    """pgqueuer's tables, trigger and types (`hookline migrate` on PostgreSQL); True if installed now."""
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if await queries.schema_is_installed():
            await queries.upgrade()
            return False
        await queries.install()
        return True
    finally:
        await connection.close()


__all__ = ["LaneConsumer", "PgQueue", "install_queue_schema", "queue_schema_installed"]
