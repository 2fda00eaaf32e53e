"""The out-of-hours auto-reply of docs/writing-plugins.md (examples/out_of_hours.py), against the
app with the kit's loopback channel: one answer per conversation per closed period, in the
configured timezone, judged by when the customer wrote."""

from __future__ import annotations

import importlib.util
import re
import sys
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.config import ConfigError
from core.storage.models import Message
from core.testing import LoopbackChannel, eventually, make_runtime, started

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "out_of_hours.py"
MEXICO = ZoneInfo("America/Mexico_City")
SETTINGS = {"timezone": "America/Mexico_City", "opens": "09:00", "closes": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}


def load():
    spec = importlib.util.spec_from_file_location("out_of_hours", SOURCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["out_of_hours"] = module  # as `[plugins] modules` imports it (pydantic resolves its annotations there)
    spec.loader.exec_module(module)
    return module


out_of_hours = load()


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in January 2026 in Mexico City (Friday the 2nd, Monday the 5th)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=MEXICO)


def app(tmp_path: Path, database_url: str, channel: LoopbackChannel, settings: dict = SETTINGS):
    return make_runtime(tmp_path, {"loopback": channel, "out_of_hours": out_of_hours}, database_url=database_url,
                        numbers=[channel.number()], plugin_settings={"out_of_hours": settings})


async def idle() -> bool:
    """Every job has run: inbound messages have been through the workflows, replies sent."""
    from core.storage.models import Job

    return not await Job.filter(state__in=["ready", "running"]).exists()


async def test_one_answer_per_conversation_per_closed_period(tmp_path, hookline_database_url):
    channel = LoopbackChannel()
    async with started(app(tmp_path, hookline_database_url, channel)) as client:
        moments = [
            (local(2, 19), 1),      # Friday after closing: answered
            (local(2, 23), 1),      # the same evening: already answered
            (local(3, 11), 1),      # Saturday: still the period that began on Friday at 18:00
            (local(5, 8, 59), 1),   # Monday before opening: the same period
            (local(5, 10), 1),      # Monday, open: agents answer
            (local(5, 18), 2),      # Monday at closing time: a new period
        ]
        for moment, answers in moments:
            assert (await channel.receive(client, "¿hola?", at=moment)).status_code == 200
            await eventually(idle, what=f"the message written {moment:%a %H:%M} handled")
            assert len(channel.sent) == answers, f"after a message written {moment:%a %H:%M}: {channel.texts}"
        await channel.receive(client, "¿hola?", sender="+15550100999", at=local(2, 20))  # another customer
        await eventually(idle)
    assert channel.texts[0] == "Thanks for writing! We're closed now and answer from 09:00 to 18:00 (America/Mexico_City)."
    assert [item.to for item in channel.sent] == ["+15550100123", "+15550100123", "+15550100999"]


async def test_a_conversation_the_bot_owns_gets_no_auto_reply(tmp_path, hookline_database_url):
    channel = LoopbackChannel()
    runtime = app(tmp_path, hookline_database_url, channel)
    async with started(runtime) as client:
        conversation = await runtime.host.conversation_with("n1", "+15550100123")
        await runtime.host.transfer(conversation, "bot")
        await channel.receive(client, "hola", at=local(3, 12))
        await eventually(idle)
        assert await Message.filter(direction="in").count() == 1
    assert channel.sent == []


@pytest.mark.parametrize(("moment", "since"), [
    (local(2, 17, 59), None),
    (local(2, 18), local(2, 18)),
    (local(4, 9), local(2, 18)),              # Sunday: Friday's closing
    (local(5, 8), local(2, 18)),
    (local(5, 9), None),
    (datetime(2026, 1, 6, 0, 30, tzinfo=ZoneInfo("UTC")), local(5, 18)),  # Monday 18:30 in Mexico City
])
def test_closed_periods_begin_at_the_last_closing_time(moment, since):
    settings = out_of_hours.OutOfHoursSettings(**SETTINGS)
    assert out_of_hours.closed_since(settings, moment) == since


def test_bad_settings_are_configuration_errors_naming_the_key(tmp_path):
    for key, value, words in (("timezone", "Mars/Olympus", "unknown timezone"), ("days", ["mon", "funday"], "unknown day"),
                              ("closes", "08:00", "opens must be earlier than closes")):
        with pytest.raises(ConfigError) as raised:
            app(tmp_path, None, LoopbackChannel(), {**SETTINGS, key: value})
        assert words in str(raised.value) and "plugins.out_of_hours" in str(raised.value)


def test_the_tutorial_shows_this_very_code():
    """docs/writing-plugins.md quotes examples/out_of_hours.py whole: the docs cannot drift from what is tested."""
    doc = (ROOT / "docs" / "writing-plugins.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert SOURCE.read_text(encoding="utf-8") in blocks, "docs/writing-plugins.md must quote examples/out_of_hours.py in a python block"


def test_settings_defaults_are_a_working_week():
    settings = out_of_hours.OutOfHoursSettings()
    assert (settings.opens, settings.closes, settings.days) == (time(9), time(18), ["mon", "tue", "wed", "thu", "fri"])
