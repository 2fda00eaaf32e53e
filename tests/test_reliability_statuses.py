"""Statuses out of order (docs/reliability.md): hypothesis delivers a sent message's status
callbacks in any order, repeated, some of them at once, for every provider on SQLite and
PostgreSQL. Whatever the order:

* the stored status is the highest-ranked one seen (core/types.py `STATUS_RANK`: the send's own
  answer and every callback the provider's status map knows);
* it never moved backwards: replaying the message's StatusEvent rows in id order (the order the
  intake applied them — one transaction at a time per provider id), an event is `applied`
  exactly when it outranked everything before it;
* workflows' `on_status_update` saw exactly the applied events, in that order: forward moves only.

Callbacks are grouped into waves: the callbacks of one wave are posted at once, the waves one
after the other. Examples are few (25 per provider and backend), derandomized and without an
example database, so CI runs the same cases every time; `deadline=None` because each example
waits for real HTTP sends and the queue. The app runs once per test in an event loop of its own
(tests/reliability.py `app_in_thread`) and every example uses a fresh sent message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core import hookimpl
from core.runtime import Runtime
from core.storage.models import Job, Message, StatusEvent
from core.types import STATUS_RANK, DeliveryStatus
from tests.helpers import CheckedClient, eventually
from tests.reliability import KITS, Kit, Stopwatch, app_in_thread, backend_of, report, sent_message

EXAMPLES = 25


class StatusLog:
    """A workflow that records every `on_status_update` it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str | None]] = []  # (message id, event id, event status)

    @hookimpl
    async def on_status_update(self, message: Message, event: StatusEvent) -> None:
        self.calls.append((message.id, event.id, event.status.value if event.status else None))


class Pool:
    """Sent messages, each to its own customer (so sends run at once and no per-customer limit
    slows them): made up front, and one more whenever hypothesis asks for more (shrinking)."""

    def __init__(self, runtime: Runtime, kit: Kit) -> None:
        self.runtime, self.kit = runtime, kit
        self.ready: list[Message] = []
        self.used: list[Message] = []
        self.made = 0

    async def fill(self, count: int) -> None:
        self.ready.extend(await asyncio.gather(*(self._one() for _ in range(count))))

    async def _one(self) -> Message:
        self.made += 1
        n = self.made
        return await sent_message(self.runtime, self.kit.number_id, f"+1555{n:07d}", f"message {n}", timeout=20)

    async def take(self) -> Message:
        message = self.ready.pop() if self.ready else await self._one()
        self.used.append(message)
        return message


def rank(status: DeliveryStatus | str | None) -> int:
    return -1 if status is None else STATUS_RANK[DeliveryStatus(status)]


async def deliver_waves(client: CheckedClient, kit: Kit, pool: Pool, status_map: dict[str, DeliveryStatus],
                        waves: Sequence[Sequence[str]]) -> None:
    """One example: its callbacks for a fresh message, then the stored status and its history."""
    message = await pool.take()
    for wave in waves:
        responses = await asyncio.gather(*(kit.status(message.external_id, raw).send(client) for raw in wave))
        assert all(kit.acknowledged(response) for response in responses), [(r.status_code, r.text) for r in responses]
    seen = [message.status, *(status_map.get(raw) for wave in waves for raw in wave)]
    stored = await Message.get(id=message.id)
    assert rank(stored.status) == max(rank(status) for status in seen), (stored.status, waves)

    events = await StatusEvent.filter(message_id=message.id).order_by("id")
    assert len(events) == 1 + sum(map(len, waves))  # every callback kept, applied or not
    best = rank(DeliveryStatus.PENDING)
    for event in events:  # the history replayed: applied exactly when it moved the message forward
        forward = event.status is not None and rank(event.status) > best
        assert event.applied == forward, ([(e.raw_status, e.status, e.applied) for e in events], waves)
        best = max(best, rank(event.status)) if forward else best
    assert best == rank(stored.status)


async def workflows_saw_forward_moves_only(pool: Pool, log: StatusLog) -> int:
    """After the queue drained: per message, the notified events are its applied ones, in order."""
    async def drained() -> bool:
        return await Job.all().count() == 0

    await eventually(drained, timeout=30)
    await asyncio.sleep(0.2)
    for message in pool.used:
        applied = await StatusEvent.filter(message_id=message.id, applied=True).order_by("id").values_list("id", "status")
        notified = [(event_id, status) for message_id, event_id, status in log.calls if message_id == message.id]
        assert notified == [(event_id, status.value) for event_id, status in applied], (message.id, notified, applied)
        ranks = [rank(status) for _, status in notified]
        assert ranks == sorted(set(ranks)), (message.id, notified)  # strictly forward
    return sum(1 for message_id, _, _ in log.calls if message_id in {m.id for m in pool.used})


@pytest.mark.parametrize("provider", list(KITS))
def test_statuses_in_any_order_repeated_and_at_once_only_ever_move_forward(tmp_path, database_url, provider):
    kit = KITS[provider]
    clock = Stopwatch()
    log = StatusLog()
    counts = {"examples": 0, "callbacks": 0}
    with kit.fake() as fake:
        runtime = kit.runtime(kit.config(tmp_path, database_url, fake.url), log)
        with app_in_thread(runtime) as (portal, client):
            status_map = dict(runtime.dispatch.provider(kit.name).status_map)
            pool = Pool(runtime, kit)
            portal.call(pool.fill, EXAMPLES)

            waves = st.lists(st.lists(st.sampled_from(list(kit.statuses)), min_size=1, max_size=4), min_size=1, max_size=5)

            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate, Phase.shrink],
                      suppress_health_check=[HealthCheck.too_slow])
            @given(st.one_of(st.permutations(list(kit.statuses)).map(lambda order: [[raw] for raw in order]), waves))
            def statuses_only_move_forward(example: list[list[str]]) -> None:
                counts["examples"] += 1
                counts["callbacks"] += sum(map(len, example))
                portal.call(deliver_waves, client, kit, pool, status_map, example)

            statuses_only_move_forward()
            notified = portal.call(workflows_saw_forward_moves_only, pool, log)
    report(f"statuses out of order {provider}/{backend_of(database_url)}: {counts['examples']} orders "
           f"({counts['callbacks']} callbacks over {len(pool.used)} sent messages), 0 stored statuses below the best seen, "
           f"0 backward moves; {notified} on_status_update calls, all forward ({clock})")
