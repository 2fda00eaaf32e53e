"""Rate limits shared by every process on one database: GCRA, one row per key, one statement per
acquisition.

The algorithm (the generic cell rate algorithm, GCRA) keeps a single number per key: its
theoretical arrival time TAT — the moment the key would be idle again had every send so far gone
out exactly at the limit's rate. For a limit of `messages` per `per_seconds` with `burst`:

    T    = per_seconds / messages     the emission interval, in whole microseconds (rounded up)
    tau  = (burst - 1) * T            how far ahead of TAT a send may be
    slot = max(now, TAT - tau)        when this caller may send;  wait = slot - now
    TAT' = max(TAT, now) + T

After a quiet spell the first `burst` callers get `now`, then one slot every T. However many
callers and processes ask, the slots of one key number at most `burst + W / T` in any window of W
(so at most limit + burst in any second of a per-second limit), because one statement —
``INSERT … ON CONFLICT (name) DO UPDATE … RETURNING`` — reads and moves TAT under the row's lock.

**Reservation.** The answer is a slot, not yes or no: the caller sleeps `wait`, then sends, so
concurrent senders go out T apart instead of all being refused and retrying at once. A wait
longer than `max_wait` reserves nothing (TAT stays as it was) and answers when to come back:
`wait - max_wait` later, the slot would be within `max_wait` (unless others took it meanwhile).
So a job never sleeps long holding its lease and its conversation's place in the queue.

**Clock: the database's, in integer microseconds** (``statement_timestamp()`` on PostgreSQL,
``julianday('now')`` on SQLite; each is stable within the statement). TAT is an absolute time one
instance writes and the others read: with process clocks, an instance whose clock runs 50 ms
fast would read the others' TAT as 50 ms old and send its burst on top of theirs, and one running
slow would wait for nothing. With the database's clock only durations (`wait`) leave the
database, and a duration is the same on every machine. Microseconds because T is 1 ms at
1,000 messages/s, and whole milliseconds would be 4% off at 80/s (12.5 ms). SQLite's clock ticks in
milliseconds, but it is the machine's and one SQLite file lives on one machine: that only rounds
`now`, never T, and a slot is never earlier than the true time the caller was told to wait from.

The statement is the same on both backends but for that clock expression (and uses CASE where
the backends' GREATEST and MAX differ). A row whose TAT has passed means exactly what no row
means, so rows may be deleted whenever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection

from core.storage.sql import query
from core.types import RateLimit

MICROS = 1_000_000

_NOW = {
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
    "postgres": "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000 AS BIGINT)",
}
_OLD_TAT = "hookline_rate_limit.tat_us"
_WAIT = (  # max(0, TAT - tau - now), from the row as it was
    f"CASE WHEN {_OLD_TAT} - CAST(? AS BIGINT) > excluded.asked_us"
    f" THEN {_OLD_TAT} - CAST(? AS BIGINT) - excluded.asked_us ELSE 0 END"
)
_LATER = f"CASE WHEN {_OLD_TAT} > excluded.asked_us THEN {_OLD_TAT} ELSE excluded.asked_us END"  # max(TAT, now)
_GRANTED = f"{_WAIT} <= CAST(? AS BIGINT)"
# A refusal writes only wait_us (RETURNING reads the row), so `tat_us, asked_us` keep naming the
# last reservation, which `refund` checks for.
_ACQUIRE = (
    "INSERT INTO hookline_rate_limit (name, tat_us, asked_us, wait_us)"
    " VALUES (?, {now} + CAST(? AS BIGINT), {now}, 0)"
    " ON CONFLICT (name) DO UPDATE SET"
    f" wait_us = {_WAIT},"
    f" tat_us = CASE WHEN {_GRANTED} THEN {_LATER} + CAST(? AS BIGINT) ELSE {_OLD_TAT} END,"
    f" asked_us = CASE WHEN {_GRANTED} THEN excluded.asked_us ELSE hookline_rate_limit.asked_us END"
    " RETURNING tat_us, asked_us, wait_us"
)
_STATEMENTS = {dialect: _ACQUIRE.format(now=now) for dialect, now in _NOW.items()}
_REFUND = (
    "UPDATE hookline_rate_limit SET tat_us = tat_us - CAST(? AS BIGINT)"
    " WHERE name = ? AND tat_us = CAST(? AS BIGINT) AND asked_us = CAST(? AS BIGINT) RETURNING name"
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer for one key: a slot `wait` seconds away, or (not `granted`) none, and when to ask again."""

    name: str
    granted: bool
    wait: float  # seconds from the answer to the slot (to where it would have been, when refused)
    retry_after: float  # refused: ask again this many seconds later; 0 when granted
    slot_us: int  # the slot on the database's clock, in microseconds
    tat_us: int  # the key's TAT after this answer
    asked_us: int  # when the key's last slot was reserved (this one's, when granted)
    interval_us: int


def interval_us(limit: RateLimit) -> int:
    """T in whole microseconds, rounded up so the rate is never exceeded (never below 1)."""
    return max(1, math.ceil(limit.per_seconds * MICROS / limit.messages - 1e-6))


async def acquire(
    name: str, limit: RateLimit, max_wait: float, connection: BaseDBAsyncClient | None = None
) -> Reservation:
    """Reserve the next slot of key `name` under `limit`, unless it is more than `max_wait` seconds away."""
    connection = connection or get_connection("default")
    interval = interval_us(limit)
    tolerance = (max(1, limit.burst) - 1) * interval
    bound = max(0, int(max_wait * MICROS))
    granted_when = [tolerance, tolerance, bound]
    rows = await query(connection, _STATEMENTS[connection.capabilities.dialect], [
        name, interval,  # a new row
        tolerance, tolerance,  # wait_us
        *granted_when, interval,  # tat_us
        *granted_when,  # asked_us
    ])
    row = rows[0]
    wait, tat, asked = int(row["wait_us"]), int(row["tat_us"]), int(row["asked_us"])
    granted = wait <= bound
    return Reservation(
        name=name,
        granted=granted,
        wait=wait / MICROS,
        retry_after=0.0 if granted else (wait - bound) / MICROS,
        slot_us=asked + wait if granted else tat - tolerance,
        tat_us=tat,
        asked_us=asked,
        interval_us=interval,
    )


async def refund(reservation: Reservation, connection: BaseDBAsyncClient | None = None) -> bool:
    """Give an unused slot back, once, if nobody reserved after it (else it stays spent).
    True if it was given back."""
    if not reservation.granted:
        return False
    connection = connection or get_connection("default")
    rows = await query(connection, _REFUND, [reservation.interval_us, reservation.name, reservation.tat_us, reservation.asked_us])
    return bool(rows)
