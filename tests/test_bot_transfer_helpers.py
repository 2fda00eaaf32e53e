"""Shared by the bot_transfer tests (no tests here): settings, a conversation with history, the
PDF's text, and the fake provider API fixtures."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from core import hookimpl
from core.storage.models import Conversation, Message
from tests.fake_api import FakeApi, running_fake_api
from tests.helpers import eventually, post_signed

CUSTOMER = "+15550100123"
NAME = "Ana Souza"
HISTORY = (
    ("in-1", "Hola, necesito ayuda con mi pago <b>urgente</b> & rápido"),
    ("in-2", "¿Puedo pagar en dos cuotas? Ação, coração, ñandú, pingüino"),
)
LAST = HISTORY[-1][1]


def settings_toml(**values: Any) -> str:
    """`[plugins.bot_transfer]` from keyword values (nested tables as inline JSON-compatible TOML)."""
    lines = ["[plugins.bot_transfer]"]
    for key, value in values.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


class Watcher:
    """Records transfers, as the agents' side would hear of them."""

    def __init__(self) -> None:
        self.transfers: list[dict[str, Any]] = []

    @hookimpl
    async def on_conversation_transferred(self, conversation, to, reason, by, transfer_id):
        self.transfers.append({"conversation": conversation.id, "to": to, "reason": reason, "by": by, "id": transfer_id})


async def say(client, *texts: str, ids: list[str] | None = None, number: str = "n1", name: str = NAME) -> None:
    """The customer writes (through the recorder provider's signed webhook)."""
    ids = ids or [f"c-{uuid.uuid4().hex}" for _ in texts]
    body = json.dumps({"messages": [{"id": i, "from": CUSTOMER, "name": name, "text": t} for i, t in zip(ids, texts)]}).encode()
    response = await post_signed(client, body, number=number)
    assert response.status_code == 200, response.text


async def conversation_with_history(client, host, number: str = "n1") -> Conversation:
    await say(client, *[text for _, text in HISTORY], ids=[i for i, _ in HISTORY], number=number)
    conversation = await host.conversation_with(number, CUSTOMER)
    await eventually(_inbound_handled(conversation.id, len(HISTORY)))
    return conversation


def _inbound_handled(conversation_id: int, count: int):
    from core.storage.models import Job

    async def check() -> bool:
        stored = await Message.filter(conversation_id=conversation_id, direction="in").count()
        pending = await Job.filter(kind="inbound").count()
        return stored == count and pending == 0
    return check


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """PDF text without line breaks (long lines wrap)."""
    return " ".join(text.split())


async def outbound(conversation_id: int) -> list[Message]:
    return await Message.filter(conversation_id=conversation_id, direction="out").order_by("id")


def write_template(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# One fake provider API per test module (starting and stopping one costs ~0.2 s), reset per test.
# Test modules import both fixtures.


@pytest.fixture(scope="module")
def shared_fake_api():
    with running_fake_api() as fake:
        yield fake


@pytest.fixture
def fake(shared_fake_api: FakeApi) -> FakeApi:
    """The recorder provider's API: what it received, scripted answers, a delay; empty at the start."""
    with shared_fake_api._lock:
        shared_fake_api.received.clear()
        shared_fake_api.script.clear()
    shared_fake_api.delay = 0.0
    return shared_fake_api
