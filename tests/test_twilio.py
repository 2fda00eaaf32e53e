"""The Twilio provider through the whole app: signed webhooks, TwiML, sends to a fake Twilio API
over real HTTP (the SDK unpatched), status callbacks, media, and the simulator."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest

import plugins.twilio as twilio
from core import Media, Template
from core.storage.models import Message, StatusEvent
from plugins.twilio.signature import expected_signature
from tests.fake_twilio import FakeTwilio, running_fake_twilio
from tests.helpers import Inbox, eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

ACCOUNT = "AC5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5"
TOKEN = "twilio-test-auth-token"
SERVICE = "MG0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d"
PUBLIC = "https://hookline.example.com"
INBOUND = "/webhooks/whatsapp/twilio"
STATUS = "/webhooks/whatsapp/twilio/status"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def fixture_form(name: str) -> dict[str, list[str]]:
    return parse_qs((FIXTURES / name).read_text().strip(), keep_blank_values=True)


def encode(form: dict[str, list[str]]) -> bytes:
    return urlencode([(name, value) for name, values in form.items() for value in values]).encode()


def signed(form: dict[str, list[str]], path: str = INBOUND, token: str = TOKEN, url: str = PUBLIC) -> tuple[bytes, dict[str, str]]:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": expected_signature(url + path, form, token),
    }
    return encode(form), headers


def number(api_url: str, *, phone: str = "+14155238886", service: str | None = None, id: str = "tw") -> dict:
    settings = {"account_sid": ACCOUNT, "auth_token": TOKEN, "api_base_url": api_url}
    if service:
        settings["messaging_service_sid"] = service
    return {"id": id, "provider": "twilio", "phone": phone, "settings": settings}



def twilio_runtime(tmp_path: Path, database_url: str, fake: FakeTwilio | None, inbox: Inbox, numbers: list[dict] | None = None):
    api = fake.url if fake else "http://127.0.0.1:9"
    config = write_config(tmp_path, database_url, enabled=["twilio", "p0"], numbers=numbers or [number(api)])
    return runtime_for(config, inbox, twilio=twilio)


async def test_signed_inbound_is_stored_once_and_answered_with_twiml(tmp_path, database_url):
    inbox = Inbox()
    async with started(twilio_runtime(tmp_path, database_url, None, inbox)) as client:
        form = fixture_form("inbound_text.form")
        body, headers = signed(form)
        for _ in range(3):  # Twilio retries on connection failures: the same MessageSid again
            response = await client.post(INBOUND, content=body, headers=headers)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/xml")
            assert response.text == EMPTY_TWIML
        message = await Message.get(external_id=form["MessageSid"][0]).prefetch_related("conversation__contact")
        assert message.text == "Hi! Is my order #1234 on its way?"
        assert message.conversation.contact.address == "+15550100123"
        assert message.conversation.contact.name == "Ana Souza"
        assert message.conversation.contact.wa_id == "15550100123"
        assert message.payload["ChannelMetadata"]  # unknown parameters are kept, not rejected
        assert await Message.all().count() == 1
        await eventually(lambda: [m.external_id for m in inbox.inbound] == [form["MessageSid"][0]])


@pytest.mark.parametrize("tamper", ["body", "token", "http", "port", "none"])
async def test_unproven_webhooks_are_403_and_store_nothing(tmp_path, database_url, tamper):
    async with started(twilio_runtime(tmp_path, database_url, None, Inbox())) as client:
        form = fixture_form("inbound_text.form")
        body, headers = signed(form, token="wrong-token" if tamper == "token" else TOKEN,
                               url={"http": "http://hookline.example.com", "port": "https://hookline.example.com:8443"}.get(tamper, PUBLIC))
        if tamper == "body":
            body = body.replace(b"1234", b"9999")
        if tamper == "none":
            del headers["X-Twilio-Signature"]
        response = await client.post(INBOUND, content=body, headers=headers)
        assert response.status_code == 403
        assert await Message.all().count() == 0


async def test_default_port_form_of_the_url_is_accepted(tmp_path, database_url):
    async with started(twilio_runtime(tmp_path, database_url, None, Inbox())) as client:
        body, headers = signed(fixture_form("inbound_text.form"), url="https://hookline.example.com:443")
        assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 200


async def test_number_in_a_messaging_service_pool_is_found_by_service_sid(tmp_path, database_url):
    numbers = [number("http://127.0.0.1:9", phone="+14155550000", service=SERVICE, id="pool")]
    async with started(twilio_runtime(tmp_path, database_url, None, Inbox(), numbers)) as client:
        form = fixture_form("inbound_text.form")  # To is a pool sender we did not configure
        body, headers = signed(form)
        assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 200
        message = await Message.get(external_id=form["MessageSid"][0]).prefetch_related("conversation")
        assert message.conversation.number_id == "pool"
        form["To"] = ["whatsapp:+19999999999"]
        form["MessagingServiceSid"] = ["MG" + "f" * 32]
        form["MessageSid"] = ["SM" + "e" * 32]
        body, headers = signed(form)
        assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 404


async def test_media_inbound_is_downloaded_with_basic_auth_into_the_store(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        fake.media["ME0001"] = (b"\xff\xd8 jpeg bytes", "image/jpeg")
        async with started(twilio_runtime(tmp_path, database_url, fake, inbox)) as client:
            form = fixture_form("inbound_media.form")
            form["MediaUrl0"] = [f"{fake.url}/2010-04-01/Accounts/{ACCOUNT}/Messages/{form['MessageSid'][0]}/Media/ME0001"]
            body, headers = signed(form)
            assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 200
            await eventually(lambda: len(inbox.inbound) == 1)
            item = inbox.inbound[0].media[0]
            assert item["content_type"] == "image/jpeg"
            assert started and (tmp_path / "data" / "media" / item["key"]).read_bytes() == b"\xff\xd8 jpeg bytes"
            api_request, cdn_request = fake.media_requests
            assert api_request[1] == (ACCOUNT, TOKEN)
            assert cdn_request[0].startswith("/cdn/") and cdn_request[1] is None  # no credentials off-origin


async def _send_and_wait(runtime, fake: FakeTwilio, kind: str = "text") -> Message:
    host = runtime.host
    conversation = await host.conversation_with("tw", "+15550100123")
    if kind == "text":
        message = await host.send_text(conversation, "Olá, ¿cómo está?")
    elif kind == "media":
        key = host.media.save(b"%PDF-1.4 test", "application/pdf", "acuerdo.pdf")
        message = await host.send_media(conversation, Media(content_type="application/pdf", key=key, filename="acuerdo.pdf"), caption="Su acuerdo")
    else:
        message = await host.send_template(conversation, Template("HX" + "a" * 32, variables={"1": "Ana", "2": "10:00"}))

    async def done() -> bool:
        current = await Message.get(id=message.id)
        return current.status.value not in ("pending",)

    await eventually(done)
    return await Message.get(id=message.id)


async def test_sending_text_media_and_template_reach_twilio_with_basic_auth(tmp_path, database_url):
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, Inbox())
        async with started(runtime):
            text = await _send_and_wait(runtime, fake, "text")
            media = await _send_and_wait(runtime, fake, "media")
            template = await _send_and_wait(runtime, fake, "template")
        first, second, third = fake.sent
        assert all(request.auth == (ACCOUNT, TOKEN) for request in fake.sent)
        assert first.one("To") == "whatsapp:+15550100123" and first.one("From") == "whatsapp:+14155238886"
        assert first.one("Body") == "Olá, ¿cómo está?"
        assert first.one("StatusCallback") == f"{PUBLIC}{STATUS}"
        media_url = second.one("MediaUrl")
        assert media_url.startswith(f"{PUBLIC}/media/") and "signature=" in media_url and "expires=" in media_url
        assert second.one("Body") == "Su acuerdo"
        assert third.one("ContentSid") == "HX" + "a" * 32
        assert third.one("ContentVariables") == '{"1": "Ana", "2": "10:00"}'
        assert third.one("Body") is None
        for message in (text, media, template):
            assert message.status.value == "queued" and message.external_id.startswith("SM")


async def test_rate_limited_send_is_retried_and_a_bad_number_fails_with_the_reason(tmp_path, database_url):
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, Inbox())
        async with started(runtime):
            fake.answer(FakeTwilio.error(20429, "Too Many Requests", 429))
            retried = await _send_and_wait(runtime, fake)
            assert retried.status.value == "queued" and len(fake.sent) == 2
            fake.answer(FakeTwilio.error(21211, "The 'To' number +1555 is not a valid phone number."))
            failed = await _send_and_wait(runtime, fake)
            assert failed.status.value == "failed"
            assert failed.error_code == "21211"
            assert "not a valid phone number" in failed.error_text
            fake.answer(FakeTwilio.error(63016, "Failed to send freeform message because you are outside the allowed window."))
            window = await _send_and_wait(runtime, fake)
            assert window.error_code == "63016" and "template" in window.error_text.lower()
        assert len(fake.sent) == 4


async def test_status_callbacks_out_of_order_end_at_the_highest(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, inbox)
        async with started(runtime) as client:
            message = await _send_and_wait(runtime, fake)
            for status in ("read", "delivered", "sent", "read"):
                form = fixture_form("status_delivered.form")
                form.update(MessageSid=[message.external_id], SmsSid=[message.external_id], MessageStatus=[status], SmsStatus=[status])
                body, headers = signed(form, STATUS)
                response = await client.post(STATUS, content=body, headers=headers)
                assert response.status_code == 200 and response.text == EMPTY_TWIML
            assert (await Message.get(id=message.id)).status.value == "read"
            assert await StatusEvent.filter(message_id=message.id, raw_status__in=["read", "delivered", "sent"]).count() == 4
            await eventually(lambda: inbox.statuses == ["queued", "read"])


async def test_failed_status_keeps_code_and_text(tmp_path, database_url):
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, Inbox())
        async with started(runtime) as client:
            message = await _send_and_wait(runtime, fake)
            form = fixture_form("status_failed.form")
            form.update(MessageSid=[message.external_id], SmsSid=[message.external_id])
            body, headers = signed(form, STATUS)
            assert (await client.post(STATUS, content=body, headers=headers)).status_code == 200
            failed = await Message.get(id=message.id)
            assert failed.status.value == "failed"
            assert failed.error_code == "63016"
            assert failed.error_text


async def test_status_can_be_fetched_on_demand(tmp_path, database_url):
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, Inbox())
        async with started(runtime):
            message = await _send_and_wait(runtime, fake)
            fake.statuses[message.external_id]["status"] = "delivered"
            refreshed = await runtime.host.refresh_status(message.id)
            assert refreshed.status.value == "delivered"
            assert (await Message.get(id=message.id)).status.value == "delivered"


async def test_simulated_webhook_is_accepted_by_the_server(tmp_path, database_url):
    runtime = twilio_runtime(tmp_path, database_url, None, Inbox())
    async with started(runtime) as client:
        simulated = await runtime.dispatch.provider("twilio").simulate_webhook(runtime.host, runtime.host.number("tw"), "+15550100123", "hola", PUBLIC)
        response = await client.post(simulated.path, content=simulated.body, headers=simulated.headers)
        assert response.status_code == 200
        message = await Message.get(text="hola").prefetch_related("conversation__contact")
        assert message.conversation.contact.address == "+15550100123"


async def test_the_auth_token_never_reaches_a_log_line(tmp_path, database_url, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    with running_fake_twilio({ACCOUNT: TOKEN}) as fake:
        runtime = twilio_runtime(tmp_path, database_url, fake, Inbox())
        async with started(runtime) as client:
            body, headers = signed(fixture_form("inbound_text.form"))
            assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 200
            body, headers = signed(fixture_form("inbound_text.form"), token="wrong-token")
            assert (await client.post(INBOUND, content=body, headers=headers)).status_code == 403
            await _send_and_wait(runtime, fake)
            fake.answer(FakeTwilio.error(20003, "Authenticate", 401))
            assert (await _send_and_wait(runtime, fake)).status.value == "failed"
    assert "refused 403" in caplog.text and "failed" in caplog.text
    assert TOKEN not in caplog.text
