"""The durable work queue: its interface, and the embedded implementation on the job table.

Scale mode's implementation (PostgreSQL, pgqueuer) is core/pgqueue.py; both keep jobs as rows of
`hookline_job` and share their bookkeeping (`JobRows`), and tests/test_queue.py runs the same
conformance tests against each.

Guarantees (the port's contract, shared by every implementation):

* a job is enqueued inside the caller's transaction, so it exists exactly when the row it is about
  does;
* jobs with the same ``ordering_key`` run one at a time, in enqueue order, even across retries;
  jobs with different keys run concurrently;
* a claimed job holds a lease that its worker renews; a crashed worker's jobs are claimed again once
  their lease runs out (at-least-once);
* a job enqueued with a ``dedupe_key`` that a job still to run already has is not enqueued again
  (sends use ``send:<message id>``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.transactions import in_transaction
from tortoise.expressions import F

from core.storage.models import Job
from core.storage.sql import from_json, query, to_json

if TYPE_CHECKING:
    from core.worker import JobRunner


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int  # including this one


class Consumer(Protocol):
    """What runs a queue's jobs in a process (`serve`, `hookline worker`)."""

    def start(self) -> None: ...

    async def stop(self, grace_seconds: float = 10.0) -> None: ...


class WorkQueue(Protocol):
    """What the pipeline, the host and the job runner need from a queue."""

    async def enqueue(
        self,
        connection: BaseDBAsyncClient,
        kind: str,
        payload: dict[str, Any],
        *,
        ordering_key: str | None = None,
        dedupe_key: str | None = None,
        delay_seconds: float = 0,
    ) -> None: ...

    def wake(self) -> None: ...

    def enqueue_from(self, source: str, run_at_ms: str, now: str) -> str:
        """PostgreSQL: CTE items (each `, name AS (…)`) that enqueue one job per row of the CTE
        `source` (columns kind, payload, ordering_key, dedupe_key), due at `run_at_ms` and created
        `now` (SQL expressions), so that one statement stores a row and its job together."""
        ...

    def consumer(self, runner: JobRunner) -> Consumer: ...

    async def extend(self, job_ids: list[int], lease_seconds: float) -> None: ...

    async def complete(self, job_id: int) -> None: ...

    async def retry(self, job_id: int, delay_seconds: float, error: str, *, count_attempt: bool = True) -> None:
        """Make the job ready again after `delay_seconds`. `count_attempt=False` (a postponed job,
        core.worker.Postpone) gives back the attempt its claim counted, so it costs none."""
        ...

    async def bury(self, job_id: int, error: str) -> None: ...

    async def release(self, job_ids: list[int]) -> None: ...


_ENQUEUE = (  # on every webhook: written once, not built by the ORM each time
    "INSERT INTO hookline_job (kind, payload, ordering_key, dedupe_key, state, attempts, run_at_ms, created_at, blocked)"
    " VALUES (?, ?, ?, ?, 'ready', 0, ?, ?, false)"
    " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('ready', 'running') DO NOTHING"
)


# SQLite: a job behind a live job of its key is stored `blocked`, and unblocked when the one before
# it is done or dead, so a claim reads only the lanes' heads (a partial index, migration 0009)
# instead of asking, for every waiting job, whether one is ahead of it: that question made a
# backlog of n jobs cost O(n) per claim. Race-free because SQLite runs one write transaction at a
# time, and a write transaction's reads see every commit before its own (WAL refuses the upgrade
# of a stale snapshot); on PostgreSQL the embedded queue keeps asking (and scale mode has lanes).
_ENQUEUE_SQLITE = (
    "INSERT INTO hookline_job (kind, payload, ordering_key, dedupe_key, state, attempts, run_at_ms, created_at, blocked)"
    " SELECT ?, ?, ?, ?, 'ready', 0, ?, ?, EXISTS (SELECT 1 FROM hookline_job WHERE ordering_key = ?"
    " AND state IN ('ready', 'running'))"
    " WHERE true ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('ready', 'running') DO NOTHING"
)
_UNBLOCK_NEXT = (
    "UPDATE hookline_job SET blocked = 0 WHERE id = (SELECT min(id) FROM hookline_job"
    " WHERE ordering_key = ? AND state IN ('ready', 'running'))"
)
_CLAIMABLE_SQLITE = (
    "SELECT id FROM hookline_job WHERE blocked = 0 AND state IN ('ready', 'running')"
    " AND ((state = 'ready' AND run_at_ms <= ?) OR (state = 'running' AND locked_until_ms < ?))"
    " ORDER BY id LIMIT ?"
)
_CLAIMABLE = (
    "SELECT j.id FROM hookline_job j"
    " WHERE ((j.state = 'ready' AND j.run_at_ms <= ?) OR (j.state = 'running' AND j.locked_until_ms < ?))"
    " AND (j.ordering_key IS NULL OR NOT EXISTS ("
    "   SELECT 1 FROM hookline_job e WHERE e.ordering_key = j.ordering_key AND e.id < j.id"
    "   AND e.state IN ('ready', 'running')))"
    " ORDER BY j.id LIMIT ?"
)


def _sqlite(connection: BaseDBAsyncClient) -> bool:
    return connection.capabilities.dialect == "sqlite"


def insert_jobs_from(source: str, run_at_ms: str, now: str, returning: str = "") -> str:
    """The job rows of `WorkQueue.enqueue_from`, as the CTE `enqueued`."""
    return (
        ", enqueued AS (INSERT INTO hookline_job (kind, payload, ordering_key, dedupe_key, state, attempts, run_at_ms,"
        f" created_at, blocked) SELECT kind, payload, ordering_key, dedupe_key, 'ready', 0, {run_at_ms}, {now}, false FROM {source}"
        " ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('ready', 'running') DO NOTHING"
        f"{' RETURNING ' + returning if returning else ''})"
    )


class JobRows:
    """The job table's bookkeeping, the same on both queues: enqueue, leases, done, retry, dead,
    give back. A queue with more to write per job (lanes) brings its own statement."""

    _enqueue_sql = _ENQUEUE

    def _enqueue_sql_for(self, connection: BaseDBAsyncClient) -> str:
        return self._enqueue_sql

    async def enqueue(
        self,
        connection: BaseDBAsyncClient,
        kind: str,
        payload: dict[str, Any],
        *,
        ordering_key: str | None = None,
        dedupe_key: str | None = None,
        delay_seconds: float = 0,
    ) -> None:
        """A delayed job with an ordering key holds its key until it runs: give timers none."""
        await query(connection, self._enqueue_sql_for(connection), [
            kind, to_json(payload), ordering_key, dedupe_key, now_ms() + int(delay_seconds * 1000), datetime.now(UTC),
            *self._enqueue_extra(delay_seconds, ordering_key),
        ])

    def _enqueue_extra(self, delay_seconds: float, ordering_key: str | None) -> list[Any]:
        return []

    async def extend(self, job_ids: list[int], lease_seconds: float) -> None:
        if job_ids:
            await Job.filter(id__in=job_ids, state="running").update(locked_until_ms=now_ms() + int(lease_seconds * 1000))

    async def complete(self, job_id: int) -> None:
        await Job.filter(id=job_id).delete()

    async def retry(self, job_id: int, delay_seconds: float, error: str, *, count_attempt: bool = True) -> None:
        """Attempts are counted when claimed, so not counting this one means giving it back."""
        values: dict[str, Any] = {
            "state": "ready", "run_at_ms": now_ms() + int(delay_seconds * 1000), "locked_until_ms": None, "last_error": error[:4000],
        }
        if not count_attempt:
            values["attempts"] = F("attempts") - 1
        await Job.filter(id=job_id).update(**values)

    async def bury(self, job_id: int, error: str) -> None:
        await Job.filter(id=job_id).update(state="dead", locked_until_ms=None, last_error=error[:4000])

    async def release(self, job_ids: list[int]) -> None:
        """Give jobs back untouched (graceful shutdown): they do not count as an attempt."""
        for job_id in job_ids:
            await query(
                get_connection("default"),
                "UPDATE hookline_job SET state = 'ready', locked_until_ms = NULL, attempts = attempts - 1 WHERE id = ? AND state = 'running'",
                [job_id],
            )


class EmbeddedQueue(JobRows):
    """Jobs as rows in hookline's own database (SQLite by default; PostgreSQL works too)."""

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        self._claim_lock = asyncio.Lock()


    def wake(self) -> None:
        """Tell local workers there is work (call after the enqueuing transaction committed)."""
        self._wakeup.set()

    def enqueue_from(self, source: str, run_at_ms: str, now: str) -> str:
        return insert_jobs_from(source, run_at_ms, now)

    def _enqueue_sql_for(self, connection: BaseDBAsyncClient) -> str:
        return _ENQUEUE_SQLITE if _sqlite(connection) else _ENQUEUE

    def _enqueue_extra(self, delay_seconds: float, ordering_key: str | None) -> list[Any]:
        return [ordering_key] if _sqlite(get_connection("default")) else []

    async def complete(self, job_id: int) -> None:
        await self._leaving(job_id, "DELETE FROM hookline_job WHERE id = ? RETURNING ordering_key", [job_id])

    async def bury(self, job_id: int, error: str) -> None:
        await self._leaving(job_id, "UPDATE hookline_job SET state = 'dead', locked_until_ms = NULL, last_error = ?"
                                    " WHERE id = ? RETURNING ordering_key", [error[:4000], job_id])

    async def _leaving(self, job_id: int, sql: str, values: list[Any]) -> None:
        """A job is no longer live: on SQLite the next of its key becomes its lane's head."""
        connection = get_connection("default")
        if not _sqlite(connection):
            await query(connection, sql, values)
            return
        async with in_transaction() as transaction:
            rows = await query(transaction, sql, values)
            if rows and rows[0]["ordering_key"] is not None:
                await query(transaction, _UNBLOCK_NEXT, [rows[0]["ordering_key"]])

    def consumer(self, runner: JobRunner) -> Consumer:
        from core.worker import Worker  # the worker module builds on this one

        return Worker(self, runner)

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def claim(self, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        """Take up to `limit` runnable jobs: due, unleased, and first in line for their key."""
        connection = get_connection("default")
        current = now_ms()
        async with self._claim_lock:
            rows = await query(connection, _CLAIMABLE_SQLITE if _sqlite(connection) else _CLAIMABLE, [current, current, limit])
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            marks = ", ".join("?" for _ in ids)
            claimed = await query(
                connection,
                f"UPDATE hookline_job SET state = 'running', attempts = attempts + 1, locked_until_ms = ?"
                f" WHERE id IN ({marks}) AND ((state = 'ready' AND run_at_ms <= ?)"
                f" OR (state = 'running' AND locked_until_ms < ?))"
                f" RETURNING id, kind, payload, attempts",
                [current + int(lease_seconds * 1000), *ids, current, current],
            )
        jobs = [ClaimedJob(row["id"], row["kind"], from_json(row["payload"]), row["attempts"]) for row in claimed]
        return sorted(jobs, key=lambda job: job.id)
