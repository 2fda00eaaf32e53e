"""Every bundled provider, and the recording provider the core's tests use, passes the provider
conformance suite of core.testing, on SQLite and PostgreSQL, with the fakes and the recorded
fixtures their own tests use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
from starlette.responses import JSONResponse

import plugins.meta as meta
import plugins.twilio as twilio
import plugins.wppconnect as wppconnect
from core import Number
from core.testing import Delivery, ErrorAnswer, ProviderConformance, Sample, form_delivery, json_delivery
from plugins.meta.signature import SIGNATURE_HEADER as META_SIGNATURE, sign as meta_sign
from plugins.twilio.signature import SIGNATURE_HEADER as TWILIO_SIGNATURE, expected_signature
from tests.conformance_recorder import RecorderConformance
from tests.fake_meta import FakeMeta, StoredMedia
from tests.fake_twilio import FakeTwilio
from tests.fake_wppconnect import FakeWppconnect, text_message

FIXTURES = Path(__file__).resolve().parent / "fixtures"


class TestRecorderConformance(RecorderConformance):
    """The recording provider: what tests/recording_provider.py promises authors it shows."""


# --------------------------------------------------------------------------- Twilio

TWILIO_ACCOUNTS = ("AC5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5", "AC" + "7" * 32)
TWILIO_TOKENS = ("twilio-conformance-token-a", "twilio-conformance-token-b")
TWILIO_MEDIA_SID = "ME1a2b3c4d5e6f708192a3b4c5d6e7f8a9"


def _twilio_form(name: str) -> list[tuple[str, str]]:
    text = (FIXTURES / "twilio" / name).read_text().strip()
    return [(key, value) for key, values in parse_qs(text, keep_blank_values=True).items() for value in values]


def _replaced(form: list[tuple[str, str]], **values: str) -> list[tuple[str, str]]:
    kept = [(key, value) for key, value in form if key not in values]
    return kept + list(values.items())


class TestTwilioConformance(ProviderConformance):
    plugin = twilio
    provider = "twilio"
    phones = ("+14155238886", "+14155238887")

    @pytest.fixture(scope="class")  # one fake for the class: every check marks its own requests
    @classmethod
    def fake(cls) -> Iterator[FakeTwilio]:
        fake = FakeTwilio(dict(zip(TWILIO_ACCOUNTS, TWILIO_TOKENS)))
        fake.media[TWILIO_MEDIA_SID] = (b"\xff\xd8 jpeg bytes", "image/jpeg")
        with fake.running():
            yield fake

    def number_settings(self, fake: FakeTwilio, index: int) -> dict[str, Any]:
        return {"account_sid": TWILIO_ACCOUNTS[index], "auth_token": TWILIO_TOKENS[index], "api_base_url": fake.url}

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        form = parse_qs(delivery.body.decode("utf-8"), keep_blank_values=True)
        token = number.settings.auth_token.get_secret_value()
        return delivery.with_headers(**{TWILIO_SIGNATURE: expected_signature(self.public_url + delivery.path, form, token)})

    def _ours(self, number: Number, form: list[tuple[str, str]], **values: str) -> list[tuple[str, str]]:
        return _replaced(form, AccountSid=number.settings.account_sid, **values)

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        sid = f"SM{index:032x}"
        form = self._ours(number, _twilio_form("inbound_text.form"), MessageSid=sid, SmsSid=sid, SmsMessageSid=sid,
                          Body=text, To=f"whatsapp:{number.phone}", From=f"whatsapp:{self.customer}")
        return form_delivery("/webhooks/whatsapp/twilio", form)

    def status_webhook(self, number: Number, external_id: str, status: str) -> Delivery:
        form = self._ours(number, _twilio_form("status_delivered.form"), MessageSid=external_id, SmsSid=external_id,
                          MessageStatus=status, SmsStatus=status, EventType=status.upper(), From=f"whatsapp:{number.phone}")
        return form_delivery("/webhooks/whatsapp/twilio/status", form)

    def samples(self, number: Number) -> Sequence[Sample]:
        api = number.settings.api_base_url
        media_url = f"{api}/2010-04-01/Accounts/{number.settings.account_sid}/Messages/MM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b/Media/{TWILIO_MEDIA_SID}"
        return [
            Sample("inbound_text.form", form_delivery("/webhooks/whatsapp/twilio", self._ours(number, _twilio_form("inbound_text.form"))), messages=1),
            Sample("inbound_media.form", form_delivery("/webhooks/whatsapp/twilio",
                                                       self._ours(number, _twilio_form("inbound_media.form"), MediaUrl0=media_url)), messages=1),
            Sample("status_delivered.form", form_delivery("/webhooks/whatsapp/twilio/status",
                                                          self._ours(number, _twilio_form("status_delivered.form"))), statuses=1),
            Sample("status_failed.form", form_delivery("/webhooks/whatsapp/twilio/status",
                                                       self._ours(number, _twilio_form("status_failed.form"))), statuses=1),
        ]

    def permanent_error(self) -> ErrorAnswer:
        status, body = FakeTwilio.error(21211, "The 'To' number +1555 is not a valid phone number.")
        return ErrorAnswer(JSONResponse(body, status), code="21211")

    def transient_error(self) -> ErrorAnswer:
        status, body = FakeTwilio.error(20500, "Internal Server Error", 503)
        return ErrorAnswer(JSONResponse(body, status))

    def rate_limit(self) -> ErrorAnswer:
        # Twilio's SDK does not hand hookline the Retry-After header: retried with backoff.
        status, body = FakeTwilio.error(20429, "Too Many Requests", 429)
        return ErrorAnswer(JSONResponse(body, status))


# --------------------------------------------------------------------------- Meta

META_PNIDS = ("109876543210987", "109876543210999")  # the first is the fixtures' phone_number_id
META_TOKENS = ("meta-conformance-token-a", "meta-conformance-token-b")
META_SECRET = "meta-conformance-app-secret"
META_FIXTURE_MEDIA = "1234567890123456"


def _meta_batch(pnid: str, messages: list[dict[str, Any]] = (), statuses: list[dict[str, Any]] = ()) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550100001", "phone_number_id": pnid}}
    if messages:
        value["contacts"] = [{"profile": {"name": "Ana Souza"}, "wa_id": m["from"]} for m in messages]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return {"object": "whatsapp_business_account", "entry": [{"id": "102345678901234", "changes": [{"field": "messages", "value": value}]}]}


class TestMetaConformance(ProviderConformance):
    plugin = meta
    provider = "meta"
    plugin_settings = {"mark_read": False}  # read receipts are tested in tests/test_meta.py

    @pytest.fixture(scope="class")
    @classmethod
    def fake(cls) -> Iterator[FakeMeta]:
        fake = FakeMeta(dict(zip(META_PNIDS, META_TOKENS)))
        fake.media[META_FIXTURE_MEDIA] = StoredMedia(b"\xff\xd8 jpeg bytes", "image/jpeg")
        with fake.running():
            yield fake

    def number_settings(self, fake: FakeMeta, index: int) -> dict[str, Any]:
        return {"phone_number_id": META_PNIDS[index], "access_token": META_TOKENS[index], "app_secret": META_SECRET,
                "verify_token": f"meta-conformance-verify-{index}", "api_base_url": fake.url}

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        return delivery.with_headers(**{META_SIGNATURE: meta_sign(delivery.body, number.settings.app_secret.get_secret_value())})

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        message = {"from": self.customer.lstrip("+"), "id": f"wamid.conformance{index:06d}", "timestamp": "1767225600",
                   "type": "text", "text": {"body": text}}
        return json_delivery("/webhooks/whatsapp/meta", _meta_batch(number.settings.phone_number_id, [message]))

    def status_webhook(self, number: Number, external_id: str, status: str) -> Delivery:
        update = {"id": external_id, "status": status, "timestamp": "1767225700", "recipient_id": self.customer.lstrip("+")}
        return json_delivery("/webhooks/whatsapp/meta", _meta_batch(number.settings.phone_number_id, statuses=[update]))

    def samples(self, number: Number) -> Sequence[Sample]:
        def recorded(name: str) -> Delivery:  # the exact bytes Meta sent, "\/" escapes and all
            body = (FIXTURES / "meta" / name).read_bytes().replace(META_PNIDS[0].encode(), number.settings.phone_number_id.encode())
            return Delivery("/webhooks/whatsapp/meta", body, {"Content-Type": "application/json"})

        return [
            Sample("inbound_text.json", recorded("inbound_text.json"), messages=1),
            Sample("inbound_image.json", recorded("inbound_image.json"), messages=1),
            Sample("inbound_interactive_button.json", recorded("inbound_interactive_button.json"), messages=1),
            Sample("status_read.json", recorded("status_read.json"), statuses=1),
            Sample("status_failed.json", recorded("status_failed.json"), statuses=1),
        ]

    def permanent_error(self) -> ErrorAnswer:
        status, body = FakeMeta.error(131026, "Message undeliverable", "The recipient is not on WhatsApp")
        return ErrorAnswer(JSONResponse(body, status), code="131026")

    def transient_error(self) -> ErrorAnswer:
        status, body = FakeMeta.error(131000, "Something went wrong", status=500)
        return ErrorAnswer(JSONResponse(body, status))

    def rate_limit(self) -> ErrorAnswer:
        status, body = FakeMeta.error(130429, "Rate limit hit", status=429)
        return ErrorAnswer(JSONResponse(body, status, headers={"Retry-After": "1"}), retry_after=1.0)


# --------------------------------------------------------------------------- WPPConnect

WPP_SECRET_KEY = "THISISMYSECURETOKEN"
WPP_SESSIONS = ("acme", "beta")  # the fixtures' session is "acme"
WPP_WEBHOOK_SECRETS = ("wpp-conformance-secret-" + "a" * 24, "wpp-conformance-secret-" + "b" * 24)
WPP_ACKS = {"sent": 1, "delivered": 2, "read": 3}
WPP_CUSTOMER_JID = "5511900000001@c.us"


class TestWppconnectConformance(ProviderConformance):
    plugin = wppconnect
    provider = "wppconnect"
    phones = ("+5511900000009", "+5511900000008")
    customer = "+5511900000001"
    plugin_settings = {"start_sessions": False, "status_interval_seconds": 0}
    proof_covers_body = False  # WPPConnect signs nothing: the proof is the secret in the URL

    @pytest.fixture(scope="class")
    @classmethod
    def fake(cls) -> Iterator[FakeWppconnect]:
        fake = FakeWppconnect(secret_key=WPP_SECRET_KEY)
        for session in WPP_SESSIONS:
            fake.session(session, status="CONNECTED", paired=True)
        try:
            with fake.running():
                yield fake
        finally:
            fake.stop()

    def number_settings(self, fake: FakeWppconnect, index: int) -> dict[str, Any]:
        return {"server_url": fake.url, "session": WPP_SESSIONS[index], "secret_key": WPP_SECRET_KEY,
                "webhook_secret": WPP_WEBHOOK_SECRETS[index]}

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        return delivery.replace(path=f"{delivery.path}/{quote(number.settings.webhook_secret.get_secret_value())}")

    def _path(self, number: Number) -> str:
        return f"/webhooks/whatsapp/wppconnect/{number.id}"

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        payload = text_message(text, WPP_CUSTOMER_JID, f"false_{WPP_CUSTOMER_JID}_3A{index:018X}")
        payload["session"] = number.settings.session
        return json_delivery(self._path(number), payload)

    def status_webhook(self, number: Number, external_id: str, status: str) -> Delivery:
        payload = json.loads((FIXTURES / "wppconnect" / "onack.json").read_text())
        _, remote, message_id = external_id.split("_", 2)
        payload.update(session=number.settings.session, ack=WPP_ACKS[status], to=remote,
                       id={"fromMe": True, "remote": remote, "id": message_id, "_serialized": external_id})
        return json_delivery(self._path(number), payload)

    def samples(self, number: Number) -> Sequence[Sample]:
        def recorded(name: str) -> Delivery:
            body = (FIXTURES / "wppconnect" / name).read_bytes()
            body = re.sub(rb'"session": "acme"', f'"session": "{number.settings.session}"'.encode(), body)
            return Delivery(self._path(number), body, {"Content-Type": "application/json"})

        return [
            Sample("onmessage_text.json", recorded("onmessage_text.json"), messages=1),
            Sample("onmessage_image.json", recorded("onmessage_image.json"), messages=1),
            Sample("onack.json", recorded("onack.json"), statuses=1),
        ]

    def permanent_error(self) -> ErrorAnswer:
        body = {"response": None, "status": "Connected", "message": "O número 5511900000001 não existe."}
        return ErrorAnswer(JSONResponse(body, 400), code="unknown_number")

    def transient_error(self) -> ErrorAnswer:
        body = {"status": "Error", "message": "Erro ao enviar a mensagem.", "error": {"message": "Evaluation failed"}}
        return ErrorAnswer(JSONResponse(body, 500))
