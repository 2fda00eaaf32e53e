"""Meta webhook batches → core types: every shared fixture, every message type, contacts by wa_id
and by user_id, statuses with errors, routing by phone_number_id, other fields; and the Graph API
error table (PROTOCOLS.md 2.7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.types import DeliveryStatus, MalformedWebhook, ProviderError
from plugins.meta.errors import PAIR_RATE_DELAY_SECONDS, describe, explain, provider_error, transport_error
from plugins.meta.parse import STATUS_MAP, parse_batch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "meta"
PNID = "109876543210987"  # the fixtures' phone_number_id
ROUTES = {PNID: "m1"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def envelope(*values: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [
        {"id": "102345678901234", "changes": [{"field": field, "value": value} for value in values]}
    ]}


def value(*messages: dict[str, Any], pnid: str = PNID, contacts: list | None = None, statuses: list | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550100001", "phone_number_id": pnid}}
    if contacts is None:
        contacts = [{"profile": {"name": "Ana Souza"}, "wa_id": "15550100123"}]
    if messages:
        result["contacts"] = contacts
        result["messages"] = list(messages)
    if statuses:
        result["statuses"] = statuses
    return result


def message(kind: str, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    item = {"from": "15550100123", "id": f"wamid.{kind}", "timestamp": "1767225600", "type": kind, **extra}
    if body is not None:
        item[kind] = body
    return item


def one(item: dict[str, Any], **options: Any):
    batch = parse_batch(envelope(value(item, **options)), ROUTES)
    assert len(batch.webhook.messages) == 1, batch
    return batch.webhook.messages[0]


# --------------------------------------------------------------------------- the shared fixtures


def test_inbound_text_fixture():
    batch = parse_batch(fixture("inbound_text.json"), ROUTES)
    assert batch.webhook.statuses == [] and not batch.unrouted and not batch.other_fields
    [parsed] = batch.webhook.messages
    assert parsed.number_id == "m1"
    assert parsed.external_id == "wamid.HBgLMTU1NTAxMDAxMjMVAgASGBQzQTdGMkU5QzFCOEQ0QTZFNUYwMwA="
    assert parsed.kind == "text" and parsed.text == "Hi! Is my order #1234 on its way?"
    assert (parsed.contact.address, parsed.contact.name, parsed.contact.wa_id) == ("+15550100123", "José Silva", "15550100123")
    assert parsed.timestamp == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert parsed.media == [] and parsed.reply_to is None and parsed.data == {}
    assert parsed.raw["message"]["text"] == {"body": "Hi! Is my order #1234 on its way?"}
    assert parsed.raw["metadata"]["phone_number_id"] == PNID and parsed.raw["waba_id"] == "102345678901234"


def test_inbound_image_fixture():
    [parsed] = parse_batch(fixture("inbound_image.json"), ROUTES).webhook.messages
    assert parsed.kind == "image"
    assert parsed.text == "Photo of the damaged box"
    [media] = parsed.media
    assert media.provider_media_id == "1234567890123456"
    assert media.content_type == "image/jpeg"  # "image\/jpeg" on the wire
    assert media.url.startswith("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1234567890123456")
    assert media.key is None and media.data is None


def test_inbound_interactive_button_fixture():
    [parsed] = parse_batch(fixture("inbound_interactive_button.json"), ROUTES).webhook.messages
    assert parsed.kind == "button"
    assert parsed.text == "Track order"
    assert parsed.data["button"] == {"payload": "track-order", "text": "Track order", "type": "button_reply"}
    assert parsed.reply_to == "wamid.HBgLMTU1NTAxMDAxMjMVAgARGBI4QzZCMDFFRDRBMkY5RTdEM0IA"  # the message with the buttons


def test_status_read_fixture():
    batch = parse_batch(fixture("status_read.json"), ROUTES)
    assert batch.webhook.messages == []
    [status] = batch.webhook.statuses
    assert (status.external_id, status.raw_status, status.number_id) == ("wamid.HBgLMTU1NTAxMDAxMjMVAgARGBI4QzZCMDFFRDRBMkY5RTdEM0IA", "read", "m1")
    assert status.error_code is None and status.error_text is None
    assert status.timestamp == datetime.fromtimestamp(1767225780, UTC)
    assert status.raw["recipient_id"] == "15550100123"


def test_status_failed_fixture_keeps_code_and_guidance():
    [status] = parse_batch(fixture("status_failed.json"), ROUTES).webhook.statuses
    assert status.raw_status == "failed" and status.error_code == "131047"
    assert "24-hour" in status.error_text and "template" in status.error_text
    assert "more than 24 hours have passed" in status.error_text  # Meta's details are kept


def test_every_fixture_with_updates_is_routed_and_nothing_else_is_reported():
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_bytes())
        if "entry" not in payload:
            continue  # API answers, not webhooks
        batch = parse_batch(payload, ROUTES)
        assert len(batch.webhook.messages) + len(batch.webhook.statuses) == 1, path.name
        assert not batch.unrouted and not batch.other_fields and not batch.errors and batch.skipped == 0


# --------------------------------------------------------------------------- every message type


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document", "sticker"])
def test_media_kinds(kind):
    body = {"id": f"{kind}-id", "mime_type": "application/pdf" if kind == "document" else f"{kind}/x", "sha256": "abc"}
    if kind == "document":
        body.update(filename="acuerdo.pdf", caption="Su acuerdo")
    if kind == "audio":
        body["voice"] = True
    if kind == "sticker":
        body["animated"] = True
    parsed = one(message(kind, body))
    assert parsed.kind == kind
    assert parsed.media[0].provider_media_id == f"{kind}-id" and parsed.media[0].content_type == body["mime_type"]
    if kind == "document":
        assert parsed.media[0].filename == "acuerdo.pdf" and parsed.text == "Su acuerdo"
    assert parsed.data == ({"voice": True} if kind == "audio" else {"animated": True} if kind == "sticker" else {})


def test_location():
    parsed = one(message("location", {"latitude": 19.4326, "longitude": -99.1332, "name": "Zócalo", "address": "Centro, CDMX"}))
    assert parsed.kind == "location" and parsed.text is None
    assert parsed.data["location"] == {"latitude": 19.4326, "longitude": -99.1332, "label": "Zócalo", "address": "Centro, CDMX"}


def test_contacts_message():
    cards = [{"name": {"formatted_name": "Luis"}, "phones": [{"phone": "+15550100999", "wa_id": "15550100999", "type": "CELL"}]}]
    item = message("contacts")
    item["contacts"] = cards
    parsed = one(item)
    assert parsed.kind == "contacts" and parsed.data["contacts"] == cards
    assert parsed.contact.address == "+15550100123"  # the sender, not the shared card


def test_list_reply():
    parsed = one(message("interactive", {"type": "list_reply", "list_reply": {"id": "slot-10", "title": "10:00", "description": "Tomorrow"}}))
    assert parsed.kind == "interactive" and parsed.text == "10:00"
    assert parsed.data["button"] == {"payload": "slot-10", "text": "10:00", "description": "Tomorrow", "type": "list_reply"}
    assert parsed.data["interactive"]["type"] == "list_reply"


def test_flow_reply_keeps_the_interactive_object():
    body = {"type": "nfm_reply", "nfm_reply": {"response_json": "{\"flow_token\": \"t\"}", "body": "Sent", "name": "flow"}}
    parsed = one(message("interactive", body))
    assert parsed.kind == "interactive" and parsed.data["interactive"] == body and "button" not in parsed.data


def test_template_quick_reply_button():
    parsed = one(message("button", {"payload": "STOP_PROMOS", "text": "Stop promotions"},
                         context={"from": "15550100001", "id": "wamid.template"}))
    assert parsed.kind == "button" and parsed.text == "Stop promotions"
    assert parsed.data["button"] == {"payload": "STOP_PROMOS", "text": "Stop promotions", "type": "quick_reply"}
    assert parsed.reply_to == "wamid.template"


def test_reaction_and_its_removal():
    parsed = one(message("reaction", {"message_id": "wamid.ours", "emoji": "\U0001F44D"}))
    assert parsed.kind == "reaction" and parsed.text == "\U0001F44D" and parsed.reply_to == "wamid.ours"
    assert parsed.data["reaction"] == {"message_id": "wamid.ours", "emoji": "\U0001F44D"}
    removed = one(message("reaction", {"message_id": "wamid.ours"}))
    assert removed.text is None and removed.data["reaction"] == {"message_id": "wamid.ours", "emoji": "", "removed": True}


def test_unsupported_keeps_its_errors():
    item = message("unsupported", errors=[{"code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                                           "error_data": {"details": "Message type is currently not supported."}}])
    parsed = one(item)
    assert parsed.kind == "unsupported" and parsed.text is None
    [error] = parsed.data["errors"]
    assert error["code"] == "131051" and error["details"] == "Message type is currently not supported."
    assert "does not support" in error["text"]


def test_order_system_and_future_kinds_are_kept():
    order = one(message("order", {"catalog_id": "c1", "product_items": [{"product_retailer_id": "sku", "quantity": 2}]}))
    assert order.kind == "order" and order.data["order"]["catalog_id"] == "c1"
    system = one(message("system", {"body": "User changed number", "type": "user_changed_number"}))
    assert system.kind == "system" and system.text == "User changed number"
    future = one(message("hologram", {"depth": 3}))
    assert future.kind == "hologram" and future.data["hologram"] == {"depth": 3}


def test_reply_context_forwarding_and_referral():
    referral = {"source_url": "https://fb.me/ad", "source_id": "ad-1", "source_type": "ad", "headline": "Sale", "ctwa_clid": "clid"}
    parsed = one(message("text", {"body": "I saw the ad"}, context={"from": "15550100001", "id": "wamid.ours"}, referral=referral))
    assert parsed.reply_to == "wamid.ours" and parsed.data["referral"] == referral
    forwarded = one(message("text", {"body": "fwd"}, context={"frequently_forwarded": True}))
    assert forwarded.reply_to is None and forwarded.data == {"frequently_forwarded": True}


def test_contact_by_user_id_when_wa_id_is_empty():
    contacts = [{"profile": {"name": "Ana", "username": "@ana"}, "wa_id": "", "user_id": "US.13491208655302741918"}]
    item = message("text", {"body": "hola"})
    item.pop("from")
    item["from_user_id"] = "US.13491208655302741918"
    parsed = one(item, contacts=contacts)
    assert parsed.contact.address == "US.13491208655302741918"
    assert parsed.contact.wa_id is None and parsed.contact.name == "Ana"
    assert parsed.data["user_id"] == "US.13491208655302741918"


def test_contact_by_wa_id_keeps_the_user_id_too():
    contacts = [{"profile": {"name": "Ana"}, "wa_id": "15550100123", "user_id": "US.1"}]
    parsed = one(message("text", {"body": "hola"}, from_user_id="US.1"), contacts=contacts)
    assert parsed.contact.address == "+15550100123" and parsed.contact.wa_id == "15550100123"
    assert parsed.data["user_id"] == "US.1"


def test_each_message_gets_its_own_contact():
    contacts = [{"profile": {"name": "Ana"}, "wa_id": "15550100123"}, {"profile": {"name": "Luis"}, "wa_id": "15550100999"}]
    first = message("text", {"body": "1"})
    second = {**message("text", {"body": "2"}), "id": "wamid.2", "from": "15550100999"}
    batch = parse_batch(envelope(value(first, second, contacts=contacts)), ROUTES)
    assert [(m.contact.address, m.contact.name) for m in batch.webhook.messages] == [("+15550100123", "Ana"), ("+15550100999", "Luis")]


def test_message_without_id_or_sender_is_skipped_not_fatal():
    no_id = message("text", {"body": "x"})
    no_id.pop("id")
    no_sender = {**message("text", {"body": "y"}), "id": "wamid.nosender"}
    no_sender.pop("from")
    good = {**message("text", {"body": "ok"}), "id": "wamid.ok"}
    batch = parse_batch(envelope(value(no_id, no_sender, good, contacts=[])), ROUTES)
    assert [m.external_id for m in batch.webhook.messages] == ["wamid.ok"] and batch.skipped == 2


# --------------------------------------------------------------------------- routing and envelopes


def test_batch_for_two_numbers_is_routed_by_phone_number_id():
    routes = {"111": "first", "222": "second"}
    payload = envelope(
        value(message("text", {"body": "a"}), pnid="111"),
        value({**message("text", {"body": "b"}), "id": "wamid.b"}, pnid="222", statuses=[{"id": "wamid.out", "status": "delivered", "timestamp": "1", "recipient_id": "1"}]),
    )
    batch = parse_batch(payload, routes)
    assert [(m.external_id, m.number_id) for m in batch.webhook.messages] == [("wamid.text", "first"), ("wamid.b", "second")]
    assert [(s.external_id, s.number_id) for s in batch.webhook.statuses] == [("wamid.out", "second")]


def test_unknown_phone_number_id_is_reported_not_parsed():
    payload = envelope(value(message("text", {"body": "a"}), pnid="999", statuses=[{"id": "w", "status": "sent"}]), value(message("text", {"body": "b"})))
    batch = parse_batch(payload, ROUTES)
    assert [m.number_id for m in batch.webhook.messages] == ["m1"]
    assert batch.unrouted == {"999": 2}


def test_other_fields_and_system_errors_are_reported():
    payload = envelope({"event": "APPROVED", "message_template_id": 1, "message_template_name": "order_update"}, field="message_template_status_update")
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})
    payload["entry"][0]["changes"].append({"field": "messages", "value": {**value(), "errors": [{"code": 131000, "title": "Something went wrong"}]}})
    batch = parse_batch(payload, ROUTES)
    assert batch.webhook.messages == [] and batch.webhook.statuses == []
    assert batch.other_fields == {"message_template_status_update": 1, "account_update": 1}
    assert batch.errors[0]["code"] == "131000" and batch.errors[0]["phone_number_id"] == PNID


@pytest.mark.parametrize("payload", [[], "x", {"entry": "nope"}, None])
def test_a_body_that_is_not_an_envelope_is_malformed(payload):
    with pytest.raises(MalformedWebhook):
        parse_batch(payload, ROUTES)


def test_statuses_with_errors_and_every_status_maps():
    statuses = [
        {"id": "w1", "status": "failed", "timestamp": "1767312000", "recipient_id": "1",
         "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "Receiver incapable"}}]},
        {"id": "w2", "status": "played", "timestamp": "1767312000", "recipient_id": "1"},
        {"id": "w3", "status": "sent", "timestamp": "1767312000", "recipient_id": "1",
         "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}},
        {"id": "w4", "timestamp": "1767312000"},  # no status: skipped
    ]
    batch = parse_batch(envelope(value(statuses=statuses)), ROUTES)
    failed, played, sent = batch.webhook.statuses
    assert failed.error_code == "131026" and "not on WhatsApp" in failed.error_text and "Receiver incapable" in failed.error_text
    assert played.raw_status == "played" and sent.raw["pricing"]["category"] == "utility"
    assert batch.skipped == 1
    for raw_status in ("sent", "delivered", "read", "played", "failed", "accepted", "held_for_quality_assessment", "paused"):
        DeliveryStatus(STATUS_MAP[raw_status])  # a value the core knows
    assert STATUS_MAP["accepted"] == "queued" and STATUS_MAP["read"] == "read"


# --------------------------------------------------------------------------- errors (PROTOCOLS.md 2.7)


def graph_error(code: int, details: str = "details") -> dict[str, Any]:
    return {"error": {"message": f"(#{code}) title", "type": "OAuthException", "code": code,
                      "error_data": {"messaging_product": "whatsapp", "details": details}, "fbtrace_id": "x"}}


def test_rate_limit_fixture_is_retryable():
    error = provider_error(400, fixture("error_rate_limit.json"))
    assert error.retryable and error.code == "130429" and error.retry_after is None  # core backoff
    assert "throughput" in error.message


@pytest.mark.parametrize("code", [130429, 80007, 4, 131000, 131016, 131057, 1, 2])
def test_retryable_codes(code):
    error = provider_error(400, graph_error(code))
    assert isinstance(error, ProviderError) and error.retryable and error.code == str(code)


def test_pair_rate_limit_waits_longer_and_honours_retry_after():
    error = provider_error(400, graph_error(131056))
    assert error.retryable and error.retry_after == PAIR_RATE_DELAY_SECONDS
    assert provider_error(400, graph_error(131056), "30").retry_after == 30.0
    assert provider_error(400, graph_error(130429), "2").retry_after == 2.0


def test_window_closed_is_permanent_with_guidance():
    error = provider_error(400, graph_error(131047, "Message failed to send because more than 24 hours have passed"))
    assert not error.retryable and error.code == "131047"
    assert "24-hour" in error.message and "template" in error.message and "more than 24 hours" in error.message


def test_expired_token_is_permanent():
    error = provider_error(401, graph_error(190, "Session has expired"))
    assert not error.retryable and error.code == "190" and "access_token" in error.message


@pytest.mark.parametrize("code", [131026, 131048, 131049, 131050, 131051, 131052, 131053, 131008, 131009, 100, 132000, 132001, 368, 131031, 130497, 0, 3, 10, 200, 299])
def test_permanent_codes_carry_metas_code_and_details(code):
    error = provider_error(400, graph_error(code, "the details"))
    assert not error.retryable and error.code == str(code)
    assert error.message.startswith(f"Meta {code}: ") and "the details" in error.message


def test_unknown_code_is_decided_by_http_status():
    assert not provider_error(400, graph_error(999999, "odd")).retryable
    assert provider_error(503, graph_error(999999)).retryable
    assert "odd" in provider_error(400, graph_error(999999, "odd")).message


def test_no_body_5xx_and_429_are_retryable_others_not():
    for status, retryable in ((500, True), (502, True), (429, True), (400, False), (404, False), (401, False)):
        error = provider_error(status, None)
        assert error.retryable is retryable and error.code == f"http_{status}"
    assert transport_error("ReadTimeout").retryable


def test_describe_and_explain():
    assert describe("131047") and describe(250) and describe(None) is None and describe("424242") is None
    assert explain("424242", "Weird title", "why") == "Meta 424242: Weird title (why)"
    assert explain(None, None, None) == "Meta: Meta reported an error"
