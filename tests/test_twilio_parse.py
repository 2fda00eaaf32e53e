"""Twilio forms → core types (fixtures and hand-built forms), the status map, and REST errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from core.types import DeliveryStatus, MalformedWebhook, ProviderError
from plugins.twilio.errors import describe, parse_retry_after, provider_error, transport_error
from plugins.twilio.parse import STATUS_MAP, channel_address, parse_inbound, parse_status, raw_params

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "twilio"

TWILIO_STATUSES = (
    "queued sending sent failed delivered undelivered receiving received accepted scheduled read "
    "partially_delivered canceled"
).split()

BASE = {
    "MessageSid": "SM00000000000000000000000000000001",
    "From": "whatsapp:+15550100123",
    "To": "whatsapp:+14155238886",
    "AccountSid": "AC5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5",
    "ProfileName": "Ana Souza",
    "WaId": "15550100123",
    "NumMedia": "0",
    "ReferralNumMedia": "0",
    "Body": "",
}


def fixture(name: str) -> dict[str, list[str]]:
    return parse_qs((FIXTURES / name).read_text(), keep_blank_values=True)


def form(**params: str | list[str]) -> dict[str, list[str]]:
    """A parse_qs-shaped form: BASE plus `params` (a None-like empty list removes a name)."""
    merged: dict[str, str | list[str]] = {**BASE, **params}
    return {name: value if isinstance(value, list) else [value] for name, value in merged.items() if value != []}


# --------------------------------------------------------------------------- fixtures


def test_inbound_text_fixture() -> None:
    message = parse_inbound(fixture("inbound_text.form"), "n1")
    assert message.number_id == "n1"
    assert message.external_id == "SM3c1f0a8e2b7d4c9a8f6e5d4c3b2a1f0e"
    assert message.kind == "text"
    assert message.text == "Hi! Is my order #1234 on its way?"
    assert message.contact.address == "+15550100123"
    assert message.contact.name == "Ana Souza"
    assert message.contact.wa_id == "15550100123"
    assert message.media == [] and message.reply_to is None
    assert message.data == {}  # ReferralNumMedia=0 alone is not a referral
    assert message.raw["ChannelMetadata"].startswith('{"type":"whatsapp"')
    assert set(message.raw) == set(fixture("inbound_text.form"))


def test_inbound_media_fixture() -> None:
    message = parse_inbound(fixture("inbound_media.form"), "n1")
    assert message.external_id == "MM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    assert message.kind == "image"
    assert message.text == "Photo of the damaged box"
    [media] = message.media
    assert media.content_type == "image/jpeg"
    assert media.url == (
        "https://api.twilio.com/2010-04-01/Accounts/AC5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5/Messages/"
        "MM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b/Media/ME1a2b3c4d5e6f708192a3b4c5d6e7f8a9"
    )
    assert media.provider_media_id == "ME1a2b3c4d5e6f708192a3b4c5d6e7f8a9"


def test_status_delivered_fixture() -> None:
    update = parse_status(fixture("status_delivered.form"), "n1")
    assert update.external_id == "SMb4a3c2d1e0f9a8b7c6d5e4f3a2b1c0d9"
    assert update.raw_status == "delivered"
    assert STATUS_MAP[update.raw_status] == "delivered"
    assert update.number_id == "n1"
    assert update.error_code is None and update.error_text is None
    assert update.raw["EventType"] == "DELIVERED"
    assert update.raw["ChannelInstallSid"].startswith("XE")


def test_status_failed_fixture_explains_63016() -> None:
    update = parse_status(fixture("status_failed.form"), "n1")
    assert update.raw_status == "failed"
    assert update.error_code == "63016"
    assert "24-hour" in (update.error_text or "") and "template" in (update.error_text or "")


# --------------------------------------------------------------------------- inbound kinds


def test_text_without_profile() -> None:
    message = parse_inbound(form(Body="hello", ProfileName=[], WaId=[], MessageType="text"), "n2")
    assert (message.kind, message.text) == ("text", "hello")
    assert message.contact.name is None and message.contact.wa_id is None


def test_several_media_in_index_order_and_kind_from_content_type() -> None:
    message = parse_inbound(form(
        NumMedia="3",
        MediaUrl10="https://api.twilio.com/m/ME10", MediaContentType10="image/png",
        MediaUrl0="https://api.twilio.com/m/ME0", MediaContentType0="application/pdf",
        MediaUrl2="https://api.twilio.com/m/ME2", MediaContentType2="audio/ogg",
    ), "n1")
    assert [item.url.rsplit("/", 1)[-1] for item in message.media if item.url] == ["ME0", "ME2", "ME10"]
    assert [item.content_type for item in message.media] == ["application/pdf", "audio/ogg", "image/png"]
    assert message.kind == "document"  # no MessageType: the first content type decides
    assert message.text is None  # empty Body, no caption


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [("image/jpeg", "image"), ("audio/ogg", "audio"), ("video/mp4", "video"),
     ("application/pdf", "document"), ("text/vcard", "document"), ("", "document")],
)
def test_media_kind_from_first_content_type(content_type: str, kind: str) -> None:
    message = parse_inbound(form(NumMedia="1", MediaUrl0="https://api.twilio.com/x", MediaContentType0=content_type), "n1")
    assert message.kind == kind
    assert message.media[0].provider_media_id is None  # URL does not end in an ME… id


def test_message_type_wins_over_content_type() -> None:
    message = parse_inbound(form(MessageType="sticker", MediaUrl0="https://api.twilio.com/ME1",
                                 MediaContentType0="image/webp"), "n1")
    assert message.kind == "sticker"


def test_location() -> None:
    message = parse_inbound(form(MessageType="location", Latitude="-23.5505", Longitude="-46.6333",
                                 Address="Av. Paulista, 1000", Label="Office"), "n1")
    assert message.kind == "location"
    assert message.data["location"] == {"latitude": -23.5505, "longitude": -46.6333,
                                        "address": "Av. Paulista, 1000", "label": "Office"}


def test_location_without_message_type_or_label() -> None:
    message = parse_inbound(form(Latitude="1.5", Longitude="2"), "n1")
    assert message.kind == "location"
    assert message.data["location"] == {"latitude": 1.5, "longitude": 2.0}


def test_unreadable_coordinates_are_not_a_location() -> None:
    message = parse_inbound(form(Latitude="north", Longitude="2"), "n1")
    assert "location" not in message.data and message.kind == "text"
    assert message.raw["Latitude"] == "north"


def test_button_reply() -> None:
    message = parse_inbound(form(MessageType="button", Body="Yes, confirm", ButtonText="Yes, confirm",
                                 ButtonPayload="confirm_order_1234", ButtonType="REPLY"), "n1")
    assert message.kind == "button"
    assert message.text == "Yes, confirm"
    assert message.data["button"] == {"text": "Yes, confirm", "payload": "confirm_order_1234", "type": "REPLY"}


def test_button_payload_alone_is_a_button_even_if_typed_interactive() -> None:
    message = parse_inbound(form(MessageType="interactive", ButtonPayload="p1"), "n1")
    assert message.kind == "button"
    assert message.data["button"] == {"payload": "p1"}
    assert message.text is None


def test_button_text_fills_an_empty_body() -> None:
    message = parse_inbound(form(ButtonText="Talk to a human"), "n1")
    assert (message.kind, message.text) == ("button", "Talk to a human")


def test_reply_to_one_of_our_messages() -> None:
    message = parse_inbound(form(Body="this one", OriginalRepliedMessageSid="SM00000000000000000000000000000099",
                                 OriginalRepliedMessageSender="whatsapp:+14155238886"), "n1")
    assert message.reply_to == "SM00000000000000000000000000000099"
    assert message.raw["OriginalRepliedMessageSender"] == "whatsapp:+14155238886"


def test_referral_from_an_ad() -> None:
    message = parse_inbound(form(
        Body="Hi, I saw your ad", ReferralBody="50% off", ReferralHeadline="Spring sale",
        ReferralSourceId="120212345", ReferralSourceType="ad", ReferralSourceUrl="https://fb.me/ad",
        ReferralMediaId="9876", ReferralMediaContentType="image/jpeg", ReferralMediaUrl="https://x/y.jpg",
        ReferralNumMedia="1", ReferralCtwaClid="ARAkLkA8", ReferralNewThing="kept",
    ), "n1")
    assert message.kind == "text"
    assert message.data["referral"] == {
        "body": "50% off", "headline": "Spring sale", "source_id": "120212345", "source_type": "ad",
        "source_url": "https://fb.me/ad", "media_id": "9876", "media_content_type": "image/jpeg",
        "media_url": "https://x/y.jpg", "num_media": "1", "ctwa_clid": "ARAkLkA8", "new_thing": "kept",
    }


def test_interactive_and_flow_data_are_decoded() -> None:
    message = parse_inbound(form(MessageType="interactive", InteractiveData='{"type":"list_reply","id":"opt2"}',
                                 FlowData="not json", Forwarded="true"), "n1")
    assert message.kind == "interactive"
    assert message.data["interactive"] == {"type": "list_reply", "id": "opt2"}
    assert message.data["flow"] == "not json"
    assert message.data["forwarded"] is True


def test_unknown_and_repeated_parameters_are_kept_in_raw() -> None:
    message = parse_inbound(form(Body="x", BrandNewParam="v", Tag=["a", "b"]), "n1")
    assert message.raw["BrandNewParam"] == "v"
    assert message.raw["Tag"] == ["a", "b"]
    assert message.raw["Body"] == "x" and message.raw["NumMedia"] == "0"


@pytest.mark.parametrize("missing", ["MessageSid", "From"])
def test_inbound_without_ids_is_malformed(missing: str) -> None:
    with pytest.raises(MalformedWebhook):
        parse_inbound(form(**{missing: []}), "n1")
    with pytest.raises(MalformedWebhook):
        parse_inbound(form(**{missing: ""}), "n1")


def test_channel_address() -> None:
    assert channel_address("whatsapp:+15550100123") == "+15550100123"
    assert channel_address("WhatsApp:+15550100123") == "+15550100123"
    assert channel_address("+15550100123") == "+15550100123"
    assert channel_address("whatsapp:CO.4480491918930694") == "CO.4480491918930694"


def test_raw_params_accepts_plain_strings() -> None:
    assert raw_params({"A": "1", "B": ["2"], "C": ["3", "4"], "D": []}) == {"A": "1", "B": "2", "C": ["3", "4"], "D": []}


# --------------------------------------------------------------------------- statuses


def test_status_map_covers_every_twilio_status_with_core_values() -> None:
    assert set(STATUS_MAP) == set(TWILIO_STATUSES)
    allowed = {"queued", "sent", "delivered", "read", "failed"}
    assert set(STATUS_MAP.values()) <= allowed
    for value in STATUS_MAP.values():
        DeliveryStatus(value)  # the core validates the map at boot the same way


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [("undelivered", "failed"), ("canceled", "failed"), ("accepted", "queued"), ("scheduled", "queued"),
     ("sending", "queued"), ("partially_delivered", "sent"), ("received", "queued"), ("receiving", "queued"),
     ("read", "read")],
)
def test_status_map_decisions(twilio: str, ours: str) -> None:
    assert STATUS_MAP[twilio] == ours


def test_status_prefers_the_channel_text_then_error_message() -> None:
    failed = form(MessageStatus="undelivered", ErrorCode="63024", ChannelStatusMessage="Invalid recipient",
                  ErrorMessage="other")
    update = parse_status(failed, "n1")
    assert (update.raw_status, update.error_code, update.error_text) == ("undelivered", "63024", "Invalid recipient")
    update = parse_status(form(MessageStatus="failed", ErrorCode="30008", ErrorMessage="Unknown error"), "n1")
    assert update.error_text == "Unknown error"
    update = parse_status(form(MessageStatus="failed", ErrorCode="99999"), "n1")
    assert (update.error_code, update.error_text) == ("99999", None)


def test_status_read_event_and_case() -> None:
    update = parse_status(form(MessageStatus="READ", EventType="READ"), "n1")
    assert update.raw_status == "read"


def test_status_falls_back_to_sms_status() -> None:
    assert parse_status(form(SmsStatus="sent"), "n1").raw_status == "sent"


@pytest.mark.parametrize("params", [{"MessageSid": []}, {"MessageStatus": []}, {"MessageStatus": ""}])
def test_status_without_sid_or_status_is_malformed(params: dict[str, list[str] | str]) -> None:
    params = {"MessageStatus": "sent", **params}
    with pytest.raises(MalformedWebhook):
        parse_status(form(**params), "n1")


# --------------------------------------------------------------------------- REST errors


def twilio_body(code: int, message: str = "details", status: int = 400) -> dict[str, object]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


def test_63016_is_permanent_and_says_a_template_is_needed() -> None:
    error = provider_error(400, twilio_body(63016, "Failed to send freeform message because you are outside the allowed window."), None)
    assert isinstance(error, ProviderError)
    assert not error.retryable and error.retry_after is None
    assert error.code == "63016"
    assert "24-hour" in error.message and "ContentSid" in error.message and "template" in error.message
    assert "outside the allowed window" in error.message  # Twilio's own words are kept


@pytest.mark.parametrize(("code", "status"), [(20429, 429), (63018, 400), (63018, 429)])
def test_rate_limit_codes_are_retryable_with_retry_after(code: int, status: int) -> None:
    error = provider_error(status, twilio_body(code, status=status), "7")
    assert error.retryable and error.retry_after == 7.0 and error.code == str(code)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_http_429_and_5xx_are_retryable(status: int) -> None:
    error = provider_error(status, None, None)
    assert error.retryable and error.retry_after is None
    assert error.code == f"http_{status}"
    assert str(status) in error.message


def test_503_with_retry_after_and_an_unknown_code() -> None:
    error = provider_error(503, twilio_body(20500, "Internal Server Error", 503), "120")
    assert error.retryable and error.retry_after == 120.0 and error.code == "20500"


@pytest.mark.parametrize(
    ("code", "words"),
    [(21211, "not a valid phone number"), (63003, "WhatsApp"), (63007, "not a WhatsApp sender"),
     (20003, "credentials")],
)
def test_known_permanent_codes(code: int, words: str) -> None:
    error = provider_error(401 if code == 20003 else 400, twilio_body(code), "30")
    assert not error.retryable and error.retry_after is None
    assert error.code == str(code) and words in error.message


def test_a_known_permanent_code_wins_over_a_5xx_status() -> None:
    assert not provider_error(500, twilio_body(21211), None).retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_other_4xx_are_permanent_with_a_reason(status: int) -> None:
    error = provider_error(status, {"code": 21999, "message": "Something specific"}, None)
    assert not error.retryable and error.code == "21999"
    assert "Something specific" in error.message
    bare = provider_error(status, {"unexpected": "shape"}, None)
    assert not bare.retryable and bare.code == f"http_{status}" and f"HTTP {status}" in bare.message


def test_odd_bodies_do_not_break_the_mapping() -> None:
    for body in (None, {}, {"code": None}, {"code": True}, {"code": " 63016 "}, {"message": 5}):
        error = provider_error(400, body, None)  # type: ignore[arg-type]
        assert isinstance(error, ProviderError) and not error.retryable
    assert provider_error(400, {"code": " 63016 "}, None).code == "63016"


def test_transport_errors_are_retryable() -> None:
    error = transport_error("read timeout after 10s")
    assert error.retryable and error.code == "transport" and "timeout" in error.message


def test_parse_retry_after() -> None:
    now = datetime(2025, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Tue, 25 Nov 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 25 Nov 2025 11:00:00 GMT", now) == 0.0  # in the past: now
    for value in (None, "", "soon", "-3", "1e9999x"):
        assert parse_retry_after(value) is None


def test_describe() -> None:
    assert describe(63016) == describe("63016")
    assert describe(None) is None and describe("00000") is None
