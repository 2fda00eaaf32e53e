"""/api/conversations: list and start (any role); hand one to the bot or a human."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.expressions import Q

from core.api.access import host_of, signed_in
from core.api.errors import MAX_ID, field_error, id_from_path, json_body, not_found, validate_query
from core.api.views import conversation_json
from core.inbox import mark_read, unread_count, unread_counts
from core.storage.models import Conversation
from core.types import ConversationState, Owner


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number_id: str | None = None
    owner: Owner | None = None
    state: ConversationState | None = None
    q: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=MAX_ID)


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number_id: str = Field(min_length=1)
    address: str = Field(min_length=3, max_length=255)
    name: str | None = Field(default=None, max_length=255)


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Owner
    reason: str | None = Field(default=None, max_length=500)


async def conversation_or_404(conversation_id: str) -> Conversation:
    row_id = id_from_path(conversation_id)
    conversation = await Conversation.get_or_none(id=row_id).prefetch_related("contact") if row_id is not None else None
    if conversation is None:
        raise not_found(f"conversation {conversation_id}")
    return conversation


async def find_conversations(query: ListQuery) -> tuple[int, list[Conversation], dict[int, int]]:
    """The total that match, the page asked for (newest activity first) and its unread counts."""
    rows = Conversation.all().prefetch_related("contact")
    if query.number_id:
        rows = rows.filter(number_id=query.number_id)
    if query.owner:
        rows = rows.filter(owner=query.owner)
    if query.state:
        rows = rows.filter(state=query.state)
    if query.q:
        rows = rows.filter(Q(contact__address__icontains=query.q) | Q(contact__name__icontains=query.q))
    total = await rows.count()
    page = await rows.order_by("-last_message_at", "-id").offset(query.offset).limit(query.limit)
    return total, page, await unread_counts([c.id for c in page])


async def list_conversations(request: Request) -> Response:
    query = validate_query(ListQuery, request)
    total, page, unread = await find_conversations(query)
    return JSONResponse({"items": [conversation_json(c, c.contact, unread[c.id]) for c in page], "total": total,
                         "limit": query.limit, "offset": query.offset})


async def create_conversation(request: Request) -> Response:
    host = host_of(request)
    body = await json_body(request, NewConversation)
    if body.number_id not in host.numbers:
        raise field_error("number_id", f"no active number {body.number_id!r}")
    conversation = await host.conversation_with(body.number_id, body.address, body.name)
    conversation = await conversation_or_404(str(conversation.id))
    return JSONResponse(conversation_json(conversation, conversation.contact, await unread_count(conversation.id)), status_code=201)


async def transfer_conversation(request: Request) -> Response:
    user = signed_in(request)
    host = host_of(request)
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    body = await json_body(request, Transfer)
    changed = await host.transfer(conversation.id, body.to, reason=body.reason, by=user.username)
    conversation = await conversation_or_404(str(conversation.id))
    return JSONResponse({"changed": changed, "conversation": conversation_json(
        conversation, conversation.contact, await unread_count(conversation.id))})


async def read_conversation(request: Request) -> Response:
    """Agents have seen everything in the conversation: its unread count becomes 0."""
    host = host_of(request)
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    await mark_read(conversation.id, host.events)
    return JSONResponse(conversation_json(conversation, conversation.contact, 0))
