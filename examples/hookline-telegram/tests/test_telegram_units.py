"""The pure parts of the Telegram channel: updates → messages, API errors → ProviderError, the
secret header, the settings' checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core import MalformedWebhook
from hookline_telegram.errors import api_error, transport_error
from hookline_telegram.parse import parse_update
from hookline_telegram.schema import TelegramNumberSettings
from hookline_telegram.secret import is_valid

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BOT = "7012345678"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_a_text_update_is_one_message_from_the_chat():
    (message,) = parse_update(fixture("update_text.json"), "bot", BOT).messages
    assert message.external_id == f"{BOT}:123456789:57"
    assert (message.kind, message.text) == ("text", "Hola, ¿mi pedido #1234 ya salió?")
    assert (message.contact.address, message.contact.name) == ("123456789", "Ana Souza")
    assert message.timestamp.isoformat() == "2026-01-01T00:00:00+00:00"


def test_a_photo_takes_its_largest_size_and_its_caption():
    (message,) = parse_update(fixture("update_photo.json"), "bot", BOT).messages
    assert (message.kind, message.text) == ("image", "La caja llegó rota")
    assert [(m.provider_media_id, m.content_type) for m in message.media] == [("AgACAgEAAxkBAAM6large", "image/jpeg")]


def test_a_document_keeps_its_name_and_type_and_the_message_it_answers():
    (message,) = parse_update(fixture("update_document.json"), "bot", BOT).messages
    (media,) = message.media
    assert (message.kind, media.filename, media.content_type) == ("document", "factura.pdf", "application/pdf")
    assert message.reply_to == f"{BOT}:123456789:1001"


@pytest.mark.parametrize("name", ["update_edited.json", "update_member.json"])
def test_updates_without_a_new_message_store_nothing(name):
    parsed = parse_update(fixture(name), "bot", BOT)
    assert parsed.messages == [] and parsed.statuses == []


@pytest.mark.parametrize("payload", [[], {"update_id": "1"}, {"update_id": True}, {"update_id": 1, "message": []},
                                     {"update_id": 1, "message": {"message_id": 1, "chat": {"id": "x"}}}])
def test_what_is_no_update_is_malformed(payload):
    with pytest.raises(MalformedWebhook):
        parse_update(payload, "bot", BOT)


def test_api_errors_are_retried_or_final_with_telegrams_words():
    flood = api_error(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 35", "parameters": {"retry_after": 35}})
    assert (flood.retryable, flood.retry_after, flood.code) == (True, 35.0, "429")
    blocked = api_error(403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    assert (blocked.retryable, blocked.code) == (False, "403")
    assert "blocked the bot" in blocked.message and "Forbidden: bot was blocked by the user" in blocked.message
    assert api_error(502, None).retryable and api_error(400, {"ok": False, "error_code": 400}).retryable is False
    assert transport_error("ConnectError").retryable


def test_the_secret_header_must_match_exactly():
    assert is_valid("s3cret-_A", "s3cret-_A")
    assert not is_valid("s3cret-_a", "s3cret-_A") and not is_valid(None, "s3cret-_A") and not is_valid("", "")


def test_a_malformed_token_is_a_configuration_error_that_does_not_echo_it(tmp_path):
    import hookline_telegram
    from core.config import ConfigError
    from core.testing import make_runtime

    bot = {"id": "acme", "provider": "telegram", "phone": "@acme_bot",
           "settings": {"bot_token": "not-a-token-at-all", "webhook_secret": "spaces are not allowed"}}
    with pytest.raises(ConfigError) as raised:
        make_runtime(tmp_path, {"telegram": hookline_telegram}, numbers=[bot])
    report = str(raised.value)
    assert "numbers[0].settings.bot_token" in report and "numbers[0].settings.webhook_secret" in report
    assert "not-a-token-at-all" not in report and "spaces are not allowed" not in report
    TelegramNumberSettings(bot_token="7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", webhook_secret="ok_-9")
