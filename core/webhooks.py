"""The inbound pipeline, the same for every provider (DESIGN.md section 3).

raw body read once (413 past the limit) → the provider names candidate numbers (404 if none) →
the provider proves the request (403 if not) → parse (400 if malformed) → one transaction: store
idempotently and enqueue the work (503 if storage is down, so the provider retries) → the
provider's acknowledgement. Every outcome is one log line and one counter increment
(`hookline_webhooks_total`, core/metrics); no workflow code runs here.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from tortoise.exceptions import ValidationError

from core import metrics
from core.dispatch import Provider
from core.host import Host
from core.intake import record_webhook
from core.storage.database import is_unstorable_value
from core.types import (
    ContactInfo, InboundMessage, MalformedWebhook, Media, ParsedWebhook, StatusUpdate, WebhookRequest, WebhookRoute,
)

log = logging.getLogger("hookline.webhook")

WEBHOOK_PREFIX = "/webhooks/whatsapp"


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:  # "²".isdigit() is true
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def public_url_of(request: Request, public_base: str) -> str:
    """The URL the provider called: the configured public base + the path and query as sent."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{public_base}{path}?{query}" if query else f"{public_base}{path}"


class WebhookEndpoint:
    """One provider route, wired to the pipeline."""

    def __init__(self, host: Host, provider: Provider, route: WebhookRoute) -> None:
        self.host = host
        self.provider = provider
        self.route = route

    async def handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        name = self.provider.name
        limit = max(self.host.settings.server.max_body_bytes, self.route.max_body_bytes or 0)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return _refuse(413, name, f"body over {limit} bytes")
        webhook = WebhookRequest(
            method=request.method,
            route=self.route.name,
            path=request.url.path,
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            public_url=public_url_of(request, self.host.public_url),
            headers=request.headers,
            body=body,
            path_params=dict(request.path_params),
        )
        try:
            candidates = self.provider.match_numbers(webhook, self.host.numbers_of(name))
        except Exception as exc:
            return _refuse(400, name, f"cannot read the request: {type(exc).__name__}")
        if not candidates:  # perhaps a number another process has just created: look again
            try:
                await self.host.api_numbers.refresh_since(arrived)
            except Exception as exc:
                return _storage_unavailable(name, exc)
            candidates = self.provider.match_numbers(webhook, self.host.numbers_of(name))
        if not candidates:
            return _refuse(404, name, "no configured number matches the request")
        try:
            proven = self.provider.verify(webhook, candidates)
        except Exception:
            log.exception("%s: provider_verify raised; treated as not proven", name)
            proven = False
        if not proven:
            # The route pattern, not the path: a path may carry a secret (WPPConnect).
            signed = f"{self.host.webhook_url(name, self.route.path)}"
            return _refuse(403, name, f"proof failed for number(s) {', '.join(n.id for n in candidates)}; checked against {signed}")
        try:
            parsed = self.provider.parse(webhook, candidates)
        except MalformedWebhook as exc:
            return _refuse(400, name, f"malformed: {exc}")
        except Exception as exc:
            log.exception("%s: provider_parse raised", name)
            return _refuse(400, name, f"malformed: {type(exc).__name__}")
        matched = {number.id for number in candidates}
        named = {item.number_id for item in [*parsed.messages, *parsed.statuses]} - {None}
        if not named <= matched:  # a parser bug; storing would fail on every retry
            return _refuse(400, name, f"parsed for number(s) {sorted(named - matched)} that the request did not match")
        problem = _mistyped(parsed)
        if problem:  # a parser bug too (a JSON list where an id belongs): refused, not stored or retried
            return _refuse(400, name, f"malformed: parsed {problem}")
        for message in parsed.messages:  # bytes that came inside the webhook (WPPConnect)
            for media in message.media:
                if media.data is not None:
                    media.key = self.host.media.save(media.data, media.content_type, media.filename)
                    media.data = None
        try:
            result = await record_webhook(name, parsed, self.provider.status_map, self.host.queue,
                                          status_jobs=self.host.dispatch.listens("on_status_update"))
        except ValidationError as exc:  # a value no retry will make storable (an over-long id…)
            return _refuse(400, name, f"unstorable value: {exc}")
        except Exception as exc:
            if is_unstorable_value(exc):  # refused by the database itself (PostgreSQL: a NUL character)
                return _refuse(400, name, f"unstorable value: {type(exc).__name__}: {exc}")
            return _storage_unavailable(name, exc)
        if result.stored or result.statuses_applied:
            self.host.events.wake()  # the events were written with the rows they describe
        log.info(
            "webhook %s accepted: %d stored, %d duplicate, %d status(es) applied of %d",
            name, len(result.stored), result.duplicates, result.statuses_applied, result.statuses_kept,
        )
        metrics.webhook_stored(name, len(result.stored), result.duplicates, len(parsed.statuses))
        return self.provider.acknowledge(webhook, parsed)


_TEXT: dict[type, tuple[str, ...]] = {InboundMessage: ("external_id", "kind"), ContactInfo: ("address",),
                                      StatusUpdate: ("external_id", "raw_status")}
_OPTIONAL_TEXT: dict[type, tuple[str, ...]] = {
    InboundMessage: ("text", "reply_to"), ContactInfo: ("name", "wa_id"),
    Media: ("content_type", "url", "provider_media_id", "filename"), StatusUpdate: ("error_code", "error_text"),
}


def _mistyped(parsed: ParsedWebhook) -> str | None:
    """What a provider's parse returned that is not what core/types.py promises storage: ids and
    addresses non-empty strings, texts strings or None, media bytes, timestamps datetimes."""
    items: list[object] = [*parsed.statuses]
    for message in parsed.messages:
        items += [message, message.contact, *message.media]
    for item in items:
        for name in _TEXT.get(type(item), ()):
            if not isinstance(getattr(item, name), str) or not getattr(item, name):
                return f"a {type(item).__name__} whose {name} is not a non-empty string"
        for name in _OPTIONAL_TEXT.get(type(item), ()):
            if not isinstance(getattr(item, name), (str, type(None))):
                return f"a {type(item).__name__} whose {name} is not a string"
        if not isinstance(getattr(item, "timestamp", None), (datetime, type(None))):
            return f"a {type(item).__name__} whose timestamp is not a datetime"
        if isinstance(item, Media) and not isinstance(item.data, (bytes, type(None))):
            return "media whose data is not bytes"
    return None


def _storage_unavailable(provider: str, exc: Exception) -> Response:
    log.error("webhook %s refused 503: storage unavailable: %s: %s", provider, type(exc).__name__, exc)
    metrics.webhook_refused(provider, 503)
    return PlainTextResponse("storage unavailable, retry later", status_code=503, headers={"Retry-After": "5"})


def _refuse(status: int, provider: str, reason: str) -> Response:
    log.warning("webhook %s refused %d: %s", provider, status, reason)
    metrics.webhook_refused(provider, status)
    text = {400: "malformed request", 403: "forbidden", 404: "unknown number", 413: "request too large"}[status]
    return PlainTextResponse(text, status_code=status)


def webhook_routes(host: Host) -> list[Route]:
    """Every enabled provider's routes, mounted under /webhooks/whatsapp/<provider>."""
    routes = []
    for provider in host.dispatch.providers.values():
        for route in provider.routes:
            routes.append(
                Route(
                    f"{WEBHOOK_PREFIX}/{provider.name}{route.path}",
                    WebhookEndpoint(host, provider, route).handle,
                    methods=list(route.methods),
                    name=f"webhook-{provider.name}-{route.name}",
                )
            )
    return routes
