"""A local fake WPPConnect Server (v2.10.4, PROTOCOLS.md section 3) over real HTTP.

Routes, answered as the real server answers them:

* ``POST /api/{session}/{secretkey}/generate-token`` → 201 ``{status, session, token, full}``, or
  400 ``The SECRET_KEY is incorrect``. Every call gives a different valid token; a token is valid
  for its session only (the real one is bcrypt(session + secret key)).
* Every other ``/api/{session}/…`` route needs ``Authorization: Bearer <token>`` (or the
  ``session:token`` path form) → 401 otherwise.
* ``start-session`` (keeps the ``webhook``; a new session answers ``CLOSED`` and goes
  INITIALIZING → QRCODE, posting a ``qrcode`` event, or straight to CONNECTED if it was paired;
  ``waitQrCode`` holds the answer until the QR code), ``status-session``, ``qrcode-session``
  (``image/png``), ``check-connection-session``, ``close-session``, ``logout-session``.
* ``send-message``, ``send-file-base64`` (the ``base64`` must be a ``data:`` URI), ``send-file``
  (``path``), with the ``statusConnection`` answers: 404 ``Disconnected`` when the session is not
  CONNECTED, 400 ``O número … não existe.`` for a phone in ``missing``. ``download-media``.

Webhooks are posted like the real server posts them: JSON ``{"event", "session", …}``, no
signature, fire-and-forget, from their own thread. ``proxy`` maps hookline's public URL to where
it really listens (the TLS proxy in front of hookline); a URL it cannot map is not called.
Tests drive the phone side with ``await fake.scan(...)``, ``drop``, ``reconnect``, ``receive``,
``ack``; each returns the HTTP status hookline answered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import copy
import hashlib
import hmac
import json
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.testing import FakeApi

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wppconnect"
VERSION = "2.10.4"
DISCONNECTED = {"response": None, "status": "Disconnected", "message": "A sessão do WhatsApp não está ativa."}


def qr_png(text: str, scale: int = 4) -> bytes:
    """A real PNG (grayscale, 29×29 modules) whose pattern depends on ``text``."""
    size = 29
    bits = "".join(f"{byte:08b}" for byte in hashlib.sha512(text.encode()).digest() * 2)
    rows = []
    for y in range(size * scale):
        row = bytes(0 if bits[(y // scale) * size + x // scale] == "1" else 255 for x in range(size * scale))
        rows.append(b"\x00" + row)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size * scale, size * scale, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def contact_to_array(number: Any, is_group: bool = False, is_newsletter: bool = False, is_lid: bool = False) -> list[str]:
    """The server's ``functions.contactToArray``: ``phone`` → WhatsApp ids."""
    items = number if isinstance(number, list) else re.split(r"\s*[,;]\s*", str(number or ""))
    found = []
    for item in items:
        user = str(item).split("@")[0]
        if not (is_group or is_newsletter):
            user = re.sub(r"[^\w ]", "", user)
        if not user:
            continue
        if is_group:
            found.append(f"{user}@g.us")
        elif is_newsletter:
            found.append(f"{user}@newsletter")
        elif is_lid or len(user) > 14:
            found.append(f"{user}@lid")
        else:
            found.append(f"{user}@c.us")
    return found


@dataclass
class FakeSession:
    name: str
    status: str | None = None  # None (never started), INITIALIZING, QRCODE, CONNECTED, CLOSED
    paired: bool = False  # the token file in userDataDir: a restart needs no QR code
    webhook: str | None = None
    urlcode: str | None = None
    qr: bytes | None = None


@dataclass
class Call:
    """One request to an authenticated route, whatever the answer."""

    route: str
    session: str
    token: str | None
    body: Any
    status: int = 0


@dataclass
class Sent:
    """One message a send route accepted."""

    session: str
    route: str
    to: str
    id: str
    token: str
    body: dict[str, Any]
    data: bytes | None = None
    mimetype: str | None = None


@dataclass
class FakeWppconnect(FakeApi):
    secret_key: str = "THISISMYSECURETOKEN"
    own_phone: str = "5511900000009"
    pairing_delay: float = 0.05
    url: str = ""
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    generated: list[tuple[str, str]] = field(default_factory=list)  # (session, token) per generate-token
    sent: list[Sent] = field(default_factory=list)
    webhooks: list[tuple[dict[str, Any], Any]] = field(default_factory=list)  # (payload, status or error)
    missing: set[str] = field(default_factory=set)  # phones without WhatsApp
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # message id → file, for download-media
    proxy: dict[str, str] = field(default_factory=dict)  # hookline's public URL → where it listens
    reject_tokens: bool = False  # every token is refused (401), new ones too
    token_epoch: int = 0  # `expire_tokens()`: the tokens issued so far are refused, new ones work

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-wppconnect-webhooks", daemon=True)
        self._thread.start()
        self._http: httpx.AsyncClient | None = None

    # ----------------------------------------------------------------------- tokens

    def _digest(self, session: str, salt: str) -> str:
        message = f"{self.token_epoch}:{salt}:{session}".encode()
        return hmac.new(self.secret_key.encode(), message, hashlib.sha256).hexdigest()

    def expire_tokens(self) -> None:
        """Refuse every token issued so far (as after the server's SECRET_KEY changed and hookline
        was given the new one); tokens generated from now on work."""
        self.token_epoch += 1

    def _issue(self, session: str) -> str:
        salt = secrets.token_hex(8)
        return f"{salt}.{self._digest(session, salt)}"

    def valid(self, token: str | None, session: str) -> bool:
        if not token or self.reject_tokens:
            return False
        salt, _, digest = token.partition(".")
        return hmac.compare_digest(digest, self._digest(session, salt))

    def session(self, name: str, *, status: str | None = None, paired: bool = False) -> FakeSession:
        with self._lock:
            found = self.sessions.setdefault(name, FakeSession(name))
            if status is not None:
                found.status, found.paired = status, paired or found.paired
            return found

    def calls_to(self, route: str) -> list[Call]:
        return [call for call in self.calls if call.route == route]

    # ----------------------------------------------------------------------- routes

    async def generate_token(self, request: Request) -> Response:
        session = request.path_params["session"]
        if not hmac.compare_digest(request.path_params["secretkey"], self.secret_key):
            return JSONResponse({"response": False, "message": "The SECRET_KEY is incorrect"}, status_code=400)
        token = self._issue(session)
        self.generated.append((session, token))
        return JSONResponse({"status": "success", "session": session, "token": token, "full": f"{session}:{token}"}, status_code=201)

    def _api(self, route: str, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            session, _, path_token = request.path_params["session"].partition(":")
            header = request.headers.get("authorization", "")
            token = path_token or (header[7:].strip() if header.startswith("Bearer ") else None)
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            call = Call(route, session, token, body)
            self.calls.append(call)
            if token is None:
                response: Response = JSONResponse({"message": "Token is not present. Check your header and try again"}, status_code=401)
            elif not self.valid(token, session):
                response = JSONResponse({"error": "Check that the Session and Token are correct"}, status_code=401)
            else:
                response = await handler(request, self.session(session), body if isinstance(body, dict) else {}, token)
            call.status = response.status_code
            return response

        return endpoint

    async def start_session(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        if isinstance(body.get("webhook"), str):
            session.webhook = body["webhook"]
        if session.status in ("INITIALIZING", "QRCODE", "CONNECTED"):
            answer = {"status": session.status, "qrcode": self._qr_data_uri(session), "version": VERSION}
        else:
            answer = {"status": "CLOSED", "qrcode": None}  # what the code path answers while it starts
            session.status = "INITIALIZING"
            asyncio.run_coroutine_threadsafe(self._boot(session), self._loop)
        if body.get("waitQrCode"):
            deadline = time.monotonic() + 5
            while session.status == "INITIALIZING" and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if session.status == "QRCODE":
                answer = {"status": "qrcode", "qrcode": base64.b64encode(session.qr or b"").decode(), "urlcode": session.urlcode,
                          "session": session.name}
        return JSONResponse(answer)

    async def _boot(self, session: FakeSession) -> None:
        await asyncio.sleep(self.pairing_delay)
        if session.paired:
            session.status = "CONNECTED"
            await self._post(session, {"event": "status-find", "status": "isLogged"})
            return
        session.urlcode = f"2@{secrets.token_urlsafe(24)},{secrets.token_urlsafe(16)},{secrets.token_urlsafe(8)}"
        session.qr = qr_png(session.urlcode)
        session.status = "QRCODE"
        await self._post(session, {"event": "qrcode", "qrcode": self._qr_data_uri(session), "urlcode": session.urlcode})
        await self._post(session, {"event": "status-find", "status": "notLogged"})

    @staticmethod
    def _qr_data_uri(session: FakeSession) -> str | None:
        return "data:image/png;base64," + base64.b64encode(session.qr).decode() if session.qr else None

    async def status_session(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        if session.status is None:
            return JSONResponse({"status": "CLOSED", "qrcode": None})
        answer = {"status": session.status, "qrcode": self._qr_data_uri(session), "version": VERSION}
        if session.urlcode:
            answer["urlcode"] = session.urlcode
        return JSONResponse(answer)

    async def qrcode_session(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        if session.status is None:
            return JSONResponse({"status": None, "message": "Session not started. Please, use the /start-session route, for initialization your session"})
        if session.status == "QRCODE" and session.qr:
            return Response(session.qr, media_type="image/png")
        return JSONResponse({"status": session.status, "message": "QRCode is not available..."})

    async def check_connection(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        connected = session.status == "CONNECTED"
        return JSONResponse({"status": connected, "message": "Connected" if connected else "Disconnected"})

    async def close_session(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        session.status = "CLOSED"
        self._emit(session, {"event": "closesession", "message": "Session closed", "connected": False})
        return JSONResponse({"status": True, "message": "Session successfully closed"})

    async def logout_session(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        session.status, session.paired, session.qr, session.urlcode = "CLOSED", False, None, None
        self._emit(session, {"event": "logoutsession", "message": "Session logged out", "connected": False})
        return JSONResponse({"status": True, "message": "Session successfully closed"})

    def _sender(route: str) -> Any:  # noqa: N805 - a decorator factory used in the class body
        async def handler(self: FakeWppconnect, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
            recipients = contact_to_array(body.get("phone"), bool(body.get("isGroup")), bool(body.get("isNewsletter")), bool(body.get("isLid")))
            if session.status != "CONNECTED":
                return JSONResponse(DISCONNECTED, status_code=404)
            for recipient in recipients:
                user, _, server = recipient.partition("@")
                if server == "c.us" and user in self.missing:
                    return JSONResponse({"response": None, "status": "Connected", "message": f"O número {user} não existe."}, status_code=400)
            data = mimetype = None
            if route == "send-file-base64":
                match = re.fullmatch(r"data:([^;,]+);base64,(.*)", body.get("base64") or "", flags=re.DOTALL)
                try:
                    data = base64.b64decode(match.group(2), validate=True) if match else None
                except binascii.Error:
                    data = None
                if not data:
                    return JSONResponse({"status": "Error", "message": "Erro ao enviar a mensagem.",
                                         "error": {"code": "empty_file", "message": "Empty or invalid file or base64"}}, status_code=500)
                mimetype = match.group(1)
            answers = []
            for recipient in recipients:
                message_id = f"true_{recipient}_3EB0{secrets.token_hex(8).upper()}"
                self.sent.append(Sent(session.name, route, recipient, message_id, token, body, data, mimetype))
                answers.append(self._serialized(message_id, recipient, body) if route == "send-message" else {"ack": 1, "id": message_id})
            return JSONResponse({"status": "success", "response": answers, "mapper": "return"}, status_code=201)

        return handler

    send_message = _sender("send-message")
    send_file_base64 = _sender("send-file-base64")
    send_file = _sender("send-file")

    def _serialized(self, message_id: str, recipient: str, body: dict[str, Any]) -> dict[str, Any]:
        message = json.loads((FIXTURES / "send_message_response.json").read_text())["response"][0]
        now = int(time.time())
        message.update(id=message_id, body=body.get("message", ""), content=body.get("message", ""), t=now, timestamp=now,
                       to=recipient, chatId=recipient, **{"from": f"{self.own_phone}@c.us"})
        return message

    async def download_media(self, request: Request, session: FakeSession, body: dict[str, Any], token: str) -> Response:
        found = self.media.get(str(body.get("messageId")))
        if found is None:
            return JSONResponse({"status": "error", "message": "Message not found"}, status_code=400)
        return JSONResponse({"base64": base64.b64encode(found[0]).decode(), "mimetype": found[1]})

    def routes(self) -> list[Route]:
        api = "/api/{session}"
        routes = [Route(api + "/{secretkey}/generate-token", self.generate_token, methods=["POST"])]
        for path, handler, method in (
            ("start-session", self.start_session, "POST"),
            ("status-session", self.status_session, "GET"),
            ("qrcode-session", self.qrcode_session, "GET"),
            ("check-connection-session", self.check_connection, "GET"),
            ("close-session", self.close_session, "POST"),
            ("logout-session", self.logout_session, "POST"),
            ("send-message", self.send_message, "POST"),
            ("send-file-base64", self.send_file_base64, "POST"),
            ("send-file", self.send_file, "POST"),
            ("download-media", self.download_media, "POST"),
        ):
            routes.append(Route(f"{api}/{path}", self._api(path, handler), methods=[method]))
        routes.append(Route("/healthz", lambda request: JSONResponse({"message": "OK"})))
        return routes

    # ----------------------------------------------------------------------- webhooks

    def _emit(self, session: FakeSession, event: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """Post an event from the webhook thread (fire-and-forget unless awaited)."""
        return asyncio.run_coroutine_threadsafe(self._post(session, event), self._loop)

    async def _post(self, session: FakeSession, event: dict[str, Any]) -> Any:
        payload = {"event": event["event"], "session": session.name, **{k: v for k, v in event.items() if k != "event"}}
        url = session.webhook
        if not url:
            return None  # no webhook: no call, like the real server
        for public, actual in self.proxy.items():
            if url.startswith(public):
                url = actual + url[len(public):]
        if not url.startswith("http://127.0.0.1"):
            self.webhooks.append((payload, "unreachable"))
            return "unreachable"
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        try:
            response = await self._http.post(url, json=payload)
        except httpx.HTTPError as exc:
            self.webhooks.append((payload, type(exc).__name__))
            return type(exc).__name__
        self.webhooks.append((payload, response.status_code))
        return response.status_code

    async def deliver(self, session: str, event: dict[str, Any]) -> Any:
        """From a test: post one event and wait for hookline's answer (its HTTP status)."""
        return await asyncio.wrap_future(self._emit(self.session(session), event))

    # ----------------------------------------------------------------------- the phone side

    async def scan(self, session: str) -> list[Any]:
        """The phone scans the QR code: the session connects and says so."""
        found = self.session(session)
        assert found.status == "QRCODE", f"nothing to scan: session {session} is {found.status}"
        found.status, found.paired, found.qr, found.urlcode = "CONNECTED", True, None, None
        return [await self.deliver(session, {"event": "status-find", "status": status}) for status in ("qrReadSuccess", "inChat")]

    async def drop(self, session: str) -> Any:
        """The phone disconnects the session: sends get 404 until it reconnects."""
        self.session(session).status = "CLOSED"
        return await self.deliver(session, {"event": "status-find", "status": "disconnectedMobile"})

    async def reconnect(self, session: str) -> Any:
        self.session(session).status = "CONNECTED"
        return await self.deliver(session, {"event": "status-find", "status": "inChat"})

    async def receive(self, session: str, payload: dict[str, Any]) -> Any:
        return await self.deliver(session, payload)

    async def ack(self, session: str, message_id: str, ack: int) -> Any:
        """``onack`` as the server posts it: the raw message model, ``id`` as an object."""
        payload = json.loads((FIXTURES / "onack.json").read_text())
        remote = message_id.split("_")[1]
        payload.update(id={"fromMe": True, "remote": remote, "id": message_id.split("_")[2], "_serialized": message_id},
                       ack=ack, to=remote, t=int(time.time()), **{"from": f"{self.own_phone}@c.us"})
        return await self.deliver(session, payload)

    # ----------------------------------------------------------------------- teardown

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._http is not None:
                await self._http.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def text_message(text: str, sender: str = "5511900000001@c.us", message_id: str | None = None) -> dict[str, Any]:
    """An ``onmessage`` text from ``sender``, shaped like the recorded fixture."""
    payload = copy.deepcopy(json.loads((FIXTURES / "onmessage_text.json").read_text()))
    payload.update(id=message_id or f"false_{sender}_3A{secrets.token_hex(9).upper()}", body=text, content=text,
                   chatId=sender, **{"from": sender})
    payload["sender"]["id"] = sender
    return payload


@contextmanager
def running_fake_wppconnect(**options: Any) -> Iterator[FakeWppconnect]:
    fake = FakeWppconnect(**options)
    try:
        with fake.running():
            yield fake
    finally:
        fake.stop()
