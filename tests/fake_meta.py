"""A local fake of Meta's Graph API (WhatsApp Cloud API) over real HTTP, following PROTOCOLS.md 2.6–2.7.

* ``POST /{version}/{phone_number_id}/messages`` (JSON, ``Authorization: Bearer <token>``) answers
  ``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid…"}]}``
  (templates add ``message_status: accepted``), or ``{"success": true}`` for a read receipt, or a
  scripted error ``{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}``.
  A wrong token answers 401 with code 190, as Meta does.
* ``POST /{version}/{phone_number_id}/media`` (multipart: ``messaging_product``, ``file``, ``type``)
  → ``{"id": "<media id>"}``.
* ``GET /{version}/{media_id}`` → ``{"url", "mime_type", "sha256", "file_size", "id",
  "messaging_product"}``; the URL needs the bearer token and expires after ``url_lifetime`` seconds
  (Meta: 5 minutes), after which it answers 404.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing import FakeApi


@dataclass
class GraphRequest:
    """One request the fake received."""

    method: str
    path: str
    version: str
    phone_number_id: str | None
    authorization: str | None
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    file: tuple[str, bytes, str] | None = None  # (filename, bytes, content type) of an upload

    @property
    def token(self) -> str | None:
        header = self.authorization or ""
        return header[len("Bearer "):] if header.startswith("Bearer ") else None


@dataclass
class StoredMedia:
    data: bytes
    mime_type: str
    filename: str | None = None


@dataclass
class FakeMeta(FakeApi):
    tokens: dict[str, str]  # phone_number_id → access token
    url: str = ""
    url_lifetime: float = 300.0
    requests: list[GraphRequest] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # answers for sends (not read receipts)
    media: dict[str, StoredMedia] = field(default_factory=dict)  # media id → file
    media_url_host: str | None = None  # serve media URLs on another host (an SSRF attempt)
    expired_urls: int = 0  # hand out this many media URLs already expired (a slow client)
    _issued: dict[str, tuple[str, float]] = field(default_factory=dict)  # url key → (media id, expiry)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ scripting and reading

    def answer(self, *responses: tuple[int, dict[str, Any]]) -> None:
        with self._lock:
            self.script.extend(responses)

    @staticmethod
    def error(code: int, message: str, details: str | None = None, status: int = 400) -> tuple[int, dict[str, Any]]:
        error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfFake"}
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        return status, {"error": error}

    @property
    def sends(self) -> list[GraphRequest]:
        """Message sends (read receipts left out)."""
        return [r for r in self.requests if r.path.endswith("/messages") and not (isinstance(r.json, dict) and r.json.get("status") == "read")]

    @property
    def read_receipts(self) -> list[GraphRequest]:
        return [r for r in self.requests if r.path.endswith("/messages") and isinstance(r.json, dict) and r.json.get("status") == "read"]

    @property
    def uploads(self) -> list[GraphRequest]:
        return [r for r in self.requests if r.path.endswith("/media")]

    def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake Graph API did not see it in time; requests: {[r.path for r in self.requests]}")
            time.sleep(0.02)

    # ------------------------------------------------------------------ endpoints

    def _authorized(self, request: Request, phone_number_id: str | None) -> bool:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        if phone_number_id is not None:
            return token is not None and self.tokens.get(phone_number_id) == token
        return token is not None and token in self.tokens.values()

    def _unauthorized(self) -> JSONResponse:
        status, body = self.error(190, "Error validating access token: Session has expired", status=401)
        return JSONResponse(body, status_code=status)

    async def messages(self, request: Request) -> Response:
        version, phone_number_id = request.path_params["version"], request.path_params["phone_number_id"]
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        with self._lock:
            self.requests.append(GraphRequest("POST", request.url.path, version, phone_number_id, request.headers.get("authorization"), json=payload))
        if not self._authorized(request, phone_number_id):
            return self._unauthorized()
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            status, body = self.error(100, "Invalid parameter", "messaging_product is required")
            return JSONResponse(body, status_code=status)
        if payload.get("status") == "read":
            return JSONResponse({"success": True})
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None and scripted[0] >= 300:
            return JSONResponse(scripted[1], status_code=scripted[0])
        to = payload.get("to") or payload.get("recipient")
        message: dict[str, Any] = {"id": "wamid.FAKE" + base64.b64encode(secrets.token_bytes(18)).decode()}
        if payload.get("type") == "template":
            message["message_status"] = "accepted"
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": str(to).lstrip("+")}], "messages": [message]})

    async def upload(self, request: Request) -> Response:
        version, phone_number_id = request.path_params["version"], request.path_params["phone_number_id"]
        fields, file = parse_multipart(request.headers.get("content-type", ""), await request.body())
        with self._lock:
            self.requests.append(GraphRequest("POST", request.url.path, version, phone_number_id, request.headers.get("authorization"), form=fields, file=file))
        if not self._authorized(request, phone_number_id):
            return self._unauthorized()
        if fields.get("messaging_product") != "whatsapp" or file is None or not fields.get("type"):
            status, body = self.error(100, "Invalid parameter", "messaging_product, file and type are required")
            return JSONResponse(body, status_code=status)
        media_id = str(secrets.randbelow(10**15) + 10**15)
        self.media[media_id] = StoredMedia(file[1], fields["type"], file[0])
        return JSONResponse({"id": media_id})

    async def media_info(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        with self._lock:
            self.requests.append(GraphRequest("GET", request.url.path, request.path_params["version"], request.query_params.get("phone_number_id"), request.headers.get("authorization")))
        if not self._authorized(request, request.query_params.get("phone_number_id")):
            return self._unauthorized()
        stored = self.media.get(media_id)
        if stored is None:
            status, body = self.error(100, "Unsupported get request", f"Object with ID '{media_id}' does not exist")
            return JSONResponse(body, status_code=status)
        key = secrets.token_hex(8)
        with self._lock:
            lifetime = self.url_lifetime
            if self.expired_urls:
                self.expired_urls -= 1
                lifetime = -1.0
            self._issued[key] = (media_id, time.monotonic() + lifetime)
        base = self.url if self.media_url_host is None else self.url.replace("127.0.0.1", self.media_url_host)
        return JSONResponse({
            "messaging_product": "whatsapp", "url": f"{base}/whatsapp_business/attachments/?mid={media_id}&key={key}",
            "mime_type": stored.mime_type, "sha256": hashlib.sha256(stored.data).hexdigest(),
            "file_size": len(stored.data), "id": media_id,
        })

    async def download(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(GraphRequest("GET", request.url.path, "", None, request.headers.get("authorization")))
        if not self._authorized(request, None):
            return Response(status_code=401)
        issued = self._issued.get(request.query_params.get("key", ""))
        if issued is None or issued[0] != request.query_params.get("mid") or time.monotonic() > issued[1]:
            return Response(status_code=404)  # Meta: an expired URL is gone; ask the media id again
        stored = self.media[issued[0]]
        return Response(stored.data, media_type=stored.mime_type)

    def routes(self) -> list[Route]:
        return [
            Route("/whatsapp_business/attachments/", self.download, methods=["GET"]),
            Route("/{version}/{phone_number_id}/messages", self.messages, methods=["POST"]),
            Route("/{version}/{phone_number_id}/media", self.upload, methods=["POST"]),
            Route("/{version}/{media_id}", self.media_info, methods=["GET"]),
        ]


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], tuple[str, bytes, str] | None]:
    """The text fields and the ``file`` part of a multipart/form-data body (stdlib ``email``
    parser: python-multipart is not a dependency)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return {}, None
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    fields: dict[str, str] = {}
    file = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            if name == "file":
                file = (part.get_filename(), payload, part.get_content_type())
        elif name:
            fields[name] = payload.decode()
    return fields, file


@contextmanager
def running_fake_meta(tokens: dict[str, str], **options: Any) -> Iterator[FakeMeta]:
    fake = FakeMeta(tokens, **options)
    with fake.running():
        yield fake
