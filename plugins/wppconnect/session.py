"""Session lifecycle: webhook secrets, start/status/QR/close/logout, and the state operators see.

One ``Sessions`` per process that talks to WPPConnect (the server, or one CLI command). The server
makes it in ``on_startup``: it loads every number's webhook secret into memory (generating and
storing, sealed, the missing ones) so ``provider_verify`` never touches the database, then starts
the sessions in the background and reads their status every ``status_interval_seconds``.

Connection state is kept per number with ``host.set_number_state`` through a ``StateBook``: API
answers write it directly; webhook events (``qrcode``, ``status-find``, ``closesession``,
``logoutsession``) are parsed synchronously inside the request, so ``note`` records them in memory
and one writer task on the running loop stores the latest state of each number, in order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from typing import Any

from core.types import Number, PairingCode, ProviderError
from plugins.wppconnect.client import WppClient, settings_of
from plugins.wppconnect.errors import SESSION_DOWN, UNAUTHORIZED, UNREACHABLE, api_error
from plugins.wppconnect.parse import (
    CLOSED,
    CONNECTED,
    DISCONNECTED,
    QRCODE,
    server_state,
)
from plugins.wppconnect.parse import UNAUTHORIZED as UNAUTHORIZED_STATE
from plugins.wppconnect.parse import UNREACHABLE as UNREACHABLE_STATE
from plugins.wppconnect.schema import WppconnectSettings

PROVIDER = "wppconnect"
# The sealed value (host.store_number_secret) where earlier versions kept generated secrets.
WEBHOOK_SECRET = "webhook_secret"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

log = logging.getLogger("hookline.wppconnect")


class StateBook:
    """Each number's last known session state, stored where operators see it, latest wins."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.current: dict[str, tuple[str, str | None]] = {}
        self._unsaved: dict[str, tuple[str, str | None]] = {}
        self._writer: asyncio.Task[None] | None = None

    def note(self, number_id: str, state: str, detail: str | None = None) -> None:
        """Record a state now (sync: from a webhook being parsed); stored by a task on the loop."""
        self.current[number_id] = (state, detail)
        self._unsaved.pop(number_id, None)
        self._unsaved[number_id] = (state, detail)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test of parse): memory only
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="hookline-wppconnect-state")

    async def set(self, number_id: str, state: str, detail: str | None = None) -> None:
        """Record a state and wait until it is stored."""
        self.note(number_id, state, detail)
        await self.drain()

    def state(self, number_id: str) -> str | None:
        found = self.current.get(number_id)
        return found[0] if found else None

    async def drain(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        while self._unsaved:
            number_id = next(iter(self._unsaved))
            state, detail = self._unsaved.pop(number_id)
            try:
                await self.host.set_number_state(number_id, state, detail)
            except Exception as exc:  # storage down: the next event or status read writes it again
                log.warning("could not store the state of number %s (%s): %s", number_id, state, exc)


class Sessions:
    """The WPPConnect sessions of one process's numbers."""

    def __init__(self, host: Any, client: WppClient | None = None) -> None:
        self.host = host
        self.client = client or WppClient()
        self.book = StateBook(host)
        self.secrets: dict[str, str] = {}
        self._watcher: asyncio.Task[None] | None = None

    @property
    def numbers(self) -> list[Number]:
        return self.host.numbers_of(PROVIDER)

    # ----------------------------------------------------------------------- webhook secrets

    async def load_secrets(self) -> None:
        for number in self.numbers:
            await self.webhook_secret(number)

    async def webhook_secret(self, number: Number) -> str:
        """The configured ``webhook_secret``, else one stored by an earlier hookline (kept so its
        sessions' URLs stay valid), else the one derived from hookline's secret key."""
        known = self.secrets.get(number.id)
        if known is not None:
            return known
        configured = settings_of(number).webhook_secret
        if configured is not None:
            secret = configured.get_secret_value()
        else:
            secret = await self.host.number_secret(number.id, WEBHOOK_SECRET) or derived_secret(self.host.secret_key.value, number.id)
        self.secrets[number.id] = secret
        return secret

    async def webhook_url(self, number: Number) -> str:
        return self.host.webhook_url(PROVIDER, f"/{number.id}/{await self.webhook_secret(number)}")

    # ----------------------------------------------------------------------- lifecycle calls

    async def start(self, number: Number) -> str:
        """Start (or re-attach to) the session with our webhook; answers its state."""
        body = await self._call(number, "POST", "start-session", {"webhook": await self.webhook_url(number), "waitQrCode": False})
        state = server_state(body.get("status") if isinstance(body, dict) else None)
        if state == CLOSED:  # a session that was not running answers CLOSED while it starts
            state = "INITIALIZING"
        await self.book.set(number.id, state, _detail(state))
        return state

    async def status(self, number: Number) -> str:
        body = await self._call(number, "GET", "status-session")
        state = server_state(body.get("status") if isinstance(body, dict) else None)
        await self.book.set(number.id, state, _detail(state, never_started=isinstance(body, dict) and body.get("status") is None))
        return state

    async def qr(self, number: Number) -> bytes | str:
        """The QR code to scan (PNG bytes) while pairing, else the server's explanation."""
        response = await self._request(number, "GET", "qrcode-session")
        if response.is_success and response.content.startswith(PNG_SIGNATURE):
            return response.content
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            raise api_error(response.status_code, body, settings_of(number).session)
        body = body if isinstance(body, dict) else {}
        if body.get("status") is not None:  # {"status": "CONNECTED", "message": "QRCode is not available..."}
            state = server_state(body["status"])
            await self.book.set(number.id, state, _detail(state))
        message = body.get("message")
        return message if isinstance(message, str) else "no QR code to show"

    async def pairing_code(self, number: Number) -> PairingCode:
        """The QR code to scan; a session that is not running is started, so a code follows."""
        found = await self.qr(number)
        if isinstance(found, bytes):
            return PairingCode(found)
        if self.book.state(number.id) in (None, CLOSED):
            await self.start(number)
            return PairingCode(None, "the session is starting: the QR code follows in a few seconds")
        return PairingCode(None, found)

    async def close(self, number: Number) -> None:
        await self._call(number, "POST", "close-session")
        await self.book.set(number.id, CLOSED, "closed by hookline")

    async def logout(self, number: Number) -> None:
        await self._call(number, "POST", "logout-session")
        await self.book.set(number.id, CLOSED, "logged out of WhatsApp: start the session and scan a new QR code")

    async def _request(self, number: Number, method: str, route: str, payload: dict[str, Any] | None = None):
        try:
            response = await self.client.request(number, method, route, payload)
        except ProviderError as exc:
            await self.failed(number, exc)
            raise
        if response.status_code == 401:
            error = api_error(401, None, settings_of(number).session)
            await self.failed(number, error)
            raise error
        return response

    async def _call(self, number: Number, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        response = await self._request(number, method, route, payload)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success:
            error = api_error(response.status_code, body, settings_of(number).session)
            await self.failed(number, error)
            raise error
        return body

    # ----------------------------------------------------------------------- what sends learn

    async def failed(self, number: Number, error: ProviderError) -> None:
        """A call failed: a session that is down, a token refused or a server away is news."""
        state = {SESSION_DOWN: DISCONNECTED, UNAUTHORIZED: UNAUTHORIZED_STATE, UNREACHABLE: UNREACHABLE_STATE}.get(error.code or "")
        if state is not None:
            await self.book.set(number.id, state, error.message)

    async def sent(self, number: Number) -> None:
        """A send went through: the session is connected, whatever we believed."""
        if self.book.state(number.id) != CONNECTED:
            await self.book.set(number.id, CONNECTED)

    # ----------------------------------------------------------------------- the server's own loop

    def watch(self, settings: WppconnectSettings) -> None:
        """In the background: start (or read) every session, then read their status regularly."""
        self._watcher = asyncio.get_running_loop().create_task(self._watch(settings), name="hookline-wppconnect-watch")

    async def _watch(self, settings: WppconnectSettings) -> None:
        first = self.start if settings.start_sessions else self.status
        await asyncio.gather(*(self._quietly(first, number) for number in self.numbers))
        while settings.status_interval_seconds > 0:
            await asyncio.sleep(settings.status_interval_seconds)
            await asyncio.gather(*(self._quietly(self.status, number) for number in self.numbers))

    async def _quietly(self, action: Any, number: Number) -> None:
        try:
            await action(number)
        except ProviderError as exc:
            log.warning("WPPConnect session of number %s: %s", number.id, exc.message)
        except Exception:
            log.exception("WPPConnect session of number %s", number.id)

    async def close_all(self) -> None:
        """Stop watching, store the last states, close the HTTP client."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.book.drain()
        await self.client.close()


def derived_secret(secret_key: bytes, number_id: str) -> str:
    """A number's webhook secret when none is configured: a MAC of its id under hookline's secret
    key. Every process and instance derives the same one with nothing stored — a number added in
    one process is proven in all the others at once — and nobody without the key can guess it."""
    mac = hmac.new(secret_key, f"hookline wppconnect webhook {number_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _detail(state: str, never_started: bool = False) -> str | None:
    if state == QRCODE:
        return "scan the QR code (hookline wppconnect qr)"
    if state == CLOSED:
        return "never started: hookline wppconnect start" if never_started else "not running: hookline wppconnect start"
    return None
