"""`GET /metrics`: who may scrape, and what a scrape reports.

Access (`[metrics]`): a request passes with `Authorization: Bearer <token>` matching `token`
(compared in constant time), or from a client address inside one of the `allow` networks. A
wrong token is refused even from an allowed address — a scraper sending one is misconfigured.
Otherwise: 401 when a token is configured (it is what the client lacks), 403 when none is (no
credential would help). The address is the one uvicorn reports: the TCP peer, or what a trusted
proxy put in X-Forwarded-For (uvicorn's `forwarded_allow_ips`).

A scrape reports every process's counters from the shared directory, and the queue's gauges,
read from `hookline_job` at that moment: both queues keep their jobs there, so the numbers are
right across processes and instances, and never multiplied by the number of processes (they are
not in the processes' files).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tortoise.connection import get_connection

from core import metrics
from core.api.errors import error_response
from core.config import MetricsConfig
from core.queue import now_ms
from core.storage.sql import query

log = logging.getLogger("hookline.metrics")

METRICS_PATH = "/metrics"
QUEUE_STATES = ("ready", "scheduled", "running", "dead")
QUERY_TIMEOUT_SECONDS = 5.0

# `ready` jobs whose time has not come (a backoff, a timer) are reported as `scheduled`.
_QUEUE_SQL = (
    "SELECT state, COUNT(*) AS jobs, MIN(run_at_ms) AS oldest_ms FROM ("
    "  SELECT CASE WHEN state = 'ready' AND run_at_ms > ? THEN 'scheduled' ELSE state END AS state, run_at_ms"
    "  FROM hookline_job"
    ") AS jobs GROUP BY state"
)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Families(Collector):
    """Metric families computed for one scrape, handed to the registry as a collector."""

    def __init__(self, families: Sequence[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.families


async def queue_families() -> list[GaugeMetricFamily]:
    """`hookline_queue_jobs{state}`, `hookline_queue_oldest_ready_age_seconds` and
    `hookline_storage_up`, from the job table as it is now (the queue gauges are left out when
    the database does not answer)."""
    current = now_ms()
    up = GaugeMetricFamily("hookline_storage_up", "1 if the database answered the scrape's queue query, else 0.")
    try:
        rows = await asyncio.wait_for(
            query(get_connection("default"), _QUEUE_SQL, [current]), QUERY_TIMEOUT_SECONDS
        )
    except Exception as exc:  # a scrape must still answer while storage is down
        log.warning("metrics: queue gauges unavailable: %s: %s", type(exc).__name__, exc)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    counts = {state: 0 for state in QUEUE_STATES}
    oldest_ready_ms: int | None = None
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + int(row["jobs"])
        if row["state"] == "ready" and row["oldest_ms"] is not None:
            oldest_ready_ms = int(row["oldest_ms"])
    jobs = GaugeMetricFamily("hookline_queue_jobs", "Jobs in hookline_job by state: ready (due), scheduled "
                             "(waiting for a delay or backoff), running, dead (given up).", labels=["state"])
    for state, count in counts.items():
        jobs.add_metric([state], count)
    age = GaugeMetricFamily("hookline_queue_oldest_ready_age_seconds",
                            "Seconds the longest-waiting due job has been due (0 when none is).")
    age.add_metric([], max(0.0, (current - oldest_ready_ms) / 1000) if oldest_ready_ms is not None else 0.0)
    return [jobs, age, up]


class MetricsEndpoint:
    """The route's handler, with `[metrics]`'s rules parsed once."""

    def __init__(self, config: MetricsConfig) -> None:
        self.token = config.token.get_secret_value().encode() if config.token is not None else None
        self.networks: list[IpNetwork] = [ipaddress.ip_network(item) for item in config.allow]

    def refusal(self, request: Request) -> Response | None:
        """None when the request may scrape, otherwise the answer (401 or 403)."""
        authorization = request.headers.get("authorization", "")
        client = request.client.host if request.client else ""
        if self.token is not None and authorization[:7].lower() == "bearer ":
            if hmac.compare_digest(authorization[7:].strip().encode(), self.token):
                return None
            log.warning("metrics: refused 401 for %s: wrong token", client or "an unknown client")
            return self._unauthenticated("wrong metrics token")
        if self._allowed(client):
            return None
        if self.token is not None:
            log.warning("metrics: refused 401 for %s: no token, address not allowed", client or "an unknown client")
            return self._unauthenticated("send the metrics token as Authorization: Bearer TOKEN")
        log.warning("metrics: refused 403 for %s: address not allowed", client or "an unknown client")
        return error_response(403, "forbidden", "this address may not read /metrics ([metrics] allow)")

    def _allowed(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:  # no address (a Unix socket) or not an IP: never allowed by address
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket
        return any(address in network for network in self.networks)

    @staticmethod
    def _unauthenticated(message: str) -> Response:
        return error_response(401, "unauthenticated", message, headers={"WWW-Authenticate": 'Bearer realm="hookline-metrics"'})

    async def handle(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        registry = CollectorRegistry(auto_describe=False)
        collectors: list[Collector] = [*metrics.collectors(), _Families(await queue_families())]
        for collector in collectors:
            registry.register(collector)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)


def metrics_routes(config: MetricsConfig) -> list[Route]:
    """`GET /metrics`, or nothing when `[metrics] enabled = false` (the path is then a 404)."""
    if not config.enabled:
        return []
    return [Route(METRICS_PATH, MetricsEndpoint(config).handle, methods=["GET"], name="metrics")]
