"""The GCRA rate limiter (core/ratelimit.py), on SQLite and on PostgreSQL: the burst, the steady
interval between reserved slots, refusal of a slot too far off, refunds — and exactness when
independent processes share one key, as instances on one database do.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.ratelimit import Reservation, acquire, refund
from core.storage.models import RateLimitRow
from core.types import RateLimit
from tests.helpers import storage

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parent.parent
MS = 1000  # microseconds


async def take(key: str, limit: RateLimit, count: int, max_wait: float = 60.0) -> list[Reservation]:
    return [await acquire(key, limit, max_wait) for _ in range(count)]


def most_in_a_window(times: Sequence[float], width: float) -> int:
    """The largest number of `times` inside any window [t, t + width] (t one of them)."""
    ordered = sorted(times)
    best, end = 0, 0
    for start, moment in enumerate(ordered):
        while end < len(ordered) and ordered[end] <= moment + width:
            end += 1
        best = max(best, end - start)
    return best


async def test_a_quiet_key_gives_its_burst_at_once_then_one_slot_per_interval(database_url):
    async with storage(database_url):
        slots = await take("number:n1", RateLimit(10, 1.0, 3), 7)
    assert all(slot.granted for slot in slots)
    assert [slot.wait for slot in slots[:3]] == [0.0, 0.0, 0.0]
    # After the burst, slots are exactly one interval (100 ms) apart, counted from the first.
    assert [slot.slot_us - slots[0].slot_us for slot in slots[3:]] == [100 * MS, 200 * MS, 300 * MS, 400 * MS]
    assert 0.3 < slots[-1].wait <= 0.4  # the caller is told to sleep until its slot


async def test_concurrent_callers_get_distinct_slots_an_interval_apart(database_url):
    limit = RateLimit(50, 1.0, 1)  # 20 ms
    async with storage(database_url):
        slots = await asyncio.gather(*(acquire("shared", limit, 60.0) for _ in range(12)))
    assert all(slot.granted for slot in slots)
    ordered = sorted(slot.slot_us for slot in slots)
    assert [later - earlier for earlier, later in zip(ordered, ordered[1:])] == [20 * MS] * 11


async def test_a_rate_over_a_longer_period_and_a_fractional_interval(database_url):
    async with storage(database_url):
        slots = await take("recipient:n1:+1555", RateLimit(1, 6.0, 2), 4)
        thirds = await take("thirds", RateLimit(3, 1.0, 1), 3)
    assert [slot.slot_us - slots[0].slot_us for slot in slots[2:]] == [6_000 * MS, 12_000 * MS]
    # 1/3 s is rounded up to whole microseconds: never faster than the limit.
    assert [slot.slot_us - thirds[0].slot_us for slot in thirds[1:]] == [333_334, 666_668]


async def test_a_slot_too_far_off_reserves_nothing_and_says_when_to_come_back(database_url):
    # 250 ms between slots: the asks themselves may take up to 150 ms on a busy machine (three
    # transactions) before the fourth slot comes within reach and the test means nothing.
    limit = RateLimit(4, 1.0, 1)
    async with storage(database_url):
        granted = await take("busy", limit, 3, max_wait=0.6)  # slots at 0, 250 and 500 ms
        refused = await take("busy", limit, 2, max_wait=0.6)  # 750 ms is too far: twice the same answer
        row = await RateLimitRow.get(name="busy")
        await asyncio.sleep(refused[-1].retry_after)
        later = await acquire("busy", limit, 0.6)
    assert all(slot.granted for slot in granted)
    assert [slot.granted for slot in refused] == [False, False]
    assert [slot.slot_us - granted[0].slot_us for slot in refused] == [750 * MS, 750 * MS]
    assert row.tat_us == granted[-1].tat_us  # nothing was reserved by the refusals
    for slot in refused:
        assert 0.6 < slot.wait <= 0.75 and slot.retry_after == pytest.approx(slot.wait - 0.6, abs=1e-6)
    # Coming back when told, the slot is within reach: the one that was refused.
    assert later.granted and later.slot_us == refused[0].slot_us and later.wait <= 0.6


async def test_a_key_left_alone_has_its_burst_again(database_url):
    limit = RateLimit(20, 1.0, 2)  # 50 ms
    async with storage(database_url):
        first = await take("idle", limit, 4)
        await asyncio.sleep(0.25)  # its TAT (4 × 50 ms after the first ask) has passed
        again = await take("idle", limit, 3)
    # Slots, not waits: the waits shrink by however long a busy machine took between the asks.
    assert [slot.wait for slot in first[:2]] == [0.0, 0.0]
    assert first[2].slot_us - first[0].slot_us >= 50 * MS and first[3].slot_us - first[0].slot_us >= 100 * MS
    assert [slot.wait for slot in again[:2]] == [0.0, 0.0]
    assert again[2].slot_us - again[0].slot_us == 50 * MS


async def test_refund_gives_back_the_last_slot_only(database_url):
    limit = RateLimit(10, 1.0, 1)
    async with storage(database_url):
        first, second = await take("refund", limit, 2)
        assert await refund(second) is True
        assert await refund(second) is False  # once
        third = await acquire("refund", limit, 60.0)
        assert third.slot_us == second.slot_us  # the slot given back was taken again
        await asyncio.sleep(0.002)
        fourth = await acquire("refund", limit, 60.0)
        assert await refund(third) is False  # someone reserved after it: it stays spent
        refused = await acquire("refund", limit, 0.0)
        assert await refund(refused) is False
    assert fourth.slot_us == third.slot_us + 100 * MS


async def _hammers(url: str, key: str, limit: RateLimit, *, processes: int, tasks: int, seconds: float,
                   max_wait: float) -> list[list[tuple[int, float]]]:
    """Independent processes (own interpreter, own connection), started together on one key."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.rate_hammer", url, key, str(limit.messages), str(limit.burst), str(max_wait),
            str(tasks), str(seconds), cwd=REPO, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        for process in started:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line.strip() == b"ready", (line, await process.stderr.read())
        start = time.time() + 0.2
        for process in started:
            process.stdin.write(f"{start}\n".encode())
            await process.stdin.drain()
        results = []
        for process in started:
            out, err = await asyncio.wait_for(process.communicate(), seconds + 30)
            assert process.returncode == 0, err.decode()
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_instances_sharing_a_key_never_exceed_limit_plus_burst_and_reach_the_limit(database_url):
    """Two processes, 20 senders each, on one key of 80/s with a burst of 8, for 2 s: more senders
    than the limit has slots within `max_wait`, so some are refused and come back."""
    limit, seconds = RateLimit(80, 1.0, 8), 2.0
    async with storage(database_url):  # migrated (SQLite) before the processes open it
        pass
    results = await _hammers(database_url, "number:shared", limit, processes=2, tasks=20, seconds=seconds, max_wait=0.2)
    slots = [slot / 1_000_000 for sends in results for slot, _ in sends]
    sent = [moment for sends in results for _, moment in sends]
    assert all(len(sends) > 30 for sends in results), [len(sends) for sends in results]  # both took part
    # Never more than limit + burst in any second, by the database's clock: what the limiter promises.
    assert most_in_a_window(slots, 1.0) <= 80 + 8
    # And no send before its slot (one machine: the database's clock is the processes'). A send can
    # only be late — by as much as a busy machine makes it — which no limiter can take back.
    early = [slot - moment for sends in results for slot, moment in sends if moment < slot / 1_000_000 - 0.002]
    assert early == []
    # And close to the limit: after the first half second, at least 95% of the rate.
    first = min(slots)
    steady = [moment for moment in slots if first + 0.5 <= moment < first + seconds]
    assert len(steady) >= 0.95 * 80 * (seconds - 0.5), len(steady)
    assert len(steady) <= 80 * (seconds - 0.5) + 1
