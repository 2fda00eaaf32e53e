"""Reading `hookline_event` in an order that no later commit can change.

Event ids come from a sequence at INSERT time, but on PostgreSQL transactions commit in another
order: a reader that delivered id 12 would never go back for id 11 committed after it. So on
PostgreSQL a stream's position is a cursor over (transaction id, event id), where the
transaction id is `pg_current_xact_id()` of the transaction that stored the row (a column the
database fills, see migration 0007), and a read only delivers rows whose transaction id is below
a *horizon*: the oldest transaction still running in this database at the read's snapshot
(`pg_snapshot_xmin(pg_current_snapshot())`, ignoring transactions positively known to belong to
other databases, which cannot write this table). Every transaction below the horizon has ended,
so no row can ever appear below it later, and a cursor ordered by (txid, id) never skips one.
Rows above the horizon are committed but wait, usually milliseconds, for an older transaction;
the read reports them as `held` so the caller re-reads soon.

SQLite runs one write transaction at a time (the write lock is held from the first write to the
commit, in this and in every other process on the file), so ids are already in commit order and
the cursor is the id alone (its txid is always 0).

SSE ids stay the plain event id: a client resuming with one is put back at that row's cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from core.storage.sql import from_json, query


@dataclass(frozen=True, order=True, slots=True)
class Cursor:
    """A position in delivery order: after every row at or below (txid, id)."""

    txid: int
    id: int


START = Cursor(0, 0)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    cursor: Cursor
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    events: list[StoredEvent]
    cursor: Cursor  # where the next read continues
    held: bool  # committed rows wait behind an older open transaction: read again soon


# Rows after a cursor, with the snapshot they were read in: the horizon is computed from it.
_PG_AFTER = (
    "SELECT (SELECT pg_current_snapshot()::text) AS snapshot, id, txid, kind, data FROM hookline_event"
    " WHERE (txid, id) > (?, ?) ORDER BY txid, id LIMIT ?"
)
_PG_SNAPSHOT = "SELECT pg_current_snapshot()::text AS snapshot"
# Which of these running transactions a backend of another database runs: those never write our
# table. Asked after the snapshot was taken, which is safe: an xid found here is another
# database's for good, and one that ended meanwhile is not found and so counts as ours (the
# horizon errs low: a row is delivered a read later, never skipped).
_PG_ELSEWHERE = (
    "SELECT x FROM unnest(?::bigint[]) AS x WHERE EXISTS (SELECT 1 FROM pg_stat_get_activity(NULL) AS a"
    " WHERE a.backend_xid = x::text::xid8::xid"
    " AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))"
)
_PG_RESUME = "SELECT txid, id FROM hookline_event WHERE id <= ? ORDER BY id DESC LIMIT 1"

_SQLITE_AFTER = "SELECT id, kind, data FROM hookline_event WHERE id > ? ORDER BY id LIMIT ?"
_SQLITE_EDGE = "SELECT max(id) AS id FROM hookline_event"

_LAST_ID = 2**63 - 1  # a cursor (txid, _LAST_ID) is past every row of txid and before the next txid


@dataclass(frozen=True, slots=True)
class _Snapshot:
    xmax: int  # the first transaction id not yet assigned
    running: tuple[int, ...]  # transactions in progress (xmin is the least of them)

    @classmethod
    def parse(cls, text: str) -> _Snapshot:
        """`pg_snapshot` text: `xmin:xmax:xip,xip,…`."""
        _, xmax, running = text.split(":")
        return cls(int(xmax), tuple(int(xid) for xid in running.split(",") if xid))


async def _horizon(connection: BaseDBAsyncClient, snapshot: _Snapshot, below: int | None = None) -> int:
    """The oldest transaction of this database running at `snapshot` (else its xmax): every
    transaction below it had ended. With `below`, only running transactions older than that are
    considered — enough to classify rows whose txid is at most `below` — so the common case (no
    such transaction) costs no query."""
    suspects = [xid for xid in snapshot.running if below is None or xid < below]
    if not suspects:
        return snapshot.xmax
    elsewhere = {row["x"] for row in await query(connection, _PG_ELSEWHERE, [suspects])}
    ours = [xid for xid in suspects if xid not in elsewhere]
    return min(ours) if ours else snapshot.xmax


def _postgres(connection: BaseDBAsyncClient) -> bool:
    return connection.capabilities.dialect == "postgres"


async def read_after(connection: BaseDBAsyncClient, cursor: Cursor, limit: int) -> Page:
    """The deliverable rows after `cursor`, in delivery order, at most `limit` of them."""
    if not _postgres(connection):
        rows = await query(connection, _SQLITE_AFTER, [cursor.id, limit])
        found = [StoredEvent(Cursor(0, row["id"]), row["kind"], from_json(row["data"])) for row in rows]
        return Page(found, found[-1].cursor if found else cursor, held=False)
    rows = await query(connection, _PG_AFTER, [cursor.txid, cursor.id, limit])
    if not rows:
        return Page([], cursor, held=False)
    horizon = await _horizon(connection, _Snapshot.parse(rows[0]["snapshot"]), below=rows[-1]["txid"])
    ready = [StoredEvent(Cursor(row["txid"], row["id"]), row["kind"], from_json(row["data"]))
             for row in rows if row["txid"] < horizon]
    return Page(ready, ready[-1].cursor if ready else cursor, held=len(ready) < len(rows))


async def live_edge(connection: BaseDBAsyncClient) -> Cursor:
    """Where a stream that asks for what happens next starts: past every deliverable row."""
    if not _postgres(connection):
        rows = await query(connection, _SQLITE_EDGE, [])
        return Cursor(0, rows[0]["id"] or 0)
    rows = await query(connection, _PG_SNAPSHOT, [])
    horizon = await _horizon(connection, _Snapshot.parse(rows[0]["snapshot"]))
    return Cursor(horizon - 1, _LAST_ID)


async def resume_point(connection: BaseDBAsyncClient, event_id: int) -> Cursor:
    """The cursor of an event a client saw (`Last-Event-ID`). An id that names no stored row
    resumes after the nearest earlier one; 0 replays everything."""
    if event_id <= 0:
        return START
    if not _postgres(connection):
        return Cursor(0, event_id)
    rows = await query(connection, _PG_RESUME, [event_id])
    return Cursor(rows[0]["txid"], rows[0]["id"]) if rows else START
