"""Handing conversations between humans and the bot; exactly-once sends; durable timers and state."""

from __future__ import annotations

import asyncio

import pytest

from core import hookimpl
from core.storage.models import Conversation, Job, Message
from tests.fake_api import running_fake_api
from tests.helpers import eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio


class Watcher:
    def __init__(self) -> None:
        self.transfers: list[tuple[str, str | None, str | None, str]] = []
        self.timers: list[tuple[str, dict]] = []

    @hookimpl
    async def on_conversation_transferred(self, conversation, to, reason, by, transfer_id):
        self.transfers.append((to, reason, by, transfer_id))

    @hookimpl
    async def on_timer(self, conversation, name, payload):
        self.timers.append((name, payload))


async def _pending_jobs() -> int:
    return await Job.all().count()


async def test_transfer_is_atomic_and_a_repeat_is_a_no_op(tmp_path, database_url):
    watcher = Watcher()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "watch"]), watch=watcher)
    async with started(runtime):
        conversation = await runtime.host.conversation_with("n1", "+15550100123")
        results = await asyncio.gather(*(runtime.host.transfer(conversation, "bot", reason="menu", by="ana") for _ in range(5)))
        assert sorted(results) == [False, False, False, False, True]
        assert (await Conversation.get(id=conversation.id)).owner.value == "bot"
        await eventually(lambda: len(watcher.transfers) == 1)
        assert watcher.transfers[0][:3] == ("bot", "menu", "ana")
        assert await runtime.host.transfer(conversation.id, "human") is True
        await eventually(lambda: len(watcher.transfers) == 2)
        assert watcher.transfers[1][0] == "human"
        assert watcher.transfers[0][3] != watcher.transfers[1][3]  # each handover has its own id
        with pytest.raises(LookupError):
            await runtime.host.transfer(999999, "bot")


async def test_a_bot_message_queued_before_a_human_took_over_is_dropped(tmp_path, database_url):
    # The fake API holds each send 1.5 s (and records it after): once bot 1's job is running and
    # past its owner check, bot 2, the takeover and the reply all happen while bot 1 is in flight,
    # even on a busy machine. (Waiting for the fake to record bot 1 was a race: its job was then
    # done and bot 2 could be claimed before the takeover.)
    with running_fake_api(delay=1.5) as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", "+15550100123")
            await runtime.host.transfer(conversation, "bot")
            first = await runtime.host.send_text(conversation, "bot 1", sender="bot")  # in flight (slow API)
            await eventually(lambda: Job.filter(kind="send", state="running").exists())
            await asyncio.sleep(0.3)  # past the owner check, inside the fake's 1.5 s
            queued = await runtime.host.send_text(conversation, "bot 2", sender="bot")  # waits behind it
            await runtime.host.transfer(conversation, "human", by="agent")
            human = await runtime.host.send_text(conversation, "agent here", sender="human")

            async def settled() -> bool:
                return await Message.filter(id__in=[first.id, queued.id, human.id], status="pending").count() == 0

            await eventually(settled)
            dropped = await Message.get(id=queued.id)
            assert dropped.status.value == "failed" and dropped.error_code == "dropped_not_owner"
            assert [r["text"] for r in fake.received] == ["bot 1", "agent here"]


async def test_a_dedupe_key_sends_once(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", "+15550100123")
            sent = await asyncio.gather(*(runtime.host.send_text(conversation, "farewell", dedupe_key="t1:farewell") for _ in range(4)))
            assert len({message.id for message in sent}) == 1
            other = await runtime.host.send_text(conversation, "farewell", dedupe_key="t2:farewell")
            assert other.id != sent[0].id
            await eventually(lambda: len(fake.received) == 2)
            await eventually(_no_jobs)
            assert [r["text"] for r in fake.received] == ["farewell", "farewell"]


async def _no_jobs() -> bool:
    return await _pending_jobs() == 0


async def test_timers_fire_on_their_plugin_only_and_plugin_state_is_kept(tmp_path, database_url):
    mine, other = Watcher(), Watcher()
    config = write_config(tmp_path, database_url, enabled=["recorder", "mine", "other"])
    runtime = runtime_for(config, mine=mine, other=other)
    async with started(runtime):
        conversation = await runtime.host.conversation_with("n1", "+15550100123")
        await runtime.host.set_plugin_state(conversation, "mine", {"step": "menu"})
        await runtime.host.set_plugin_state(conversation, "other", {"x": 1})
        assert await runtime.host.plugin_state(conversation, "mine") == {"step": "menu"}
        assert await runtime.host.plugin_state(conversation.id, "nobody") == {}
        await runtime.host.schedule("mine", "inactivity", 0.2, conversation=conversation, payload={"since": 5})
        job = await Job.get(kind="timer")
        assert job.ordering_key is None  # a pending timer must not hold up the conversation
        await eventually(lambda: mine.timers == [("inactivity", {"since": 5})])
        assert other.timers == []
        assert (await Conversation.get(id=conversation.id)).plugin_state == {"mine": {"step": "menu"}, "other": {"x": 1}}
