"""Outbound calls to Twilio's REST API through the twilio SDK's asyncio client.

One SDK client per number (its account's credentials), created on first use and closed at
shutdown. `api_base_url` replaces Twilio's host so tests and simulators can stand in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from core import Number, ProviderError
from plugins.twilio.errors import provider_error, transport_error
from plugins.twilio.schema import TwilioNumberSettings

T = TypeVar("T")
_TIMEOUT_SECONDS = 10.0


def whatsapp_address(phone: str) -> str:
    """`whatsapp:+E164` from either `+E164` or `whatsapp:+E164`."""
    return phone if phone.startswith("whatsapp:") else f"whatsapp:{phone}"


class TwilioClients:
    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, str], Client] = {}

    def for_number(self, number: Number) -> Client:
        settings: TwilioNumberSettings = number.settings  # type: ignore[assignment]
        key = (number.id, settings.account_sid, settings.api_base_url)
        client = self._clients.get(key)
        if client is None:
            client = Client(
                settings.account_sid,
                settings.auth_token.get_secret_value(),
                http_client=AsyncTwilioHttpClient(timeout=_TIMEOUT_SECONDS),
            )
            client.api.base_url = settings.api_base_url
            self._clients[key] = client
        return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.http_client.close()  # type: ignore[union-attr]


async def call(operation: Callable[[], Awaitable[T]]) -> T:
    """Run one SDK call, turning its failures into hookline's retryable/permanent ProviderError."""
    try:
        return await operation()
    except TwilioRestException as exc:
        raise provider_error(exc.status, {"code": exc.code, "message": exc.msg}, None) from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise transport_error(type(exc).__name__) from None


def message_params(number: Number, to: str, status_callback: str | None) -> dict[str, Any]:
    settings: TwilioNumberSettings = number.settings  # type: ignore[assignment]
    params: dict[str, Any] = {"to": whatsapp_address(to)}
    if settings.messaging_service_sid:
        params["messaging_service_sid"] = settings.messaging_service_sid
    else:
        params["from_"] = whatsapp_address(number.phone)
    if status_callback:
        params["status_callback"] = status_callback
    return params


def content_variables(variables: dict[str, Any]) -> str:
    return json.dumps({str(key): str(value) for key, value in variables.items()}, ensure_ascii=False)


TWILIO_MEDIA_HOSTS = ("api.twilio.com",)


def media_host_allowed(url: str, settings: TwilioNumberSettings) -> bool:
    """Media is fetched only from Twilio's API host (or the configured stand-in): no SSRF."""
    host = urlsplit(url).hostname or ""
    allowed = {*TWILIO_MEDIA_HOSTS, urlsplit(settings.api_base_url).hostname or ""}
    return urlsplit(url).scheme in ("https", "http") and host in allowed and (
        urlsplit(url).scheme == "https" or host == urlsplit(settings.api_base_url).hostname
    )


async def download(url: str, settings: TwilioNumberSettings, limit: int) -> tuple[bytes, str | None]:
    """GET a MediaUrl with the account's Basic auth (Twilio may require it), following Twilio's
    redirect to its CDN (httpx drops the credentials when the redirect leaves the origin)."""
    if not media_host_allowed(url, settings):
        raise ProviderError(f"refusing to fetch media from a host that is not Twilio's: {urlsplit(url).hostname}")
    auth = (settings.account_sid, settings.auth_token.get_secret_value())
    try:
        async with httpx.AsyncClient(timeout=_TIMEOUT_SECONDS, follow_redirects=True) as client:
            async with client.stream("GET", url, auth=auth) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise ProviderError(f"Twilio media HTTP {response.status_code}", code=f"http_{response.status_code}", retryable=True)
                if response.is_error:
                    raise ProviderError(f"Twilio media HTTP {response.status_code}", code=f"http_{response.status_code}")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ProviderError(f"media over the {limit}-byte limit")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type")
    except httpx.TransportError as exc:
        raise transport_error(type(exc).__name__) from None
