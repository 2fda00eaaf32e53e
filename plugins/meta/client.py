"""Outbound calls to Meta's Graph API (PROTOCOLS.md 2.6): sends, media upload and download.

One ``httpx.AsyncClient`` per process (connection pooling across numbers), created on first use
and closed at shutdown; every call goes to ``{api_base_url}/{graph_api_version}/…`` with the
number's bearer token. Payload builders are pure functions, tested without a network.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from core import Interactive, Media, Number, OutboundMessage, ProviderError, SendResult, Template
from plugins.meta.errors import provider_error, transport_error
from plugins.meta.schema import MetaNumberSettings

TIMEOUT_SECONDS = 10.0
#: Uploaded media ids live 30 days at Meta; reuse one (the bot's PDF to every customer) for a week.
UPLOAD_REUSE_SECONDS = 7 * 24 * 3600
#: Where Meta serves media from. Media is fetched only from these (https) or from `api_base_url`.
META_MEDIA_HOST_SUFFIXES = (".fbsbx.com", ".facebook.com", ".whatsapp.net", ".fbcdn.net")
_MAX_REDIRECTS = 3
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{4,30}")


def settings_of(number: Number) -> MetaNumberSettings:
    return number.settings  # type: ignore[return-value]


def graph_url(settings: MetaNumberSettings, path: str) -> str:
    return f"{settings.api_base_url.rstrip('/')}/{settings.graph_api_version}/{path.lstrip('/')}"


# --------------------------------------------------------------------------- payloads


def recipient(to: str) -> dict[str, str]:
    """``to`` for a phone (digits, as Meta's ``wa_id``), ``recipient`` for a business-scoped user id."""
    address = to.strip()
    if address.lower().startswith("whatsapp:"):
        address = address[len("whatsapp:"):]
    if _PHONE.fullmatch(address):
        return {"to": re.sub(r"[^0-9]", "", address)}
    return {"recipient": address}


def envelope(message: OutboundMessage, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", **recipient(message.to), "type": kind, kind: body}
    if message.reply_to:
        payload["context"] = {"message_id": message.reply_to}
    payload["biz_opaque_callback_data"] = f"hookline:{message.id}"  # comes back on its statuses
    return payload


def text_payload(message: OutboundMessage) -> dict[str, Any]:
    text = message.text or ""
    return envelope(message, "text", {"body": text, "preview_url": "http://" in text or "https://" in text})


def media_kind(content_type: str | None) -> str:
    """The WhatsApp message type for a file: webp images are stickers, anything unknown a document."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "image/webp":
        return "sticker"
    major = mime.partition("/")[0]
    return major if major in ("image", "video", "audio") else "document"


def media_payload(
    message: OutboundMessage, *, media_id: str | None = None, link: str | None = None, content_type: str | None = None
) -> dict[str, Any]:
    """By uploaded ``media_id`` or by ``link``; documents keep their filename (what the customer sees)."""
    media = message.media
    assert media is not None
    kind = media_kind(content_type or media.content_type)
    body: dict[str, Any] = {"id": media_id} if media_id else {"link": link}
    if message.text and kind in ("image", "video", "document"):  # audio and stickers take no caption
        body["caption"] = message.text
    if kind == "document" and media.filename:
        body["filename"] = media.filename
    return envelope(message, kind, body)


def template_payload(message: OutboundMessage) -> dict[str, Any]:
    """``template.name`` + ``language`` + components: given ones as they are, else a body built
    from ``variables`` (``{"1": …}`` positional, ``{"order_id": …}`` named parameters)."""
    template: Template | None = message.template
    assert template is not None
    if not template.language:
        raise ProviderError(
            f"Meta templates need a language code: Template({template.name!r}, language=\"en_US\")", code="template_language"
        )
    body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    components = [dict(component) for component in template.components]
    if template.variables and not any(component.get("type") == "body" for component in components):
        components.append({"type": "body", "parameters": template_parameters(template.variables)})
    if components:
        body["components"] = components
    return envelope(message, "template", body)


def template_parameters(variables: dict[str, str]) -> list[dict[str, str]]:
    if all(str(key).isdigit() for key in variables):
        return [{"type": "text", "text": str(variables[key])} for key in sorted(variables, key=lambda key: int(key))]
    return [{"type": "text", "parameter_name": str(key), "text": str(value)} for key, value in variables.items()]


def interactive_payload(message: OutboundMessage) -> dict[str, Any]:
    """Reply buttons (``type: button``) or a list (``type: list``) with an optional header and footer."""
    choice: Interactive | None = message.interactive
    assert choice is not None
    body: dict[str, Any]
    if choice.buttons:
        body = {"type": "button", "body": {"text": choice.body}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": str(button["id"]), "title": str(button["title"])}} for button in choice.buttons
        ]}}
    elif choice.sections:
        sections = []
        for section in choice.sections:
            rows = [{key: str(row[key]) for key in ("id", "title", "description") if row.get(key)} for row in section.get("rows", [])]
            sections.append({**({"title": section["title"]} if section.get("title") else {}), "rows": rows})
        body = {"type": "list", "body": {"text": choice.body}, "action": {"button": choice.action_label or "Options", "sections": sections}}
    else:
        raise ProviderError("an interactive message needs buttons or list sections", code="interactive_empty")
    if choice.header:
        body["header"] = {"type": "text", "text": choice.header}
    if choice.footer:
        body["footer"] = {"text": choice.footer}
    return envelope(message, "interactive", body)


def read_receipt(external_id: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "status": "read", "message_id": external_id}


def send_result(answer: Any) -> SendResult:
    """``{"messages": [{"id": "wamid…", "message_status"?: "accepted"}]}`` → the id and raw status."""
    messages = answer.get("messages") if isinstance(answer, dict) else None
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
    external_id = first.get("id")
    if not isinstance(external_id, str) or not external_id:
        # Accepted without an id: retrying could send it twice, so this is permanent.
        raise ProviderError("Meta accepted the request but returned no message id", code="no_message_id")
    status = first.get("message_status")
    return SendResult(external_id=external_id, raw_status=status if isinstance(status, str) and status else "accepted")


# --------------------------------------------------------------------------- media hosts


def media_host_allowed(url: str, settings: MetaNumberSettings) -> bool:
    """Media comes only from Meta's hosts over https, or from the configured API host: no SSRF."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    api = urlsplit(settings.api_base_url)
    if host and host == (api.hostname or "").lower() and parts.scheme == api.scheme:
        return True
    return parts.scheme == "https" and any(host.endswith(suffix) or host == suffix[1:] for suffix in META_MEDIA_HOST_SUFFIXES)


class MediaUrlExpired(Exception):
    """The short-lived media URL answered 404: ask for a fresh one."""


# --------------------------------------------------------------------------- the client


class GraphClient:
    """The process's connection to the Graph API, shared by every Meta number."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uploads: dict[tuple[str, str], tuple[str, float]] = {}

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            # A client belongs to the loop it was made in (tests run one loop per test).
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False)
            self._loop = loop
        return self._client

    async def close(self) -> None:
        client, self._client, self._loop = self._client, None, None
        self._uploads.clear()
        if client is not None and not client.is_closed:
            await client.aclose()

    async def _call(self, number: Number, method: str, url: str, **options: Any) -> Any:
        settings = settings_of(number)
        headers = {"Authorization": f"Bearer {settings.access_token.get_secret_value()}"}
        try:
            response = await self._http().request(method, url, headers=headers, **options)
        except httpx.TransportError as exc:  # timeouts, refused and reset connections
            raise transport_error(type(exc).__name__) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_error:
            raise provider_error(response.status_code, answer, response.headers.get("retry-after"))
        return answer

    async def send(self, number: Number, payload: dict[str, Any]) -> Any:
        """POST /{phone_number_id}/messages."""
        settings = settings_of(number)
        return await self._call(number, "POST", graph_url(settings, f"{settings.phone_number_id}/messages"), json=payload)

    async def upload(self, number: Number, data: bytes, content_type: str, filename: str | None, key: str | None = None) -> str:
        """POST /{phone_number_id}/media (multipart) → the media id; reused per number and file."""
        cache_key = (number.id, key) if key else None
        if cache_key is not None:
            cached = self._uploads.get(cache_key)
            if cached and time.monotonic() - cached[1] < UPLOAD_REUSE_SECONDS:
                return cached[0]
        settings = settings_of(number)
        name = filename or "file" + (mimetypes.guess_extension(content_type) or "")
        answer = await self._call(
            number, "POST", graph_url(settings, f"{settings.phone_number_id}/media"),
            data={"messaging_product": "whatsapp", "type": content_type},
            files={"file": (name, data, content_type)},
        )
        media_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(media_id, str) or not media_id:
            raise ProviderError("Meta accepted the media upload but returned no media id", code="no_media_id", retryable=True)
        if cache_key is not None:
            self._uploads[cache_key] = (media_id, time.monotonic())
        return media_id

    async def media_info(self, number: Number, media_id: str) -> dict[str, Any]:
        """GET /{media_id} → ``{url, mime_type, sha256, file_size, id}``; the url lives 5 minutes."""
        settings = settings_of(number)
        answer = await self._call(
            number, "GET", graph_url(settings, media_id), params={"phone_number_id": settings.phone_number_id}
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("url"), str):
            raise ProviderError(f"Meta returned no URL for media {media_id}", code="no_media_url", retryable=True)
        return answer

    async def download(self, number: Number, media: Media, limit: int) -> tuple[bytes, str | None]:
        """An inbound media item's bytes: media id → fresh URL → GET with the bearer token.

        The URL expires after 5 minutes, so it is asked for right before the download, and asked
        for again once if it has already expired. Without an id, a Meta-hosted ``media.url``.
        """
        if not media.provider_media_id:
            if not media.url:
                raise ProviderError("Meta media without an id or a URL", code="no_media")
            return await self._fetch(number, media.url, limit)
        for _ in range(2):
            info = await self.media_info(number, media.provider_media_id)
            size = info.get("file_size")
            if isinstance(size, int) and size > limit:
                raise ProviderError(f"media of {size} bytes is over the {limit}-byte limit", code="too_large")
            try:
                data, content_type = await self._fetch(number, info["url"], limit)
            except MediaUrlExpired:
                continue
            return data, content_type or info.get("mime_type")
        raise ProviderError(f"Meta media {media.provider_media_id}: URL expired twice", code="media_expired", retryable=True)

    async def _fetch(self, number: Number, url: str, limit: int) -> tuple[bytes, str | None]:
        settings = settings_of(number)
        headers = {"Authorization": f"Bearer {settings.access_token.get_secret_value()}"}
        for _ in range(_MAX_REDIRECTS + 1):
            if not media_host_allowed(url, settings):
                raise ProviderError(f"refusing to fetch media from a host that is not Meta's: {urlsplit(url).hostname}", code="media_host")
            try:
                async with self._http().stream("GET", url, headers=headers) as response:
                    if response.is_redirect and response.headers.get("location"):
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code in (404, 410):
                        raise MediaUrlExpired
                    if response.is_error:
                        raise provider_error(response.status_code, None, response.headers.get("retry-after"))
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise ProviderError(f"media over the {limit}-byte limit", code="too_large")
                        chunks.append(chunk)
                    return b"".join(chunks), response.headers.get("content-type")
            except httpx.TransportError as exc:
                raise transport_error(type(exc).__name__) from None
        raise ProviderError("Meta media: too many redirects", code="media_redirects")
