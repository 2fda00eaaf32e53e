"""Per-conversation order: workflows see one conversation's messages one at a time, in stored order."""

from __future__ import annotations

import asyncio

import pytest

from core import hookimpl
from core.storage.models import Message
from tests.helpers import eventually, inbound_body, post_signed, runtime_for, started, write_config

pytestmark = pytest.mark.anyio


class SlowRecorder:
    """Yields inside the hook so that overlapping calls would interleave and be caught."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (conversation id, message id)
        self.active: dict[int, int] = {}
        self.overlaps = 0

    @hookimpl
    async def on_inbound_message(self, message, conversation):
        self.active[conversation.id] = self.active.get(conversation.id, 0) + 1
        if self.active[conversation.id] > 1:
            self.overlaps += 1
        await asyncio.sleep(0.001)
        self.seen.append((conversation.id, message.id))
        self.active[conversation.id] -= 1


async def test_two_hundred_concurrent_messages_reach_the_workflow_in_stored_order(tmp_path, database_url):
    recorder = SlowRecorder()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), recorder)
    async with started(runtime) as client:
        bodies = [inbound_body((f"ord-{i:03d}", "+15550100123", f"message {i}")) for i in range(200)]
        responses = await asyncio.gather(*(post_signed(client, body) for body in bodies))
        assert {response.status_code for response in responses} == {200}
        await eventually(lambda: len(recorder.seen) == 200, timeout=60)
        stored = await Message.all().order_by("id").values_list("id", flat=True)
    assert [message_id for _, message_id in recorder.seen] == list(stored)
    assert recorder.overlaps == 0


async def test_a_slow_conversation_does_not_hold_up_another(tmp_path, database_url):
    release = asyncio.Event()
    seen: list[str] = []

    class Blocking:
        @hookimpl
        async def on_inbound_message(self, message):
            if message.text == "block":
                await release.wait()
            seen.append(message.text)

    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), Blocking())
    async with started(runtime) as client:
        await post_signed(client, inbound_body(("s1", "+15550000001", "block")))
        await post_signed(client, inbound_body(("s2", "+15550000001", "after block")))
        await post_signed(client, inbound_body(("s3", "+15550000002", "other conversation")))
        await eventually(lambda: seen == ["other conversation"])
        release.set()
        await eventually(lambda: seen == ["other conversation", "block", "after block"])
