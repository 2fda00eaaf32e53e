"""The Telegram channel in a running hookline: the webhook set at start, inbound files fetched
into the media store, replies, the simulator, and enabling it with the one line the README gives."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram_fake import FakeTelegram
from test_telegram_conformance import CHAT, FIXTURES, PHOTO, SECRETS, TOKENS

import hookline_telegram
from core.storage.models import Message
from core.testing import Delivery, Inbox, eventually, make_runtime, post, started
from hookline_telegram.secret import SECRET_HEADER

pytestmark = pytest.mark.anyio
PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]  # the example lives in hookline's repository, at examples/hookline-telegram


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(TOKENS)
    fake.files[PHOTO[0]] = PHOTO[1:]
    with fake.running():
        yield fake


def runtime(tmp_path: Path, database_url: str, fake: FakeTelegram, inbox: Inbox, public_url: str = "https://chat.example.com"):
    bot = {"id": "acme", "provider": "telegram", "phone": "@acme_bot",
           "settings": {"bot_token": TOKENS[0], "webhook_secret": SECRETS[0], "api_base_url": fake.url}}
    return make_runtime(tmp_path, {"telegram": hookline_telegram, "inbox": inbox}, database_url=database_url,
                        numbers=[bot], public_url=public_url)


async def test_the_webhook_is_set_at_start_with_its_secret(tmp_path, hookline_database_url, fake):
    async with started(runtime(tmp_path, hookline_database_url, fake, Inbox())):
        pass
    assert fake.webhooks["7012345678"] == {"url": "https://chat.example.com/webhooks/whatsapp/telegram/acme",
                                          "secret_token": SECRETS[0], "allowed_updates": ["message"]}


async def test_no_webhook_is_set_without_https(tmp_path, hookline_database_url, fake, caplog):
    async with started(runtime(tmp_path, hookline_database_url, fake, Inbox(), public_url="http://127.0.0.1:8000")):
        pass
    assert fake.webhooks == {} and "Telegram needs an https" in caplog.text


async def test_a_photo_is_fetched_into_the_media_store_and_a_reply_quotes_it(tmp_path, hookline_database_url, fake):
    inbox = Inbox()
    app = runtime(tmp_path, hookline_database_url, fake, inbox)
    async with started(app) as client:
        body = (FIXTURES / "update_photo.json").read_bytes()
        delivery = Delivery("/webhooks/whatsapp/telegram/acme", body, {"Content-Type": "application/json", SECRET_HEADER: SECRETS[0]})
        assert (await post(client, delivery)).status_code == 200
        await eventually(lambda: len(inbox.inbound) == 1)
        (item,) = inbox.inbound[0].media
        assert app.host.media.read(item["key"]) == PHOTO[2]
        conversation = await app.host.conversation_with("acme", str(CHAT))
        reply = await app.host.send_text(conversation, "¡Lo sentimos! Enviamos otra.", reply_to=inbox.inbound[0])

        async def sent() -> bool:
            return (await Message.get(id=reply.id)).status.value == "sent"

        await eventually(sent)
    (request,) = [r for r in fake.recorded if r.path.endswith("/sendMessage")]
    assert request.json() == {"chat_id": CHAT, "text": "¡Lo sentimos! Enviamos otra.",
                              "reply_parameters": {"message_id": 58, "allow_sending_without_reply": True}}


async def test_the_simulated_update_is_accepted(tmp_path, hookline_database_url, fake):
    app = runtime(tmp_path, hookline_database_url, fake, Inbox())
    async with started(app) as client:
        simulated = await app.dispatch.provider("telegram").simulate_webhook(app.host, app.host.number("acme"), "+15550100123", "hola", "")
        response = await post(client, Delivery.from_simulated(simulated))
        assert response.status_code == 200
        assert (await Message.get(text="hola").prefetch_related("conversation__contact")).conversation.contact.address == "15550100123"


# --------------------------------------------------------------------------- enabling it


def documented_line() -> str:
    """The one line the README says to put in config/hookline.toml."""
    match = re.search(r'^enabled = \[[^\]]*"telegram"[^\]]*\]$', (PACKAGE / "README.md").read_text(), flags=re.MULTILINE)
    assert match, "README.md shows no `enabled = [..., \"telegram\"]` line"
    return match.group(0)


def hookline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_enabling_it_is_the_one_line_the_readme_gives(tmp_path):
    shipped = (REPO / "config" / "hookline.toml").read_text()
    assert re.search(r"^enabled = .*$", shipped, flags=re.MULTILINE)
    config = tmp_path / "hookline.toml"
    config.write_text(re.sub(r"^enabled = .*$", documented_line(), shipped, count=1, flags=re.MULTILINE))
    checked = hookline("check-config", "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "plugins enabled: twilio, telegram" in checked.stdout
    listed = hookline("plugins", "--json", "--config", str(config), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    telegram = next(row for row in json.loads(listed.stdout) if row["name"] == "telegram")
    assert (telegram["enabled"], telegram["role"], telegram["source"], telegram["version"]) == (True, "provider", "entry point", "0.1.0")
