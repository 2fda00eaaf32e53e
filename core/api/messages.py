"""A conversation's messages (paginated), sending text or a file, and one message's status."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.api.access import host_of
from core.api.conversations import conversation_or_404
from core.api.errors import MAX_ID, ApiError, field_error, id_from_path, json_body, not_found, validate_query
from core.api.views import message_json
from core.host import Host
from core.storage.models import Conversation, Message
from core.types import Media, Owner, ProviderError


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: int | None = Field(default=None, ge=1, le=MAX_ID)
    limit: int = Field(default=50, ge=1, le=200)


class MessageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh: bool = Field(default=False, description="Ask the provider for the current status first.")


class NewText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4096)


async def send_upload(host: Host, conversation: Conversation, upload: UploadFile, caption: str | None) -> Message:
    """An agent's file (and optional caption) into the media store and out to the customer."""
    limit = host.settings.media.max_bytes
    data = await upload.read(limit + 1)
    if not data:
        raise field_error("file", "empty file")
    if len(data) > limit:
        raise field_error("file", f"over the {limit}-byte limit")
    content_type = upload.content_type or "application/octet-stream"
    key = host.media.save(data, content_type, upload.filename)
    media = Media(content_type=content_type, filename=upload.filename, key=key)
    return await host.send_media(conversation, media, caption or None, sender=Owner.HUMAN.value)


async def list_messages(request: Request) -> Response:
    """Newest first; `next_before` is the `before` of the next (older) page, or null."""
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    page = validate_query(Page, request)
    rows = Message.filter(conversation_id=conversation.id)
    if page.before:
        rows = rows.filter(id__lt=page.before)
    found = await rows.order_by("-id").limit(page.limit + 1)
    items = found[: page.limit]
    return JSONResponse({"items": [message_json(m) for m in items],
                         "next_before": items[-1].id if len(found) > page.limit else None})


async def send_message(request: Request) -> Response:
    """JSON `{"text"}`, or multipart/form-data with `file` (and an optional `caption`)."""
    host = host_of(request)
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    if conversation.number_id not in host.numbers:
        raise ApiError(409, "number_inactive", f"number {conversation.number_id!r} is not active")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise field_error("file", "required (a file part named file)")
            caption = form.get("caption")
            message = await send_upload(host, conversation, upload, caption if isinstance(caption, str) else None)
    else:
        body = await json_body(request, NewText)
        message = await host.send_text(conversation, body.text, sender=Owner.HUMAN.value)
    return JSONResponse(message_json(message), status_code=201)


async def get_message(request: Request) -> Response:
    """One message; `?refresh=true` asks the provider for its current status first."""
    host = host_of(request)
    raw_id = request.path_params["message_id"]
    row_id = id_from_path(raw_id)
    message = await Message.get_or_none(id=row_id) if row_id is not None else None
    if message is None:
        raise not_found(f"message {raw_id}")
    if validate_query(MessageQuery, request).refresh:
        try:
            message = await host.refresh_status(message.id)
        except ProviderError as exc:
            status = 409 if exc.code == "unsupported" else 502
            raise ApiError(status, exc.code or "provider_error", exc.message) from None
    return JSONResponse(message_json(message))
