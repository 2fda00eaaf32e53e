"""Outbound calls to a WPPConnect Server: ``/api/<session>/…`` with the number's bearer token.

The token comes from the number's settings (``token``) or from ``POST
/api/<session>/<secret_key>/generate-token`` (PROTOCOLS.md 3.1); it is kept in memory only, since
generating one is cheap and tokens never expire. When the server answers 401 and a ``secret_key``
is configured, the token is generated again **once** and the call repeated; a second 401 is final.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from typing import Any
from urllib.parse import quote

import httpx

from core.types import Number, ProviderError, SendResult
from plugins.wppconnect.errors import UNAUTHORIZED, api_error, server_message, transport_error
from plugins.wppconnect.parse import jid
from plugins.wppconnect.schema import WppconnectNumberSettings

# send-message waits for WhatsApp's ack before answering: allow it time.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def settings_of(number: Number) -> WppconnectNumberSettings:
    return number.settings  # type: ignore[return-value]


def recipient(address: str) -> dict[str, Any]:
    """The ``phone`` and flags that make the server build the right WhatsApp id for ``address``."""
    user, _, server = address.strip().partition("@")
    flags = {"isGroup": server == "g.us", "isNewsletter": server == "newsletter", "isLid": server == "lid"}
    phone = user if any(flags.values()) else "".join(ch for ch in user if ch.isdigit())
    return {"phone": phone, **flags}


def data_uri(data: bytes, content_type: str | None) -> str:
    """What ``send-file-base64`` requires: a bare base64 string is taken for a path and fails."""
    return f"data:{content_type or 'application/octet-stream'};base64,{base64.b64encode(data).decode('ascii')}"


def filename_for(filename: str | None, content_type: str | None) -> str:
    if filename:
        return filename
    extension = mimetypes.guess_extension((content_type or "").split(";", 1)[0].strip()) or ""
    return f"file{extension}"


def send_result(body: Any) -> SendResult:
    """The first message of a send answer: ``{"status": "success", "response": [{id, ack…}]}``."""
    response = body.get("response") if isinstance(body, dict) else None
    first = response[0] if isinstance(response, list) and response else response
    external_id = jid(first.get("id")) if isinstance(first, dict) else ""
    if not external_id:
        raise ProviderError("WPPConnect accepted the message but answered without its id", code="no_id")
    ack = first.get("ack")
    return SendResult(external_id=external_id, raw_status=str(ack) if isinstance(ack, int) and not isinstance(ack, bool) else "0")


class WppClient:
    """One process's HTTP client for every number's WPPConnect Server, with their tokens."""

    def __init__(self) -> None:
        self._http = httpx.AsyncClient(timeout=TIMEOUT)
        self._tokens: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._http.aclose()

    # ----------------------------------------------------------------------- tokens

    async def generate_token(self, number: Number) -> str:
        settings = settings_of(number)
        if settings.secret_key is None:
            raise ProviderError(f"number {number.id} has no secret_key to generate a WPPConnect token", code=UNAUTHORIZED)
        secret = quote(settings.secret_key.get_secret_value(), safe="")
        url = f"{_base(settings)}/api/{settings.session}/{secret}/generate-token"
        response = await self._send(settings, "POST", url)
        body = _json(response)
        token = body.get("token") if isinstance(body, dict) else None
        if response.is_success and isinstance(token, str) and token:
            return token
        if response.status_code == 400:  # {"response": false, "message": "The SECRET_KEY is incorrect"}
            raise ProviderError(f"WPPConnect refused the secret_key of number {number.id}: {server_message(body) or 'HTTP 400'}",
                                code=UNAUTHORIZED)
        raise api_error(response.status_code, body, settings.session)

    async def token(self, number: Number) -> str:
        token = self._tokens.get(number.id)
        if token is None:
            async with self._lock(number.id):
                token = self._tokens.get(number.id)
                if token is None:
                    settings = settings_of(number)
                    token = settings.token.get_secret_value() if settings.token else await self.generate_token(number)
                    self._tokens[number.id] = token
        return token

    async def _renew(self, number: Number, refused: str) -> str:
        async with self._lock(number.id):
            current = self._tokens.get(number.id)
            if current is not None and current != refused:  # another call renewed it meanwhile
                return current
            token = await self.generate_token(number)
            self._tokens[number.id] = token
            return token

    def _lock(self, number_id: str) -> asyncio.Lock:
        return self._locks.setdefault(number_id, asyncio.Lock())

    # ----------------------------------------------------------------------- calls

    async def request(self, number: Number, method: str, route: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        """``method /api/<session>/<route>`` with the token; a 401 renews the token once (with a
        ``secret_key``) and repeats the call. Transport failures raise a retryable error."""
        settings = settings_of(number)
        url = f"{_base(settings)}/api/{settings.session}/{route}"
        token = await self.token(number)
        response = await self._send(settings, method, url, token, payload)
        if response.status_code == 401 and settings.secret_key is not None:
            token = await self._renew(number, token)
            response = await self._send(settings, method, url, token, payload)
        return response

    async def call(self, number: Number, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        """``request`` that answers the JSON body of a 2xx, or raises the ``ProviderError``."""
        response = await self.request(number, method, route, payload)
        body = _json(response)
        if not response.is_success:
            raise api_error(response.status_code, body, settings_of(number).session)
        return body

    async def _send(self, settings: WppconnectNumberSettings, method: str, url: str, token: str | None = None,
                    payload: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return await self._http.request(method, url, json=payload, headers=headers)
        except httpx.TransportError as exc:
            raise transport_error(_base(settings), type(exc).__name__) from None

    # ----------------------------------------------------------------------- sends

    async def send_text(self, number: Number, to: str, text: str, reply_to: str | None = None) -> SendResult:
        payload: dict[str, Any] = {**recipient(to), "message": text}
        if reply_to:
            payload["options"] = {"quotedMsg": reply_to}
        return send_result(await self.call(number, "POST", "send-message", payload))

    async def send_file(self, number: Number, to: str, data: bytes, content_type: str | None, filename: str | None,
                        caption: str | None, reply_to: str | None = None) -> SendResult:
        payload: dict[str, Any] = {
            **recipient(to),
            "filename": filename_for(filename, content_type),
            "caption": caption or "",
            "base64": data_uri(data, content_type),
        }
        if reply_to:
            payload["quotedMessageId"] = reply_to
        return send_result(await self.call(number, "POST", "send-file-base64", payload))

    async def send_file_url(self, number: Number, to: str, url: str, filename: str | None, caption: str | None,
                            reply_to: str | None = None) -> SendResult:
        """A file the server fetches itself (``send-file`` with ``path``): media with only a URL."""
        payload: dict[str, Any] = {**recipient(to), "path": url, "filename": filename or url.rsplit("/", 1)[-1].split("?", 1)[0],
                                   "caption": caption or ""}
        if reply_to:
            payload["quotedMessageId"] = reply_to
        return send_result(await self.call(number, "POST", "send-file", payload))

    async def download_media(self, number: Number, message_id: str) -> tuple[bytes, str | None]:
        """A received file, decrypted by the server (``download-media``): when it did not come in
        the webhook (``autoDownload`` off, or ``uploadS3``)."""
        body = await self.call(number, "POST", "download-media", {"messageId": message_id})
        encoded = body.get("base64") if isinstance(body, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise ProviderError(f"WPPConnect has no file for message {message_id}", code="no_media")
        if encoded.startswith("data:"):
            encoded = encoded.partition(",")[2]
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ProviderError(f"WPPConnect sent a file for {message_id} that is not base64", code="no_media") from None
        mimetype = body.get("mimetype")
        return data, mimetype if isinstance(mimetype, str) else None


def _base(settings: WppconnectNumberSettings) -> str:
    return settings.server_url.rstrip("/")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
