"""Starting and stopping what a server or worker process runs: metrics, storage, numbers,
plugins, the queue workers, the numbers refresher and (a server on PostgreSQL) the live-events
listener — in that order, and back in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from tortoise.connection import get_connection

from core import metrics
from core.metrics.directory import default_directory
from core.event_listener import EventListener, connect_like
from core.jobs import dead_handlers, job_handlers
from core.numbers import sync_config_numbers
from core.runtime import Runtime
from core.queue import Consumer
from core.storage.database import close_storage, is_sqlite, open_storage, prepare_schema
from core.worker import JobRunner

log = logging.getLogger("hookline")


@contextlib.asynccontextmanager
async def running(runtime: Runtime, *, run_workers: bool, role: str, live_events: bool = False) -> AsyncIterator[None]:
    """Everything a process needs while the block runs. `run_workers=False` leaves the queue to
    other processes (`serve --no-queue` beside `hookline worker`); `live_events` is for a process
    that serves event streams, which on PostgreSQL then keeps a LISTEN connection of its own."""
    settings = runtime.settings
    counting = settings.metrics.enabled
    if counting:  # before anything counts: the process joins the machine's shared metrics directory
        metrics.activate(metrics_directory(runtime), role, runtime.dispatch.providers)
    try:
        async with _running(runtime, run_workers=run_workers, role=role, live_events=live_events):
            yield
    finally:
        if counting:
            metrics.deactivate()


def metrics_directory(runtime: Runtime) -> Path:
    """`[metrics] directory`, by default one in shared memory (core.metrics.directory)."""
    configured = runtime.settings.metrics.directory
    return Path(configured) if configured else default_directory(Path(runtime.settings.server.data_dir))


@contextlib.asynccontextmanager
async def _running(runtime: Runtime, *, run_workers: bool, role: str, live_events: bool) -> AsyncIterator[None]:
    host, settings = runtime.host, runtime.settings
    await open_storage(settings.database.url)
    worker: Consumer | None = None
    refresher: asyncio.Task[None] | None = None
    listener: EventListener | None = None
    try:
        await prepare_schema(settings.database.url)
        await sync_config_numbers(settings.numbers)
        await host.api_numbers.refresh()
        await runtime.dispatch.notify("on_startup", host=host)
        if run_workers:
            worker = host.queue.consumer(JobRunner(host.queue, job_handlers(host), settings.queue, dead_handlers(host)))
            worker.start()
        refresher = asyncio.get_running_loop().create_task(host.api_numbers.keep_fresh(), name="hookline-numbers")
        if live_events and not is_sqlite(settings.database.url):
            listener = EventListener(host.events, connect_like(get_connection("default")))
            await listener.start()
        log.info(
            "hookline %s ready: %d number(s), plugins: %s, storage: %s, queue: %s, queue workers: %s",
            role, len(host.numbers), ", ".join(settings.enabled_plugins) or "none",
            settings.database.url.split("://", 1)[0], settings.queue_backend,
            settings.queue.concurrency if run_workers else "off",
        )
        yield
    finally:
        if listener is not None:
            await listener.stop()
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        if worker is not None:
            await worker.stop()
        await runtime.dispatch.notify("on_shutdown", host=host)
        await close_storage()
        log.info("hookline %s stopped", role)
