"""Outbound sending through the host: over real HTTP to a fake provider API (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from core.storage.models import Job, Message, StatusEvent
from core.types import DeliveryStatus, Media
from tests.fake_api import running_fake_api
from tests.helpers import eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

CUSTOMER = "+15550100123"
STATUS_CALLBACK = "https://hookline.example.com/webhooks/whatsapp/recorder/status"


def settled(message_id: int, *statuses: DeliveryStatus):
    async def check() -> bool:
        message = await Message.get(id=message_id)
        return message.status in statuses

    return check


async def no_jobs() -> bool:
    return await Job.all().count() == 0


def received(fake: Any, count: int):
    return lambda: len(fake.received) >= count


async def test_text_reaches_the_api_and_ends_queued_with_the_provider_id(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            host = runtime.host
            conversation = await host.conversation_with("n1", CUSTOMER, "Ana")
            message = await host.send_text(conversation, "Hola Ana")
            assert message.status is DeliveryStatus.PENDING
            assert message.external_id is None
            await eventually(settled(message.id, DeliveryStatus.QUEUED), timeout=5)
            stored = await Message.get(id=message.id)
            assert stored.external_id == f"FAKE000001-{message.id}"
            assert (stored.direction.value, stored.kind, stored.text, stored.provider) == ("out", "text", "Hola Ana", "recorder")
            event = await StatusEvent.get(message_id=message.id)
            assert (event.raw_status, event.status, event.applied, event.external_id) == (
                "queued", DeliveryStatus.QUEUED, True, stored.external_id,
            )
            await eventually(no_jobs, timeout=5)
    assert fake.received == [
        {"id": message.id, "to": CUSTOMER, "text": "Hola Ana", "media_url": None, "status_callback": STATUS_CALLBACK,
         "reply_to": None, "interactive": None}
    ]


async def test_rate_limited_send_is_retried_and_ends_queued(tmp_path, database_url):
    with running_fake_api() as fake:
        fake.answer((429, {"message": "slow down"}), (201, {"sid": "SM-second-try", "status": "queued"}))
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            message = await runtime.host.send_text(conversation.id, "again")
            await eventually(settled(message.id, DeliveryStatus.QUEUED, DeliveryStatus.FAILED), timeout=5)
            await eventually(no_jobs, timeout=5)
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.external_id, stored.error_code) == (DeliveryStatus.QUEUED, "SM-second-try", None)
    assert [request["text"] for request in fake.received] == ["again", "again"]


async def test_permanent_refusal_ends_failed_with_the_provider_code_and_is_not_retried(tmp_path, database_url):
    with running_fake_api() as fake:
        fake.answer((400, {"code": 21211, "message": "Invalid 'To' Phone Number"}))
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", "+1000")
            message = await runtime.host.send_text(conversation, "hello?")
            await eventually(settled(message.id, DeliveryStatus.FAILED, DeliveryStatus.QUEUED), timeout=5)
            await eventually(no_jobs, timeout=5)  # done, not buried and not waiting for a retry
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.error_code, stored.error_text, stored.external_id) == (
                DeliveryStatus.FAILED, "21211", "Invalid 'To' Phone Number", None,
            )
            event = await StatusEvent.get(message_id=message.id)
            assert (event.status, event.error_code, event.error_text, event.applied) == (
                DeliveryStatus.FAILED, "21211", "Invalid 'To' Phone Number", True,
            )
    assert len(fake.received) == 1


async def test_unreachable_api_is_retried_until_it_answers(tmp_path, database_url):
    with running_fake_api() as fake:
        # Port 9 on loopback refuses connections: the API is down when the first attempts run.
        runtime = runtime_for(write_config(tmp_path, database_url, api_url="http://127.0.0.1:9"))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            message = await runtime.host.send_text(conversation, "are you there")

            async def failed_twice() -> bool:
                job = await Job.get_or_none(kind="send")
                return job is not None and job.attempts >= 2 and "cannot reach" in (job.last_error or "")

            await eventually(failed_twice, timeout=5)
            assert (await Message.get(id=message.id)).status is DeliveryStatus.PENDING
            runtime.host.number("n1").settings.api_url = fake.url  # the API comes back
            await eventually(settled(message.id, DeliveryStatus.QUEUED, DeliveryStatus.FAILED), timeout=5)
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.external_id) == (DeliveryStatus.QUEUED, f"FAKE000001-{message.id}")
    assert len(fake.received) == 1


async def test_transient_errors_past_max_attempts_end_failed_retries_exhausted(tmp_path, database_url):
    with running_fake_api() as fake:
        fake.answer(*[(503, {"message": "unavailable"})] * 3)
        config = write_config(tmp_path, database_url, api_url=fake.url, queue={"max_attempts": 3})
        runtime = runtime_for(config)
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            message = await runtime.host.send_text(conversation, "doomed")
            await eventually(settled(message.id, DeliveryStatus.FAILED, DeliveryStatus.QUEUED), timeout=5)
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.error_code) == (DeliveryStatus.FAILED, "retries_exhausted")
            assert "503" in stored.error_text
            # The message is marked failed by the dead handler, then the job is buried: wait for both.
            async def buried() -> bool:
                return (await Job.get(kind="send")).state == "dead"

            await eventually(buried, timeout=5)
            assert (await Job.get(kind="send")).attempts == 3
    assert len(fake.received) == 3


async def test_media_message_sends_its_url_and_caption(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            media = Media(content_type="application/pdf", url="https://files.example.com/invoice.pdf", filename="invoice.pdf")
            message = await runtime.host.send_media(conversation, media, caption="Your invoice")
            await eventually(settled(message.id, DeliveryStatus.QUEUED, DeliveryStatus.FAILED), timeout=5)
            stored = await Message.get(id=message.id)
            assert (stored.status, stored.kind) == (DeliveryStatus.QUEUED, "document")
            assert [(item["url"], item["content_type"], item["filename"]) for item in stored.media] == [
                ("https://files.example.com/invoice.pdf", "application/pdf", "invoice.pdf")
            ]
    assert [(r["text"], r["media_url"]) for r in fake.received] == [("Your invoice", "https://files.example.com/invoice.pdf")]


async def test_one_conversations_messages_reach_the_api_in_queued_order(tmp_path, database_url):
    with running_fake_api() as fake:
        fake.answer((429, {"message": "slow down"}))  # the first send backs off; the rest must wait
        config = write_config(tmp_path, database_url, api_url=fake.url, queue={"concurrency": 8})
        runtime = runtime_for(config)
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", CUSTOMER)
            messages = [await runtime.host.send_text(conversation, f"part {n}") for n in range(5)]

            async def all_queued() -> bool:
                return await Message.filter(id__in=[m.id for m in messages], status=DeliveryStatus.QUEUED).count() == 5

            await eventually(all_queued, timeout=5)
    assert [request["text"] for request in fake.received] == ["part 0", "part 0", "part 1", "part 2", "part 3", "part 4"]
