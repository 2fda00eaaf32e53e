"""What agents have read: unread counts per conversation, and moving the read marker.

A conversation keeps the id of the newest message an agent has seen (`last_read_message_id`);
its unread count is the inbound messages after it. One shared marker per conversation, not one
per agent: a team works one inbox, and a message one agent has read is no longer news to the rest.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from tortoise.connection import get_connection

from core.storage.sql import query

if TYPE_CHECKING:
    from core.events import EventBus

_UNREAD = (
    "SELECT c.id AS id, COUNT(m.id) AS unread FROM hookline_conversation c"
    " JOIN hookline_message m ON m.conversation_id = c.id AND m.direction = 'in' AND m.id > c.last_read_message_id"
    " WHERE c.id IN ({ids}) GROUP BY c.id"
)
_MARK_READ = (
    "UPDATE hookline_conversation SET last_read_message_id = ?"
    " WHERE id = ? AND last_read_message_id < ? RETURNING id"
)
_NEWEST = "SELECT MAX(id) AS newest FROM hookline_message WHERE conversation_id = ?"


async def unread_counts(conversation_ids: Collection[int]) -> dict[int, int]:
    """Unread inbound messages of each conversation (0 for those with none), in one query."""
    ids = [int(i) for i in conversation_ids]
    if not ids:
        return {}
    rows = await query(get_connection("default"), _UNREAD.format(ids=", ".join("?" * len(ids))), ids)
    counts = dict.fromkeys(ids, 0)
    counts.update({row["id"]: int(row["unread"]) for row in rows})
    return counts


async def unread_count(conversation_id: int) -> int:
    return (await unread_counts([conversation_id]))[conversation_id]


async def mark_read(conversation_id: int, events: EventBus) -> bool:
    """Everything in the conversation now counts as read; other agents' inboxes hear of it."""
    connection = get_connection("default")
    newest = (await query(connection, _NEWEST, [conversation_id]))[0]["newest"]
    if newest is None:
        return False
    moved = await query(connection, _MARK_READ, [newest, conversation_id, newest])
    if moved:
        await events.conversation_updated(conversation_id)
    return bool(moved)
