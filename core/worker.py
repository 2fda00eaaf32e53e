"""Runs queued jobs: claims, leases, retries with backoff and jitter, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core.config import QueueConfig
from core.queue import ClaimedJob, EmbeddedQueue, WorkQueue

log = logging.getLogger("hookline.worker")

JobHandler = Callable[[dict[str, Any]], Awaitable[None]]
DeadHandler = Callable[[dict[str, Any], str], Awaitable[None]]


class RetryLater(Exception):
    """Raised by a handler for a transient failure; `delay` overrides the backoff when known."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Postpone(Exception):
    """Raised by a handler that may not run yet (its rate-limit slot is too far off): the job goes
    back to the queue for `delay` seconds without using one of its attempts, and keeps its place
    before the later jobs of its ordering key."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


def backoff_delay(attempt: int, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random)."""
    delay = min(ceiling, base * 2 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class JobRunner:
    """Runs one claimed job: its handler, then done, retried with backoff, or buried after its
    last attempt (its dead handler first). Shared by every queue's consumer."""

    def __init__(
        self,
        queue: WorkQueue,
        handlers: Mapping[str, JobHandler],
        config: QueueConfig,
        on_dead: Mapping[str, DeadHandler] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.on_dead = dict(on_dead or {})
        self.config = config

    async def run(self, job: ClaimedJob) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await handler(job.payload)
        except asyncio.CancelledError:
            raise
        except Postpone as exc:
            await self._postpone(job, exc)
            return
        except Exception as exc:
            await self._failed(job, exc)
            return
        try:
            await self.queue.complete(job.id)
        except Exception as exc:  # it ran; if this is lost the job runs again (at-least-once)
            log.warning("job %s ran but could not be marked done: %s", job.id, exc)

    async def _postpone(self, job: ClaimedJob, exc: Postpone) -> None:
        """Not a failure: even a job on its last attempt is only put back."""
        log.debug("job %s (%s) postponed %.2fs: %s", job.id, job.kind, exc.delay, exc.reason)
        try:
            await self.queue.retry(job.id, max(0.0, exc.delay), exc.reason, count_attempt=False)
        except Exception as retry_exc:  # the lease will run out and the job comes back
            log.warning("job %s could not be postponed: %s", job.id, retry_exc)

    async def _failed(self, job: ClaimedJob, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if job.attempts >= self.config.max_attempts:
            log.error("job %s (%s) gave up after %d attempts: %s", job.id, job.kind, job.attempts, reason)
            dead = self.on_dead.get(job.kind)
            try:
                if dead is not None:
                    await dead(job.payload, reason)
                await self.queue.bury(job.id, reason)
            except Exception:
                log.exception("job %s could not be buried", job.id)
            return
        delay = exc.delay if isinstance(exc, RetryLater) and exc.delay is not None else None
        if delay is None:
            delay = backoff_delay(job.attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds)
        level = logging.INFO if isinstance(exc, RetryLater) else logging.WARNING
        log.log(level, "job %s (%s) attempt %d failed, retrying in %.1fs: %s", job.id, job.kind, job.attempts, delay, reason,
                exc_info=not isinstance(exc, RetryLater))
        try:
            await self.queue.retry(job.id, delay, reason)
        except Exception as retry_exc:  # the lease will run out and the job comes back
            log.warning("job %s could not be rescheduled: %s", job.id, retry_exc)


class Worker:
    """The embedded queue's consumer: claims due jobs in a loop and keeps their leases fresh."""

    def __init__(self, queue: EmbeddedQueue, runner: JobRunner) -> None:
        self.queue = queue
        self.runner = runner
        self.config = runner.config
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="hookline-claim"),
            asyncio.create_task(self._lease_loop(), name="hookline-lease"),
        ]

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; let running jobs finish within the grace period, return the rest."""
        deadline = asyncio.get_running_loop().time() + grace_seconds
        self._stopping.set()
        self.queue.wake()
        # Let a claim in flight finish rather than cancel it: its UPDATE may already have leased
        # jobs, which would then sit unrun until their lease ran out. The loop returns them.
        claim_loops = [loop for loop in self._loops if loop.get_name() == "hookline-claim"]
        if claim_loops:
            await asyncio.wait(claim_loops, timeout=grace_seconds)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._running:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            done, pending = await asyncio.wait(list(self._running.values()), timeout=remaining)
            unfinished = [job_id for job_id, task in self._running.items() if task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unfinished:
                await self.queue.release(unfinished)
                log.info("returned %d unfinished job(s) to the queue", len(unfinished))

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self.config.concurrency - len(self._running)
            jobs: list[ClaimedJob] = []
            if free > 0:
                try:
                    jobs = await self.queue.claim(free, self.config.lease_seconds)
                except Exception as exc:  # storage down: keep trying, never die
                    log.warning("could not claim jobs: %s", exc)
            if jobs and self._stopping.is_set():  # claimed as we stopped: give them back untouched
                await self.queue.release([job.id for job in jobs])
                return
            for job in jobs:
                task = asyncio.create_task(self.runner.run(job), name=f"hookline-job-{job.id}")
                self._running[job.id] = task
                task.add_done_callback(lambda _, job_id=job.id: self._finished(job_id))
            if len(jobs) < free or free <= 0:
                await self.queue.wait(self.config.poll_interval_seconds)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self.queue.wake()  # a key's next job may now be runnable

    async def _lease_loop(self) -> None:
        interval = self.config.lease_seconds / 3
        while not self._stopping.is_set():
            await asyncio.sleep(interval)
            try:
                await self.queue.extend(list(self._running), self.config.lease_seconds)
            except Exception as exc:
                log.warning("could not renew job leases: %s", exc)
