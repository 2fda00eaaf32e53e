"""WPPConnect wire formats without a server: every shared fixture, each message kind, the filters,
session events, addresses, the ack map and the error mapping (PROTOCOLS.md section 3)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import DeliveryStatus, MalformedWebhook
from plugins.wppconnect.client import data_uri, filename_for, recipient, send_result
from plugins.wppconnect.errors import api_error
from plugins.wppconnect.parse import STATUS_MAP, parse_event, sample_message, server_state, session_event

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wppconnect"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def parse(payload: dict, ignore_groups: bool = True):
    return parse_event(payload, "wpp", "acme", ignore_groups)


def one_message(payload: dict, ignore_groups: bool = True):
    (message,) = parse(payload, ignore_groups).webhook.messages
    return message


# --------------------------------------------------------------------------- the shared fixtures


def test_onmessage_text_fixture():
    message = one_message(fixture("onmessage_text.json"))
    assert message.number_id == "wpp"
    assert message.external_id == "false_5511900000001@c.us_3A1F2E3D4C5B6A7980A1"
    assert (message.contact.address, message.contact.name, message.contact.wa_id) == ("+5511900000001", "Ana Souza", "5511900000001")
    assert (message.kind, message.text, message.media) == ("text", "Oi! Meu pedido 1234 já saiu?", [])
    assert message.timestamp == datetime(2026, 1, 1, tzinfo=UTC)
    assert message.raw["kicNotified"] is False  # unknown fields are kept


def test_onmessage_image_fixture_decodes_the_file_out_of_the_text_and_the_payload():
    payload = fixture("onmessage_image.json")
    message = one_message(payload)
    assert message.kind == "image"
    assert message.text == "Foto da caixa amassada"  # the caption, never the base64
    (media,) = message.media
    assert media.content_type == "image/jpeg"
    assert media.data == base64.b64decode(payload["body"])
    assert media.data.startswith(b"\xff\xd8") and media.data.endswith(b"\xff\xd9")  # a whole JPEG
    assert payload["body"] not in json.dumps(message.raw)
    assert message.raw["mimetype"] == "image/jpeg"


def test_onack_fixture_is_a_status_of_our_message():
    parsed = parse(fixture("onack.json"))
    assert parsed.webhook.messages == [] and parsed.session is None
    (update,) = parsed.webhook.statuses
    assert update.external_id == "true_5511900000001@c.us_3EB0A1B2C3D4E5F6A7B8C9"
    assert update.raw_status == "3" and STATUS_MAP[update.raw_status] == "read"
    assert update.number_id == "wpp" and update.error_code is None
    assert update.timestamp == datetime.fromtimestamp(1767225700, UTC)


def test_send_message_response_fixture_gives_the_message_id_and_its_ack():
    result = send_result(fixture("send_message_response.json"))
    assert result.external_id == "true_5511900000001@c.us_3EB0A1B2C3D4E5F6A7B8C9"
    assert STATUS_MAP[result.raw_status] == "sent"
    assert send_result({"status": "success", "response": [{"ack": 1, "id": "true_x@c.us_3EB0"}]}).external_id == "true_x@c.us_3EB0"
    with pytest.raises(Exception, match="without its id"):
        send_result({"status": "success", "response": []})


def test_status_session_fixture_is_a_connected_session():
    body = fixture("status_session.json")
    assert server_state(body["status"]) == "CONNECTED"
    assert server_state(None) == "CLOSED"  # never started
    assert server_state("qrcode") == "QRCODE"  # start-session with waitQrCode


# --------------------------------------------------------------------------- acks


@pytest.mark.parametrize(
    ("ack", "status", "code"),
    [(-1, "failed", "FAILED"), (-4, "failed", "CONTENT_TOO_BIG"), (0, "queued", None), (1, "sent", None),
     (2, "delivered", None), (3, "read", None), (4, "played", None)],
)
def test_every_ack_maps_to_a_status(ack, status, code):
    payload = fixture("onack.json") | {"ack": ack}
    (update,) = parse(payload).webhook.statuses
    assert STATUS_MAP[update.raw_status] == status
    assert update.error_code == code and (update.error_text is not None) == (code is not None)


def test_the_status_map_uses_only_hookline_statuses():
    assert {DeliveryStatus(value) for value in STATUS_MAP.values()} <= set(DeliveryStatus)


def test_acks_of_the_customers_messages_are_not_statuses():
    payload = fixture("onack.json")
    payload["id"] = {**payload["id"], "fromMe": False, "_serialized": "false_5511900000001@c.us_3A00"}
    assert parse(payload).webhook.statuses == []
    with pytest.raises(MalformedWebhook):
        parse(fixture("onack.json") | {"ack": None})


# --------------------------------------------------------------------------- what is not a customer message


def test_own_status_and_channel_messages_are_ignored():
    text = fixture("onmessage_text.json")
    assert parse(text | {"fromMe": True}).webhook.messages == []
    assert parse(text | {"id": "true_5511900000001@c.us_3EB0AA"}).webhook.messages == []
    assert parse(text | {"from": "status@broadcast", "chatId": "status@broadcast"}).webhook.messages == []
    assert parse(text | {"from": "1203630@newsletter", "chatId": "1203630@newsletter"}).webhook.messages == []
    assert parse(text | {"type": "e2e_notification"}).webhook.messages == []


def test_groups_are_ignored_unless_enabled():
    group = fixture("onmessage_text.json") | {
        "from": "120363040000000000@g.us", "chatId": "120363040000000000@g.us", "author": "5511900000001@c.us", "isGroupMsg": True,
    }
    assert parse(group).webhook.messages == []
    message = one_message(group, ignore_groups=False)
    assert message.contact.address == "120363040000000000@g.us" and message.contact.name is None
    assert message.data == {"group": True, "author": "+5511900000001", "author_name": "Ana Souza"}


def test_lid_senders_are_contacts_with_an_opaque_address():
    lid = "123456789012345@lid"
    payload = fixture("onmessage_text.json") | {"from": lid, "chatId": lid, "id": f"false_{lid}_3A77"}
    payload["sender"] = {**payload["sender"], "id": lid}
    message = one_message(payload)
    assert (message.contact.address, message.contact.wa_id, message.contact.name) == (lid, None, "Ana Souza")
    assert recipient(lid) == {"phone": "123456789012345", "isGroup": False, "isNewsletter": False, "isLid": True}


# --------------------------------------------------------------------------- message kinds


def kind_of(**fields) -> dict:
    return fixture("onmessage_text.json") | fields


def test_location():
    message = one_message(kind_of(type="location", body="/9j/" + "A" * 800, lat=-23.5505, lng=-46.6333, loc="Loja Centro\nRua A, 1"))
    assert message.kind == "location"
    assert message.data["location"] == {"latitude": -23.5505, "longitude": -46.6333, "name": "Loja Centro\nRua A, 1"}
    assert message.text == "Loja Centro\nRua A, 1"
    assert "AAAA" not in json.dumps(message.raw)  # the thumbnail is not kept


def test_vcard_and_multi_vcard():
    card = "BEGIN:VCARD\nVERSION:3.0\nFN:Bruno\nTEL;type=CELL;waid=5511900000002:+55 11 90000-0002\nEND:VCARD"
    message = one_message(kind_of(type="vcard", body=card, vcardFormattedName="Bruno"))
    assert (message.kind, message.text) == ("contacts", "Bruno")
    assert message.data["contacts"] == [{"name": "Bruno", "vcard": card}]
    several = one_message(kind_of(type="multi_vcard", body="", vcardList=[{"displayName": "Bruno", "vcard": card},
                                                                           {"displayName": "Carla", "vcard": card}]))
    assert several.text == "Bruno, Carla" and len(several.data["contacts"]) == 2


def test_list_and_button_responses_carry_the_option_id():
    listed = one_message(kind_of(type="list_response", body="Falar com atendente",
                                 listResponse={"title": "Falar com atendente", "listType": 1, "description": "humano",
                                               "singleSelectReply": {"selectedRowId": "agent"}}))
    assert (listed.kind, listed.text) == ("interactive", "Falar com atendente")
    assert listed.data["interactive"] == {"type": "list_reply", "id": "agent", "title": "Falar com atendente", "description": "humano"}
    button = one_message(kind_of(type="buttons_response", body="Pagar", selectedButtonId="pay"))
    assert (button.kind, button.text, button.data["button"]) == ("button", "Pagar", {"id": "pay", "text": "Pagar"})
    template = one_message(kind_of(type="template_button_reply", body="Sim", selectedId="yes", selectedIndex=0))
    assert template.data["button"] == {"id": "yes", "text": "Sim", "index": 0}


def test_voice_notes_and_documents_are_media():
    ogg = b"OggS" + b"\x00" * 40
    voice = one_message(kind_of(type="ptt", body=base64.b64encode(ogg).decode(), mimetype="audio/ogg; codecs=opus"))
    assert (voice.kind, voice.data, voice.media[0].data) == ("audio", {"voice": True}, ogg)
    pdf = one_message(kind_of(type="document", body=base64.b64encode(b"%PDF-1.4").decode(), mimetype="application/pdf",
                              filename="nota.pdf", caption="segue"))
    assert (pdf.kind, pdf.text, pdf.media[0].filename) == ("document", "segue", "nota.pdf")


def test_media_without_the_file_in_the_body_is_fetched_later():
    image = fixture("onmessage_image.json") | {"body": "", "fileUrl": None}
    (media,) = one_message(image).media
    assert media.data is None and media.provider_media_id == image["id"]
    s3 = fixture("onmessage_image.json") | {"fileUrl": "https://bucket.example/x.jpg"}
    assert one_message(s3).media[0].provider_media_id == s3["id"]  # never fetched from a URL in the payload


def test_replies_name_the_quoted_message():
    message = one_message(kind_of(quotedMsgId="true_5511900000001@c.us_3EB0FF"))
    assert message.reply_to == "true_5511900000001@c.us_3EB0FF"


# --------------------------------------------------------------------------- session events and malformed bodies


@pytest.mark.parametrize(
    ("event", "state"),
    [({"event": "qrcode", "qrcode": "data:image/png;base64,AA", "urlcode": "2@x"}, "QRCODE"),
     ({"event": "status-find", "status": "inChat"}, "CONNECTED"),
     ({"event": "status-find", "status": "isLogged"}, "CONNECTED"),
     ({"event": "status-find", "status": "notLogged"}, "QRCODE"),
     ({"event": "status-find", "status": "disconnectedMobile"}, "CLOSED"),
     ({"event": "closesession", "message": "Session closed", "connected": False}, "CLOSED"),
     ({"event": "logoutsession", "message": "Session logged out", "connected": False}, "CLOSED"),
     ({"event": "status-find", "status": "somethingNew"}, None),
     ({"event": "onpresencechanged", "id": "5511900000001@c.us", "state": "available"}, None)],
)
def test_lifecycle_events_say_how_the_session_is(event, state):
    parsed = parse({"session": "acme", **event})
    assert parsed.webhook.messages == [] and parsed.webhook.statuses == []
    assert (parsed.session.state if parsed.session else None) == state
    assert (session_event(event).state if session_event(event) else None) == state


def test_bodies_that_cannot_be_understood_are_malformed():
    with pytest.raises(MalformedWebhook, match="event"):
        parse({"session": "acme"})
    with pytest.raises(MalformedWebhook, match="session"):
        parse(fixture("onmessage_text.json") | {"session": "other"})
    with pytest.raises(MalformedWebhook):
        parse(fixture("onmessage_text.json") | {"id": None})


# --------------------------------------------------------------------------- sending and errors


def test_recipients_and_files_as_the_server_wants_them():
    assert recipient("+55 11 90000-0001") == {"phone": "5511900000001", "isGroup": False, "isNewsletter": False, "isLid": False}
    assert recipient("120363040000000000@g.us")["isGroup"] is True
    uri = data_uri(b"%PDF-1.4 x", "application/pdf")
    assert uri.startswith("data:application/pdf;base64,") and base64.b64decode(uri.partition(",")[2]) == b"%PDF-1.4 x"
    assert filename_for(None, "application/pdf") == "file.pdf" and filename_for("a.pdf", None) == "a.pdf"


def test_server_answers_become_retryable_or_final_errors():
    down = api_error(404, {"response": None, "status": "Disconnected", "message": "A sessão do WhatsApp não está ativa."}, "acme")
    assert (down.code, down.retryable) == ("session_down", True)
    unknown = api_error(400, {"response": None, "status": "Connected", "message": "O número 5511999999999 não existe."}, "acme")
    assert (unknown.code, unknown.retryable) == ("unknown_number", False)
    assert "O número 5511999999999 não existe." in unknown.message
    refused = api_error(401, {"error": "Check that the Session and Token are correct"}, "acme")
    assert (refused.code, refused.retryable) == ("unauthorized", False)
    assert api_error(404, None, "acme").retryable is False  # a wrong server_url, not a session down
    assert api_error(500, {"status": "Error", "message": "Erro ao enviar a mensagem."}, "acme").retryable is True


def test_simulated_message_parses_as_a_customer_text():
    message = one_message(sample_message("acme", "5511900000001", "+5511900000009", "oi"))
    assert (message.contact.address, message.text, message.kind) == ("+5511900000001", "oi", "text")
    assert message.external_id.startswith("false_5511900000001@c.us_")
