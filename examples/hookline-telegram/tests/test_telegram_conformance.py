"""The Telegram channel passes hookline's provider conformance suite against a local fake Bot API."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from telegram_fake import FakeTelegram, refused

import hookline_telegram
from core import Number
from core.testing import Delivery, ErrorAnswer, ProviderConformance, Sample, json_delivery
from hookline_telegram.secret import SECRET_HEADER

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENS = ("7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "7098765432:AAGx7kq1m2n3b4v5c6x7z8l9k0j1h2g3f4")
SECRETS = ("telegram-conformance-secret-a", "telegram-conformance-secret-b")
CHAT = 123456789
PHOTO = ("AgACAgEAAxkBAAM6large", "photos/file_7.jpg", b"\xff\xd8 jpeg bytes", "image/jpeg")
DOCUMENT = ("BQACAgEAAxkBAAM7doc", "documents/file_8.pdf", b"%PDF-1.4 factura", "application/pdf")


class TestTelegramConformance(ProviderConformance):
    plugin = hookline_telegram
    provider = "telegram"
    phones = ("@acme_bot", "@acme_ventas_bot")  # a bot has no phone: its username stands in
    customer = str(CHAT)  # hookline's address for a Telegram customer is the chat id
    reported_statuses = ()  # the Bot API has no delivery or read receipts for bots
    proof_covers_body = False  # the proof is the secret header, not a signature of the body

    @pytest.fixture(scope="class")
    @classmethod
    def fake(cls) -> Iterator[FakeTelegram]:
        fake = FakeTelegram(TOKENS)
        for file_id, path, data, content_type in (PHOTO, DOCUMENT):
            fake.files[file_id] = (path, data, content_type)
        with fake.running():
            yield fake

    def number_settings(self, fake: FakeTelegram, index: int) -> dict[str, Any]:
        return {"bot_token": TOKENS[index], "webhook_secret": SECRETS[index], "api_base_url": fake.url}

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        return delivery.with_headers(**{SECRET_HEADER: number.settings.webhook_secret.get_secret_value()})

    def _path(self, number: Number) -> str:
        return f"/webhooks/whatsapp/telegram/{number.id}"

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        person = {"id": CHAT, "is_bot": False, "first_name": "Ana"}
        update = {"update_id": 900000 + index, "message": {"message_id": index, "from": person,
                                                            "chat": {**person, "type": "private"}, "date": 1767225600, "text": text}}
        return json_delivery(self._path(number), update)

    def samples(self, number: Number) -> Sequence[Sample]:
        def recorded(name: str) -> Delivery:
            return Delivery(self._path(number), (FIXTURES / name).read_bytes(), {"Content-Type": "application/json"})

        return [
            Sample("update_text.json", recorded("update_text.json"), messages=1),
            Sample("update_photo.json", recorded("update_photo.json"), messages=1),
            Sample("update_document.json", recorded("update_document.json"), messages=1),
            Sample("update_edited.json (acknowledged, not stored)", recorded("update_edited.json")),
            Sample("update_member.json (acknowledged, not stored)", recorded("update_member.json")),
        ]

    def permanent_error(self) -> ErrorAnswer:
        return ErrorAnswer(refused(403, "Forbidden: bot was blocked by the user"), code="403")

    def transient_error(self) -> ErrorAnswer:
        return ErrorAnswer(refused(502, "Bad Gateway"))

    def rate_limit(self) -> ErrorAnswer:
        return ErrorAnswer(refused(429, "Too Many Requests: retry after 1", retry_after=1), retry_after=1.0)


def test_fixtures_are_bot_api_updates():
    for path in FIXTURES.glob("*.json"):
        assert isinstance(json.loads(path.read_bytes())["update_id"], int), path.name
