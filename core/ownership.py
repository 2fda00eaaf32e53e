"""Who owns a conversation (a human agent or the bot), and handing it over atomically.

A transfer is one conditional UPDATE plus its notification job in the same transaction: two
concurrent transfers to the bot produce one change and one `on_conversation_transferred`; a
transfer to the current owner changes nothing and notifies no one.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from tortoise.transactions import in_transaction

from core import events
from core.intake import inbound_key
from core.storage.models import Conversation
from core.types import ConversationState, Owner

if TYPE_CHECKING:
    from core.host import Host

log = logging.getLogger("hookline.ownership")


async def transfer(host: Host, conversation_id: int, to: Owner, reason: str | None = None, by: str | None = None) -> bool:
    """Give the conversation to `to`; False when it already had that owner (a no-op)."""
    async with in_transaction() as connection:
        changed = await Conversation.filter(id=conversation_id).exclude(owner=to).using_db(connection).update(
            owner=to, state=ConversationState.OPEN
        )
        if not changed:
            if not await Conversation.filter(id=conversation_id).using_db(connection).exists():
                raise LookupError(f"no conversation with id {conversation_id}")
            return False
        await host.queue.enqueue(
            connection,
            "transferred",
            # transfer_id names this handover for good: plugins key their sends on it, so a job
            # re-run after a crash never sends the same handover twice.
            {"conversation_id": conversation_id, "to": to.value, "reason": reason, "by": by, "transfer_id": uuid.uuid4().hex},
            ordering_key=inbound_key(conversation_id),
        )
        await events.record(connection, [events.conversation_updated(conversation_id)])
    host.queue.wake()
    host.events.wake()
    log.info("conversation %s transferred to %s by %s%s", conversation_id, to.value, by or "-", f" ({reason})" if reason else "")
    return True


async def close(conversation_id: int) -> None:
    await Conversation.filter(id=conversation_id).update(state=ConversationState.CLOSED)
