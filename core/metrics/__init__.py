"""What hookline counts, for `GET /metrics` (Prometheus text format, prometheus-client).

The call sites use the small functions below — one dictionary lookup and one increment each, so
the webhook path pays next to nothing. Every label is low-cardinality: provider names come from
the enabled plugins, outcomes and scopes from fixed sets, error codes through `error_code_label`
(a bounded set per provider, anything odd becomes "other"). Never a phone number, a message id
or a secret.

A process that serves or works the queue calls `activate` when it starts (core/lifecycle.py):
from then on its counts go to files in a directory every hookline process on the machine shares
(prometheus-client's multiprocess mode, see core/metrics/directory.py), and a scrape of any of
them reports the sum. A process that never activates (a CLI command, a unit test) counts in
memory, which nothing exposes.

Metrics (and docs/architecture.md#metrics):

* ``hookline_webhooks_total{provider, outcome}`` — webhook requests by outcome (`OUTCOMES`);
* ``hookline_webhook_messages_total{provider, result}`` — messages in accepted webhooks:
  ``stored`` or ``duplicate``;
* ``hookline_messages_sent_total{provider}`` — outbound messages the provider accepted;
* ``hookline_messages_failed_total{provider, error_code}`` — outbound messages that ended
  ``failed``: a permanent provider error, ``retries_exhausted``, ``dropped_not_owner``…;
* ``hookline_send_transient_errors_total{provider, error_code}`` — provider calls that failed
  with an error worth retrying (the job is retried, or given up after `[queue] max_attempts`);
* ``hookline_send_duration_seconds{provider}`` — how long each provider send call took;
* ``hookline_rate_limit_waits_total{scope}`` and ``hookline_rate_limit_wait_seconds{scope}`` —
  sends held back by a rate limit, per ``number`` or ``recipient`` (`rate_limit_waited`);
* ``hookline_processes{role}`` — live hookline processes counting into this directory
  (``server``, ``worker``).

The queue's gauges are not here: they are read from the database at scrape time
(core/metrics/endpoint.py), so they are right across processes and instances.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # prometheus-client is imported when first needed: CLI commands that count nothing skip it
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from core.metrics.directory import SharedDirectory

log = logging.getLogger("hookline.metrics")

# Webhook outcomes, and the refusal statuses behind them (core/webhooks.py):
#   accepted    — proven and stored (a new message, any status update, or nothing to store);
#   duplicate   — proven, but every message in it was already stored (a provider's redelivery);
#   rejected    — 404 (no configured number matches) or 403 (the provider's proof failed);
#   invalid     — 400 (unreadable, malformed or unstorable) or 413 (body over the limit);
#   unavailable — 503 (storage down; the provider retries).
OUTCOMES = ("accepted", "duplicate", "rejected", "invalid", "unavailable")
OUTCOME_OF_STATUS: dict[int, str] = {404: "rejected", 403: "rejected", 400: "invalid", 413: "invalid", 503: "unavailable"}

RateLimitScope = Literal["number", "recipient"]
RATE_LIMIT_SCOPES: tuple[str, ...] = ("number", "recipient")

# Provider calls: from a local fake's milliseconds to a slow provider's 30 s timeout.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Rate-limit waits: a GCRA slot is usually a few milliseconds away, a recipient's pair limit seconds.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Provider error codes: Twilio's and Meta's are numbers (21211, 131026), the plugins' own are
# short snake_case words (`http_503`, `session_down`, `retries_exhausted`). Longer digit runs
# could be a phone number and free text could be anything: both become "other".
_ERROR_CODE = re.compile(r"^(?:\d{1,7}|[a-z][a-z0-9_]{0,39})$")
MAX_ERROR_CODES = 64  # distinct codes per provider a process labels; then "other"


class _Metrics:
    """One set of metric objects. Made anew by `activate` (counts start from the shared files)."""

    def __init__(self, *, shared: bool) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # Shared: the objects write to the directory's files and belong to no registry (a scrape
        # reads the files). In memory: a registry of their own, never prometheus-client's global one.
        registry = None if shared else CollectorRegistry(auto_describe=True)
        self.registry: CollectorRegistry | None = registry
        self.webhooks = Counter("hookline_webhooks_total", "Webhook requests by provider and outcome.",
                                ["provider", "outcome"], registry=registry)
        self.webhook_messages = Counter("hookline_webhook_messages_total",
                                        "Messages carried by accepted webhooks: stored, or duplicate (already stored).",
                                        ["provider", "result"], registry=registry)
        self.sent = Counter("hookline_messages_sent_total", "Outbound messages the provider accepted.",
                            ["provider"], registry=registry)
        self.failed = Counter("hookline_messages_failed_total", "Outbound messages that ended failed, by error code.",
                              ["provider", "error_code"], registry=registry)
        self.transient = Counter("hookline_send_transient_errors_total",
                                 "Provider send calls that failed with a retryable error, by error code.",
                                 ["provider", "error_code"], registry=registry)
        self.send_seconds = Histogram("hookline_send_duration_seconds", "Duration of provider send calls.",
                                      ["provider"], buckets=SEND_BUCKETS, registry=registry)
        self.waits = Counter("hookline_rate_limit_waits_total", "Sends that waited for a rate limit, by scope.",
                             ["scope"], registry=registry)
        self.wait_seconds = Histogram("hookline_rate_limit_wait_seconds", "Seconds sends waited for a rate limit.",
                                      ["scope"], buckets=WAIT_BUCKETS, registry=registry)
        # livesum: the files of a process that died are removed (SharedDirectory.remove_dead), so
        # the sum is the processes alive now.
        self.processes = Gauge("hookline_processes", "hookline processes alive and counting, by role.",
                               ["role"], multiprocess_mode="livesum", registry=registry)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._codes: dict[str, set[str]] = {}

    def start(self, role: str, providers: Iterable[str]) -> None:
        """This process is alive in `role`; every series known in advance exists, at 0."""
        self.child(self.processes, role).set(1)
        for provider in providers:
            for outcome in OUTCOMES:
                self.child(self.webhooks, provider, outcome)
            for result in ("stored", "duplicate"):
                self.child(self.webhook_messages, provider, result)
            self.child(self.sent, provider)
            self.child(self.send_seconds, provider)
        for scope in RATE_LIMIT_SCOPES:
            self.child(self.waits, scope)
            self.child(self.wait_seconds, scope)

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus-client's own lookup takes a lock."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def error_code(self, provider: str, code: object) -> str:
        if code is None or code == "":
            return "none"
        text = str(code).strip()
        if not _ERROR_CODE.match(text):
            return "other"
        seen = self._codes.setdefault(provider, set())
        if text not in seen:
            if len(seen) >= MAX_ERROR_CODES:
                return "other"
            seen.add(text)
        return text


class _State:
    """What this process counts into: the in-memory default, or a shared directory."""

    def __init__(self) -> None:
        self._metrics: _Metrics | None = None
        self.directory: SharedDirectory | None = None
        self.users = 0

    @property
    def metrics(self) -> _Metrics:
        if self._metrics is None:
            self._metrics = _Metrics(shared=False)
        return self._metrics


_state = _State()


def activate(directory: Path, role: str, providers: Iterable[str] = ()) -> None:
    """Count into `directory`, shared with every hookline process on this machine.

    Called at process start, before anything is counted. The series of the enabled `providers`
    (all but error codes) are made at 0 now, so that they exist from the first scrape (a rate
    needs a first sample) and their files are written here rather than on a first webhook. A
    second activation of the same directory in one process (two apps in one test) shares it;
    another directory replaces it.
    """
    directory = directory.resolve()
    if _state.directory is not None and _state.directory.path == directory:
        _state.users += 1
        _state.metrics.start(role, providers)
        return
    from prometheus_client import values

    from core.metrics.directory import SharedDirectory

    if _state.directory is not None:
        _close()
    shared = SharedDirectory(directory)
    shared.open()
    # prometheus-client picks files by this variable and the value class by `values.ValueClass`,
    # both read when a labelled child is made: set them before any metric of this set exists.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()
    _state._metrics = _Metrics(shared=True)
    _state.directory = shared
    _state.users = 1
    _state.metrics.start(role, providers)
    log.debug("metrics: counting into %s", directory)


def deactivate() -> None:
    """The process stops counting into the shared directory (its last user is done)."""
    if _state.directory is None:
        return
    _state.users -= 1
    if _state.users <= 0:
        _close()


def _close() -> None:
    from prometheus_client import values

    directory = _state.directory
    assert directory is not None
    values.ValueClass.close_all_files()  # type: ignore[attr-defined]  # the MultiProcessValue made by activate
    values.ValueClass = values.MutexValue
    directory.close()
    _state._metrics = None  # back to memory, from zero
    _state.directory = None
    _state.users = 0


def shared_directory() -> SharedDirectory | None:
    """The directory this process counts into, or None (counting in memory)."""
    return _state.directory


def collectors() -> Iterable[Collector]:
    """What a scrape of this process reports: every process's files, or this process's memory."""
    if _state.directory is not None:
        return [_state.directory.collector()]
    assert _state.metrics.registry is not None
    return [_state.metrics.registry]


# --------------------------------------------------------------------------- what call sites count


def webhook(provider: str, outcome: str) -> None:
    """One webhook request answered, with one of `OUTCOMES`."""
    metrics = _state.metrics
    metrics.child(metrics.webhooks, provider, outcome).inc()


def webhook_refused(provider: str, status: int) -> None:
    """A webhook refused with `status` (404, 403, 400, 413 or 503; see `OUTCOME_OF_STATUS`)."""
    webhook(provider, OUTCOME_OF_STATUS[status])


def webhook_stored(provider: str, stored: int, duplicates: int, statuses: int) -> None:
    """A webhook stored: `duplicate` if it carried messages, all already stored, and no status
    update (a status is news even when it moves nothing); otherwise `accepted`."""
    metrics = _state.metrics
    outcome = "duplicate" if duplicates and not stored and not statuses else "accepted"
    metrics.child(metrics.webhooks, provider, outcome).inc()
    if stored:
        metrics.child(metrics.webhook_messages, provider, "stored").inc(stored)
    if duplicates:
        metrics.child(metrics.webhook_messages, provider, "duplicate").inc(duplicates)


def message_sent(provider: str) -> None:
    metrics = _state.metrics
    metrics.child(metrics.sent, provider).inc()


def message_failed(provider: str, error_code: str | None) -> None:
    """A message that ended `failed` (counted once, when its status moved)."""
    metrics = _state.metrics
    metrics.child(metrics.failed, provider, metrics.error_code(provider, error_code)).inc()


def send_transient_error(provider: str, error_code: str | None) -> None:
    metrics = _state.metrics
    metrics.child(metrics.transient, provider, metrics.error_code(provider, error_code)).inc()


def send_duration(provider: str, seconds: float) -> None:
    metrics = _state.metrics
    metrics.child(metrics.send_seconds, provider).observe(seconds)


def rate_limit_waited(scope: RateLimitScope, seconds: float) -> None:
    """A send waited `seconds` for a rate-limit slot, for its `scope`: "number" (the sending
    number's limit) or "recipient" (the pair limit). Call it once per wait, after waiting, only
    when the wait was longer than zero. Raises ValueError for another scope (a labelling bug:
    every value would become a series)."""
    if scope not in RATE_LIMIT_SCOPES:
        raise ValueError(f"rate-limit scope must be one of {RATE_LIMIT_SCOPES}, not {scope!r}")
    metrics = _state.metrics
    metrics.child(metrics.waits, scope).inc()
    metrics.child(metrics.wait_seconds, scope).observe(max(0.0, seconds))


def error_code_label(provider: str, code: object) -> str:
    """The label an error code gets: itself when it looks like a code and the provider has not
    used up `MAX_ERROR_CODES` yet, "none" when missing, otherwise "other"."""
    return _state.metrics.error_code(provider, code)


__all__ = [
    "OUTCOMES", "RATE_LIMIT_SCOPES", "activate", "collectors", "deactivate", "error_code_label", "message_failed",
    "message_sent", "rate_limit_waited", "send_duration", "send_transient_error", "shared_directory", "webhook",
    "webhook_refused", "webhook_stored",
]
