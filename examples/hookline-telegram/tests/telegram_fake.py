"""A local fake of the Telegram Bot API over real HTTP (core.testing.FakeApi).

``POST /bot<token>/<method>`` with JSON or multipart, answered as Telegram answers:
``{"ok": true, "result": …}``, or ``{"ok": false, "error_code", "description"}`` (401 for a token
it does not know, 400 for a missing chat_id or text). Methods: ``sendMessage``, ``sendDocument``
(an uploaded file or a URL), ``getFile``, ``setWebhook``, ``getMe``; files at
``GET /file/bot<token>/<file_path>``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.testing import FakeApi


def refused(code: int, description: str, **parameters: Any) -> JSONResponse:
    """An error answer as the Bot API gives it."""
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


class FakeTelegram(FakeApi):
    def __init__(self, tokens: Sequence[str]) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.files: dict[str, tuple[str, bytes, str]] = {}  # file_id → (file_path, bytes, content type)
        self.webhooks: dict[str, dict[str, Any]] = {}  # bot id → setWebhook's parameters
        self.uploads: list[tuple[str, bytes, str | None]] = []  # sendDocument files: (filename, bytes, type)
        self._ids = itertools.count(1001)

    def routes(self) -> Sequence[BaseRoute]:
        return [
            Route("/bot{token}/{method}", self.method, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self.file, methods=["GET"]),
        ]

    async def method(self, request: Request) -> Response:
        token, name = request.path_params["token"], request.path_params["method"]
        if token not in self.tokens:
            return refused(401, "Unauthorized")
        params, upload = await self._params(request)
        handler = {"sendMessage": self._send_message, "sendDocument": self._send_document, "getFile": self._get_file,
                   "setWebhook": self._set_webhook, "getMe": self._get_me}.get(name)
        if handler is None:
            return refused(404, "Not Found")
        return handler(token, params, upload)

    async def _params(self, request: Request) -> tuple[dict[str, Any], tuple[str, bytes, str | None] | None]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            return await request.json(), None
        form = await request.form()
        params: dict[str, Any] = {}
        upload = None
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                upload = (value.filename or "file", await value.read(), value.content_type)
            else:
                params[key] = json.loads(value) if key == "reply_parameters" else value
        return {**dict(request.query_params), **params}, upload

    def _message(self, token: str, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        bot_id = int(token.split(":", 1)[0])
        return {"message_id": next(self._ids), "from": {"id": bot_id, "is_bot": True, "first_name": "Bot", "username": "fake_bot"},
                "chat": {"id": int(chat_id) if str(chat_id).lstrip("-").isdigit() else chat_id, "type": "private"},
                "date": int(time.time()), **content}

    def _send_message(self, token: str, params: dict[str, Any], upload: Any) -> Response:
        if not params.get("chat_id"):
            return refused(400, "Bad Request: chat_id is empty")
        if not params.get("text"):
            return refused(400, "Bad Request: message text is empty")
        return JSONResponse({"ok": True, "result": self._message(token, params, text=params["text"])})

    def _send_document(self, token: str, params: dict[str, Any], upload: tuple[str, bytes, str | None] | None) -> Response:
        if not params.get("chat_id"):
            return refused(400, "Bad Request: chat_id is empty")
        if upload is None and not params.get("document"):
            return refused(400, "Bad Request: there is no document in the request")
        if upload is not None:
            self.uploads.append(upload)
        name, size, mime = (upload[0], len(upload[1]), upload[2]) if upload else ("file", 0, None)
        document = {"file_id": f"BQAC{next(self._ids)}", "file_unique_id": "AgAD", "file_name": name, "mime_type": mime, "file_size": size}
        extra = {"caption": params["caption"]} if params.get("caption") else {}
        return JSONResponse({"ok": True, "result": self._message(token, params, document=document, **extra)})

    def _get_file(self, token: str, params: dict[str, Any], upload: Any) -> Response:
        found = self.files.get(str(params.get("file_id")))
        if found is None:
            return refused(400, "Bad Request: invalid file_id")
        path, data, _ = found
        return JSONResponse({"ok": True, "result": {"file_id": params["file_id"], "file_unique_id": "AQAD", "file_size": len(data), "file_path": path}})

    def _set_webhook(self, token: str, params: dict[str, Any], upload: Any) -> Response:
        self.webhooks[token.split(":", 1)[0]] = params
        return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})

    def _get_me(self, token: str, params: dict[str, Any], upload: Any) -> Response:
        return JSONResponse({"ok": True, "result": {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": "Bot", "username": "fake_bot"}})

    async def file(self, request: Request) -> Response:
        if request.path_params["token"] not in self.tokens:
            return Response(status_code=401)
        for path, data, content_type in self.files.values():
            if path == request.path_params["path"]:
                return Response(data, media_type=content_type)
        return Response(status_code=404)
