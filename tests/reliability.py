"""What the reliability suite shares (docs/reliability.md): the one line each test reports, an app
run in a background event loop so hypothesis can drive it, and one kit per provider that builds
proven webhooks, a config and a fake API.

Each test of the suite calls `report(line)` once with what it tried and what it kept. The lines
are printed (so `-rA` shows them under the test) and collected: tests/conftest.py writes them all
in a "reliability suite" section of pytest's terminal summary, so a plain `make test` shows them
too. That is the suite's one way of printing.

Hypothesis runs synchronous test functions, and hookline's storage lives in one event loop, so a
property test starts the app in an anyio blocking portal (an event loop in a thread) and calls
into it with `portal.call` for every example: the app starts once per test, not once per example.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

import plugins.meta as meta_plugin
import plugins.twilio as twilio_plugin
import plugins.wppconnect as wppconnect_plugin
from core.runtime import Runtime
from core.storage.models import Message
from plugins.meta.parse import STATUS_MAP as META_STATUSES
from plugins.meta.signature import sign as meta_sign
from plugins.twilio.parse import STATUS_MAP as TWILIO_STATUSES
from plugins.twilio.signature import expected_signature
from plugins.wppconnect.parse import STATUS_MAP as WPP_STATUSES
from tests import recording_provider
from tests.fake_api import running_fake_api
from tests.fake_meta import running_fake_meta
from tests.fake_twilio import running_fake_twilio
from tests.fake_wppconnect import FIXTURES as WPP_FIXTURES
from tests.fake_wppconnect import running_fake_wppconnect, text_message as wpp_text_message
from tests.helpers import SECRET, CheckedClient, eventually, inbound_body, runtime_for, started, write_config
from tests.recording_provider import signed_headers

PUBLIC = "https://hookline.example.com"
PREFIX = "/webhooks/whatsapp"

# --------------------------------------------------------------------------- reporting

LINES: list[str] = []


def report(line: str) -> None:
    """One test's line: printed, and kept for the terminal summary (tests/conftest.py)."""
    LINES.append(line)
    print(line)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.started:.1f} s"


def backend_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


# --------------------------------------------------------------------------- the app in a thread


@contextmanager
def app_in_thread(runtime: Runtime, *, run_workers: bool = True) -> Iterator[tuple[BlockingPortal, CheckedClient]]:
    """The app's lifespan and an in-process client, in an event loop of their own."""
    with start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(started(runtime, run_workers=run_workers)) as client:
            yield portal, client


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Delivery:
    """One webhook request, as the provider would send it."""

    path: str
    body: bytes
    headers: dict[str, str]
    method: str = "POST"

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(self.method, self.path, content=self.body, headers=self.headers)


def _form(text: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(text.strip(), keep_blank_values=True)


def _encode(form: dict[str, list[str]]) -> bytes:
    from urllib.parse import urlencode

    return urlencode([(name, value) for name, values in form.items() for value in values]).encode()


# --------------------------------------------------------------------------- provider kits

TWILIO_ACCOUNT = "AC5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5"
TWILIO_TOKEN = "twilio-test-auth-token"
TWILIO_PHONE = "+14155238886"
META_TOKEN = "meta-test-access-token"
META_SECRET = "meta-test-app-secret"
META_VERIFY = "meta-test-verify-token"
META_PNID = "109876543210987"
WPP_KEY = "THISISMYSECURETOKEN"
WPP_SECRET = "configured-" + "w" * 32
TWILIO_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@dataclass
class Fake:
    """A provider's fake API while it runs: where it listens and what it accepted."""

    url: str
    sent: Callable[[], list[dict[str, Any]]]  # each accepted send as {"to", "text"}
    server: Any = None


class Kit:
    """One provider as the suite drives it: config, proven webhooks, its fake API."""

    name: str
    number_id: str
    plugin: Any
    statuses: Sequence[str]  # raw statuses its webhooks carry (plus one it does not know)
    delivered: str = "delivered"  # its raw word for `delivered`
    extra: str = ""

    def number(self, api_url: str) -> dict[str, Any]:
        raise NotImplementedError

    def fake(self) -> AbstractContextManager[Fake]:
        raise NotImplementedError

    def inbound(self, external_id: str, sender: str, text: str) -> Delivery:
        raise NotImplementedError

    def status(self, external_id: str, raw_status: str) -> Delivery:
        raise NotImplementedError

    def acknowledged(self, response: httpx.Response) -> bool:
        """The provider's success acknowledgement."""
        raise NotImplementedError

    def external_id(self, n: int) -> str:
        """An inbound message id as the provider writes them."""
        raise NotImplementedError

    def config(self, tmp_path: Path, database_url: str, api_url: str = "http://127.0.0.1:9", *,
               workflows: Sequence[str] = ("p0",), **options: Any) -> Path:
        return write_config(tmp_path, database_url, enabled=[self.name, *workflows], numbers=[self.number(api_url)],
                            extra=self.extra, **options)

    def runtime(self, config: Path, *workflows: Any) -> Runtime:
        named = {} if self.name == "recorder" else {self.name: self.plugin}
        return runtime_for(config, *workflows, **named)


class RecorderKit(Kit):
    name, number_id, plugin = "recorder", "n1", recording_provider
    statuses = (*recording_provider.provider_status_map(), "teleported")

    def number(self, api_url: str) -> dict[str, Any]:
        return {"id": "n1", "provider": "recorder", "phone": "+15550000001", "settings": {"secret": SECRET, "api_url": api_url}}

    @contextmanager
    def fake(self) -> Iterator[Fake]:
        with running_fake_api() as api:
            yield Fake(api.url, lambda: [{"to": body["to"], "text": body["text"]} for body in list(api.received)], api)

    def _signed(self, path: str, body: bytes) -> Delivery:
        return Delivery(path, body, signed_headers("n1", SECRET, body))

    def inbound(self, external_id: str, sender: str, text: str) -> Delivery:
        return self._signed(f"{PREFIX}/recorder", inbound_body((external_id, sender, text)))

    def status(self, external_id: str, raw_status: str) -> Delivery:
        return self._signed(f"{PREFIX}/recorder/status", inbound_body(statuses=[{"id": external_id, "status": raw_status}]))

    def acknowledged(self, response: httpx.Response) -> bool:
        return response.status_code == 200 and response.json().get("ok") is True

    def external_id(self, n: int) -> str:
        return f"rec-{n}"


class TwilioKit(Kit):
    name, number_id, plugin = "twilio", "tw", twilio_plugin
    statuses = (*TWILIO_STATUSES, "teleported")

    def number(self, api_url: str) -> dict[str, Any]:
        settings = {"account_sid": TWILIO_ACCOUNT, "auth_token": TWILIO_TOKEN, "api_base_url": api_url}
        return {"id": "tw", "provider": "twilio", "phone": TWILIO_PHONE, "settings": settings}

    @contextmanager
    def fake(self) -> Iterator[Fake]:
        with running_fake_twilio({TWILIO_ACCOUNT: TWILIO_TOKEN}) as api:
            def sent() -> list[dict[str, Any]]:
                return [{"to": request.one("To"), "text": request.one("Body")} for request in list(api.sent)
                        if request.auth == (TWILIO_ACCOUNT, TWILIO_TOKEN)]
            yield Fake(api.url, sent, api)

    def signed_form(self, path: str, form: dict[str, list[str]]) -> Delivery:
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": expected_signature(PUBLIC + path, form, TWILIO_TOKEN)}
        return Delivery(path, _encode(form), headers)

    def inbound(self, external_id: str, sender: str, text: str) -> Delivery:
        form = _form((TWILIO_FIXTURES / "inbound_text.form").read_text())
        form.update(MessageSid=[external_id], SmsSid=[external_id], SmsMessageSid=[external_id], Body=[text],
                    From=[f"whatsapp:{sender}"], WaId=[sender.lstrip("+")])
        return self.signed_form(f"{PREFIX}/twilio", form)

    def status(self, external_id: str, raw_status: str) -> Delivery:
        form = _form((TWILIO_FIXTURES / "status_delivered.form").read_text())
        form.update(MessageSid=[external_id], SmsSid=[external_id], MessageStatus=[raw_status], SmsStatus=[raw_status])
        return self.signed_form(f"{PREFIX}/twilio/status", form)

    def acknowledged(self, response: httpx.Response) -> bool:
        return (response.status_code == 200 and response.text == EMPTY_TWIML
                and response.headers["content-type"].startswith("text/xml"))

    def external_id(self, n: int) -> str:
        return f"SM{n:032x}"


class MetaKit(Kit):
    name, number_id, plugin = "meta", "m1", meta_plugin
    statuses = (*META_STATUSES, "teleported")

    def number(self, api_url: str) -> dict[str, Any]:
        return {"id": "m1", "provider": "meta", "phone": "+15550100001", "settings": {
            "phone_number_id": META_PNID, "access_token": META_TOKEN, "app_secret": META_SECRET,
            "verify_token": META_VERIFY, "api_base_url": api_url}}

    @contextmanager
    def fake(self) -> Iterator[Fake]:
        with running_fake_meta({META_PNID: META_TOKEN}) as api:
            def sent() -> list[dict[str, Any]]:
                return [{"to": request.json.get("to"), "text": (request.json.get("text") or {}).get("body")}
                        for request in list(api.sends) if request.token == META_TOKEN]
            yield Fake(api.url, sent, api)

    @staticmethod
    def batch(value: dict[str, Any]) -> bytes:
        """A webhook body as Meta writes it: compact, with "/" escaped as "\\/"."""
        body = {"object": "whatsapp_business_account",
                "entry": [{"id": "102345678901234", "changes": [{"field": "messages", "value": value}]}]}
        return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()

    @staticmethod
    def value(**parts: Any) -> dict[str, Any]:
        return {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100001", "phone_number_id": META_PNID}, **parts}

    def signed(self, body: bytes) -> Delivery:
        return Delivery(f"{PREFIX}/meta", body, {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sign(body, META_SECRET)})

    def inbound(self, external_id: str, sender: str, text: str) -> Delivery:
        digits = sender.lstrip("+")
        message = {"from": digits, "id": external_id, "timestamp": "1767225600", "type": "text", "text": {"body": text}}
        contacts = [{"profile": {"name": "Ana Souza"}, "wa_id": digits}]
        return self.signed(self.batch(self.value(contacts=contacts, messages=[message])))

    def status(self, external_id: str, raw_status: str) -> Delivery:
        status = {"id": external_id, "status": raw_status, "timestamp": "1767225700", "recipient_id": "15550100123"}
        return self.signed(self.batch(self.value(statuses=[status])))

    def acknowledged(self, response: httpx.Response) -> bool:
        return response.status_code == 200 and response.text == "ok"

    def external_id(self, n: int) -> str:
        return f"wamid.HBgLMTU1NTAxMDAxMjMVAgASGBQz{n:012d}"


class WppconnectKit(Kit):
    name, number_id, plugin = "wppconnect", "wpp", wppconnect_plugin
    statuses = (*WPP_STATUSES, "7")
    delivered = "2"
    extra = "[plugins.wppconnect]\nstatus_interval_seconds = 0\nstart_sessions = false\n"

    def number(self, api_url: str) -> dict[str, Any]:
        # A paired session, sending as fast as the provider's cap allows (the default is 1/s).
        return {"id": "wpp", "provider": "wppconnect", "phone": "+5511900000009",
                "settings": {"server_url": api_url, "session": "acme", "secret_key": WPP_KEY, "webhook_secret": WPP_SECRET},
                "rate_limit": {"messages": 20, "per_seconds": 1, "burst": 20}}

    @contextmanager
    def fake(self) -> Iterator[Fake]:
        with running_fake_wppconnect(secret_key=WPP_KEY) as api:
            api.session("acme", status="CONNECTED", paired=True)

            def sent() -> list[dict[str, Any]]:
                return [{"to": "+" + item.to.split("@")[0], "text": item.body.get("message")} for item in list(api.sent)]
            yield Fake(api.url, sent, api)

    def posted(self, payload: Any) -> Delivery:
        return Delivery(f"{PREFIX}/wppconnect/wpp/{WPP_SECRET}", json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def inbound(self, external_id: str, sender: str, text: str) -> Delivery:
        chat = f"{sender.lstrip('+')}@c.us"
        return self.posted(wpp_text_message(text, sender=chat, message_id=f"false_{chat}_{external_id}"))

    def status(self, external_id: str, raw_status: str) -> Delivery:
        """`onack` as the server posts it (tests/fake_wppconnect.py `ack`), for a sent message id."""
        payload = json.loads((WPP_FIXTURES / "onack.json").read_text())
        _, remote, short = external_id.split("_", 2)
        payload.update(id={"fromMe": True, "remote": remote, "id": short, "_serialized": external_id},
                       ack=int(raw_status), to=remote, t=int(time.time()), **{"from": "5511900000009@c.us"})
        return self.posted(payload)

    def acknowledged(self, response: httpx.Response) -> bool:
        return response.status_code == 200 and response.json() == {"received": True}

    def external_id(self, n: int) -> str:
        return f"3A{n:018X}"


KITS: dict[str, Kit] = {kit.name: kit for kit in (RecorderKit(), TwilioKit(), MetaKit(), WppconnectKit())}


# --------------------------------------------------------------------------- sending


async def sent_message(runtime: Runtime, number_id: str, address: str, text: str, timeout: float = 10) -> Message:
    """A text the provider's fake accepted: stored with the provider's id."""
    conversation = await runtime.host.conversation_with(number_id, address)
    message = await runtime.host.send_text(conversation, text)

    async def has_id() -> bool:
        return (await Message.get(id=message.id)).external_id is not None

    await eventually(has_id, timeout=timeout)
    return await Message.get(id=message.id)


__all__ = [
    "KITS", "LINES", "PUBLIC", "Delivery", "Fake", "Kit", "Stopwatch", "app_in_thread", "backend_of", "report",
    "sent_message",
]
