"""The handover through each real provider plugin against its local fake, on SQLite and
PostgreSQL: a customer message arrives as the provider posts it, an agent transfers the chat to
the bot, the PDF goes out the provider's way (Twilio: fetched from hookline's signed URL; Meta:
uploaded, sent by media id; WPPConnect: a base64 data URI), then the farewell."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest

import plugins.bot_transfer as bot_transfer
import plugins.meta as meta
import plugins.twilio as twilio
import plugins.wppconnect as wppconnect
from core.storage.models import Contact, Message
from tests import test_meta, test_twilio, test_wppconnect
from tests.test_bot_transfer_helpers import flat, outbound, pdf_text
from tests.fake_meta import running_fake_meta
from tests.fake_twilio import running_fake_twilio
from tests.fake_wppconnect import running_fake_wppconnect
from tests.helpers import eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio


async def _transfer_the_only_conversation(host, text: str):
    """The customer's message is stored; hand its conversation to the bot. Returns (conversation, contact)."""
    await eventually(lambda: Message.filter(text=text).exists())
    message = await Message.get(text=text).prefetch_related("conversation")
    assert await host.transfer(message.conversation, "bot", by="agent") is True
    return message.conversation, await Contact.get(id=message.conversation.contact_id)


async def _sent_in_order(conversation_id: int) -> tuple[Message, Message]:
    async def both_accepted() -> bool:
        rows = await outbound(conversation_id)
        return len(rows) == 2 and all(row.external_id for row in rows)
    await eventually(both_accepted)
    pdf, farewell = await outbound(conversation_id)
    assert pdf.kind == "document" and farewell.kind == "text" and farewell.id > pdf.id
    return pdf, farewell


def _assert_summary(data: bytes, contact: Contact, last: str) -> None:
    assert data.startswith(b"%PDF-")
    text = flat(pdf_text(data))
    assert contact.name and contact.name in text and last in text


async def test_twilio_fetches_the_pdf_from_the_signed_url_then_gets_the_farewell(tmp_path, database_url):
    with running_fake_twilio({test_twilio.ACCOUNT: test_twilio.TOKEN}) as fake:
        config = write_config(tmp_path, database_url, enabled=["twilio", "bot_transfer"], numbers=[test_twilio.number(fake.url)])
        runtime = runtime_for(config, twilio=twilio, bot_transfer=bot_transfer)
        async with started(runtime) as client:
            form = test_twilio.fixture_form("inbound_text.form")
            body, headers = test_twilio.signed(form)
            assert (await client.post(test_twilio.INBOUND, content=body, headers=headers)).status_code == 200
            conversation, contact = await _transfer_the_only_conversation(runtime.host, form["Body"][0])
            pdf, farewell = await _sent_in_order(conversation.id)

            first, second = fake.sent
            assert first.one("To") == "whatsapp:+15550100123" and first.one("MediaUrl")
            url = urlsplit(first.one("MediaUrl"))
            assert f"{url.scheme}://{url.netloc}" == test_twilio.PUBLIC and url.path.startswith("/media/")
            assert "signature=" in url.query and "expires=" in url.query
            fetched = await client.get(f"{url.path}?{url.query}")  # what Twilio fetches, from the app itself
            assert fetched.status_code == 200 and fetched.headers["content-type"] == "application/pdf"
            assert fetched.content == runtime.host.media.read(pdf.media[0]["key"])
            assert (await client.get(url.path)).status_code == 404  # unsigned: nothing
            _assert_summary(fetched.content, contact, form["Body"][0])
            assert second.one("Body") == farewell.text and second.one("MediaUrl") is None
            assert (pdf.external_id, farewell.external_id) == tuple(fake.statuses)


async def test_meta_uploads_the_pdf_and_sends_it_by_media_id_then_the_farewell(tmp_path, database_url):
    with running_fake_meta({test_meta.PNID: test_meta.TOKEN}) as fake:
        config = write_config(tmp_path, database_url, enabled=["meta", "bot_transfer"], numbers=[test_meta.number(fake.url)],
                              extra="[plugins.meta]\nmark_read = false\n")
        runtime = runtime_for(config, meta=meta, bot_transfer=bot_transfer)
        async with started(runtime) as client:
            body = test_meta.raw("inbound_text.json")
            assert (await client.post(test_meta.WEBHOOK, content=body, headers=test_meta.signed(body))).status_code == 200
            text = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]
            conversation, contact = await _transfer_the_only_conversation(runtime.host, text)
            pdf, farewell = await _sent_in_order(conversation.id)

            (upload,) = fake.uploads
            filename, data, content_type = upload.file
            assert content_type == "application/pdf" and filename == pdf.media[0]["filename"]
            assert data == runtime.host.media.read(pdf.media[0]["key"])
            _assert_summary(data, contact, text)
            document, goodbye = [request.json for request in fake.sends]
            assert document["type"] == "document" and document["document"]["id"] in fake.media
            assert document["document"]["filename"] == filename
            assert goodbye["type"] == "text" and goodbye["text"]["body"] == farewell.text


async def test_wppconnect_sends_the_pdf_as_a_base64_data_uri_then_the_farewell(tmp_path, database_url):
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        numbers = [test_wppconnect.number(fake.url, webhook_secret=test_wppconnect.WEBHOOK_SECRET)]
        config = write_config(tmp_path, database_url, enabled=["wppconnect", "bot_transfer"], numbers=numbers,
                              extra="[plugins.wppconnect]\nstatus_interval_seconds = 0\nstart_sessions = false\n")
        runtime = runtime_for(config, wppconnect=wppconnect, bot_transfer=bot_transfer)
        async with started(runtime) as client:
            body = test_wppconnect.fixture_bytes("onmessage_text.json")
            url = f"{test_wppconnect.WEBHOOKS}/wpp/{test_wppconnect.WEBHOOK_SECRET}"
            assert (await client.post(url, content=body)).status_code == 200
            text = json.loads(body)["body"]
            conversation, contact = await _transfer_the_only_conversation(runtime.host, text)
            pdf, farewell = await _sent_in_order(conversation.id)

            document, goodbye = fake.sent
            assert document.route == "send-file-base64" and document.mimetype == "application/pdf"
            assert document.body["base64"].startswith("data:application/pdf;base64,")
            data = base64.b64decode(document.body["base64"].partition(",")[2])
            assert data == runtime.host.media.read(pdf.media[0]["key"]) and document.body["filename"] == pdf.media[0]["filename"]
            _assert_summary(data, contact, text)
            assert goodbye.route == "send-message" and goodbye.body["message"] == farewell.text
