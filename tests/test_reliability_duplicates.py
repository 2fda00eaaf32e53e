"""Duplicate storms (docs/reliability.md): one proven webhook delivered 50 times at once, for every
provider, on SQLite and PostgreSQL → one message row, one workflow notification, and every
delivery answered with the provider's success acknowledgement. The same for a status callback:
one applied status, one `on_status_update`, every copy kept for audit.

Providers redeliver whenever an answer is slow or lost, and a busy gateway gets those copies at
the same moment; the unique index on (provider, external id) with the intake's retry of the
losing transaction, and the conditional status UPDATE, are what make them one. Meta's own
notification (the read receipt) must go out once too. The copies go to the in-process app at
once (`asyncio.gather`): they overlap at every await, and on PostgreSQL each holds its own
connection. Each test reports one line (tests/reliability.py: the terminal summary's
"reliability suite" section).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from core.storage.models import Contact, Conversation, Job, Message, StatusEvent
from tests.helpers import Inbox, eventually, started
from tests.reliability import KITS, Stopwatch, backend_of, report, sent_message

pytestmark = pytest.mark.anyio

COPIES = 50
SENDER = "+15550100123"


async def no_jobs() -> bool:
    return await Job.all().count() == 0


@pytest.mark.parametrize("provider", list(KITS))
async def test_the_same_proven_webhook_fifty_times_at_once_is_one_row_and_one_notification(tmp_path, database_url, provider):
    kit = KITS[provider]
    clock = Stopwatch()
    inbox = Inbox()
    with kit.fake() as fake:  # Meta's read receipt goes to the fake
        runtime = kit.runtime(kit.config(tmp_path, database_url, fake.url), inbox)
        async with started(runtime) as client:
            external_id = kit.external_id(1)
            delivery = kit.inbound(external_id, SENDER, "the same message, again and again")
            responses = await asyncio.gather(*(delivery.send(client) for _ in range(COPIES)))
            statuses = Counter(response.status_code for response in responses)
            acknowledged = sum(kit.acknowledged(response) for response in responses)
            assert statuses == {200: COPIES}, statuses
            assert acknowledged == COPIES

            assert await Message.filter(external_id__contains=external_id).count() == 1
            assert await Message.all().count() == 1
            assert (await Contact.all().count(), await Conversation.all().count()) == (1, 1)
            await eventually(lambda: len(inbox.inbound) >= 1, timeout=10)
            await eventually(no_jobs, timeout=10)
            await asyncio.sleep(0.3)  # a second notification would have run by now
            assert len(inbox.inbound) == 1
            if provider == "meta":
                await eventually(lambda: len(fake.server.read_receipts) >= 1, timeout=5)
                assert len(fake.server.read_receipts) == 1
    report(f"duplicate storm {provider}/{backend_of(database_url)}: {COPIES} copies of one proven message webhook at once, "
           f"{acknowledged} acknowledged, {_server_errors(statuses)} server errors; kept 1 message row, "
           f"{len(inbox.inbound)} workflow notification ({clock})")


@pytest.mark.parametrize("provider", list(KITS))
async def test_the_same_status_callback_fifty_times_at_once_is_applied_and_notified_once(tmp_path, database_url, provider):
    kit = KITS[provider]
    clock = Stopwatch()
    inbox = Inbox()
    with kit.fake() as fake:
        runtime = kit.runtime(kit.config(tmp_path, database_url, fake.url), inbox)
        async with started(runtime) as client:
            message = await sent_message(runtime, kit.number_id, SENDER, "one receipt, many copies")
            first = message.status.value  # what the send's answer said: queued, or sent for WPPConnect
            delivery = kit.status(message.external_id, kit.delivered)
            responses = await asyncio.gather(*(delivery.send(client) for _ in range(COPIES)))
            statuses = Counter(response.status_code for response in responses)
            acknowledged = sum(kit.acknowledged(response) for response in responses)
            assert statuses == {200: COPIES}, statuses
            assert acknowledged == COPIES

            assert (await Message.get(id=message.id)).status.value == "delivered"
            events = await StatusEvent.filter(message_id=message.id).order_by("id").values_list("raw_status", "applied")
            assert events == [(events[0][0], True), (kit.delivered, True)] + [(kit.delivered, False)] * (COPIES - 1)
            await eventually(no_jobs, timeout=10)
            await asyncio.sleep(0.3)
            assert inbox.statuses == [first, "delivered"]
    report(f"duplicate storm {provider}/{backend_of(database_url)}: {COPIES} copies of one proven status callback at once, "
           f"{acknowledged} acknowledged, {_server_errors(statuses)} server errors; kept {len(events) - 1} status events, "
           f"1 applied, 1 on_status_update ({clock})")


def _server_errors(statuses: Counter[int]) -> int:
    return sum(count for status, count in statuses.items() if status >= 500)
