"""Outbound calls to the Telegram Bot API over httpx: ``{api_base_url}/bot<token>/<method>``.

One ``httpx.AsyncClient`` per process, made on first use and closed at shutdown. The bot token is
part of every URL, so no URL ever goes into an exception or a log line here: errors name the
method and what Telegram said.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from core import Number, ProviderError, SendResult
from hookline_telegram.errors import api_error, transport_error
from hookline_telegram.parse import message_id
from hookline_telegram.schema import TelegramNumberSettings

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def settings_of(number: Number) -> TelegramNumberSettings:
    return number.settings  # type: ignore[return-value]


def chat_id(address: str) -> int | str:
    """A chat id (digits, negative for groups) as the integer Telegram expects; ``@channel`` as is."""
    text = address.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def reply_parameters(number: Number, address: str, reply_to: str | None) -> dict[str, Any] | None:
    """``reply_parameters`` for a reply to one of this chat's messages (hookline's id for it)."""
    if not reply_to:
        return None
    bot, _, rest = reply_to.partition(":")
    chat, _, telegram_id = rest.partition(":")
    if bot != settings_of(number).bot_id or chat != str(chat_id(address)) or not telegram_id.isdigit():
        return None
    return {"message_id": int(telegram_id), "allow_sending_without_reply": True}


class BotApi:
    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=TIMEOUT)
        return self._http

    async def call(self, number: Number, method: str, *, json_body: dict[str, Any] | None = None,
                   data: dict[str, str] | None = None, files: dict[str, Any] | None = None) -> Any:
        """One Bot API method; its ``result``, or ProviderError."""
        settings = settings_of(number)
        url = f"{settings.api_base_url.rstrip('/')}/bot{settings.bot_token.get_secret_value()}/{method}"
        try:
            response = await self._client().post(url, json=json_body, data=data, files=files)
        except httpx.HTTPError as exc:
            raise transport_error(f"{method}: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        raise api_error(response.status_code, body, response.headers.get("retry-after"))

    async def send_message(self, number: Number, to: str, text: str, reply_to: str | None) -> SendResult:
        body: dict[str, Any] = {"chat_id": chat_id(to), "text": text}
        reply = reply_parameters(number, to, reply_to)
        if reply:
            body["reply_parameters"] = reply
        return self._sent(number, await self.call(number, "sendMessage", json_body=body))

    async def send_document(self, number: Number, to: str, *, data: bytes | None = None, url: str | None = None,
                            filename: str | None = None, content_type: str | None = None, caption: str | None = None,
                            reply_to: str | None = None) -> SendResult:
        """A file from hookline's store, uploaded (multipart), or one Telegram fetches by URL."""
        fields: dict[str, Any] = {"chat_id": chat_id(to)}
        if caption:
            fields["caption"] = caption
        reply = reply_parameters(number, to, reply_to)
        if reply:
            fields["reply_parameters"] = reply
        if data is not None:
            form = {key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()}
            upload = {"document": (filename or "file", data, content_type or "application/octet-stream")}
            result = await self.call(number, "sendDocument", data=form, files=upload)
        else:
            result = await self.call(number, "sendDocument", json_body={**fields, "document": url})
        return self._sent(number, result)

    async def download(self, number: Number, file_id: str, limit: int) -> tuple[bytes, str | None]:
        """getFile, then the file itself (``/file/bot<token>/<file_path>``), up to `limit` bytes."""
        found = await self.call(number, "getFile", json_body={"file_id": file_id})
        path = found.get("file_path") if isinstance(found, dict) else None
        if not isinstance(path, str) or not path:
            raise ProviderError("Telegram has no downloadable file for this media (no file_path)", code="no_file")
        size = found.get("file_size")
        if isinstance(size, int) and size > limit:
            raise ProviderError(f"media of {size} bytes is over the {limit}-byte limit", code="too_large")
        settings = settings_of(number)
        url = f"{settings.api_base_url.rstrip('/')}/file/bot{settings.bot_token.get_secret_value()}/{path.lstrip('/')}"
        try:
            async with self._client().stream("GET", url) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise ProviderError(f"Telegram file download: HTTP {response.status_code}", code=str(response.status_code), retryable=True)
                if response.is_error:
                    raise ProviderError(f"Telegram file download: HTTP {response.status_code}", code=str(response.status_code))
                chunks, received = [], 0
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > limit:
                        raise ProviderError(f"media over the {limit}-byte limit", code="too_large")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type")
        except httpx.HTTPError as exc:
            raise transport_error(f"file download: {type(exc).__name__}") from None

    async def set_webhook(self, number: Number, url: str) -> None:
        settings = settings_of(number)
        await self.call(number, "setWebhook", json_body={
            "url": url, "secret_token": settings.webhook_secret.get_secret_value(), "allowed_updates": ["message"],
        })

    @staticmethod
    def _sent(number: Number, result: Any) -> SendResult:
        chat = result.get("chat") if isinstance(result, dict) else None
        telegram_id = result.get("message_id") if isinstance(result, dict) else None
        if not isinstance(chat, dict) or "id" not in chat or not isinstance(telegram_id, int):
            # Accepted without an id to find it by: retrying could send it twice, so this is final.
            raise ProviderError("Telegram accepted the message but answered without its message_id", code="no_id")
        return SendResult(external_id=message_id(settings_of(number).bot_id, chat["id"], telegram_id), raw_status="sent")
