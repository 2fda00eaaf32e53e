"""The inbox: conversations (owner, unread count, search), a thread that follows live events, and
the agent's actions — send text, attach a file, transfer to the bot, take over.

Opening a thread (the page, or its fragment refreshed by a live event) marks it read. Fragments
are the same templates the pages include, so the live view and a reload never disagree.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from core.api.access import host_of
from core.api.conversations import ListQuery, conversation_or_404, find_conversations
from core.api.errors import ApiError, id_from_path, validate
from core.api.messages import send_upload
from core.console.i18n import language_of, translator
from core.console.rendering import render
from core.console.security import FormError, done
from core.host import Host
from core.inbox import mark_read
from core.storage.models import Conversation, Message
from core.types import Owner

THREAD_LENGTH = 100
LIST_LENGTH = 100


def _filters(request: Request) -> dict[str, str]:
    """The inbox's search and owner filter, as they travel in links and fragment URLs."""
    found = {"q": request.query_params.get("q", "").strip()[:100], "owner": request.query_params.get("owner", "")}
    if found["owner"] not in ("bot", "human"):
        found["owner"] = ""
    return found


async def _list_context(request: Request, current: int | None) -> dict[str, Any]:
    filters = _filters(request)
    query = validate(ListQuery, {"q": filters["q"] or None, "owner": filters["owner"] or None, "limit": LIST_LENGTH})
    total, conversations, unread = await find_conversations(query)
    if current is not None:
        unread[current] = 0  # read as it is shown
    return {"conversations": conversations, "unread": unread, "total": total, "filters": filters,
            "filter_query": urlencode({k: v for k, v in filters.items() if v}), "current": current}


async def _thread_context(host: Host, conversation: Conversation) -> dict[str, Any]:
    await mark_read(conversation.id, host.events)
    newest = await Message.filter(conversation_id=conversation.id).order_by("-id").limit(THREAD_LENGTH)
    messages = list(reversed(newest))
    return {"conversation": conversation, "messages": messages, "media_urls": _media_urls(host, messages),
            "number": host.numbers.get(conversation.number_id)}


def _media_urls(host: Host, messages: list[Message]) -> dict[str, str]:
    """Signed links to stored media, as paths (the console may be reached by another name than
    `public_url`)."""
    urls = {}
    for message in messages:
        for item in message.media:
            if item.get("key"):
                signed = host.media.signed_url(item["key"])
                urls[item["key"]] = signed[len(host.public_url):] if signed.startswith(host.public_url) else signed
    return urls


async def inbox_page(request: Request) -> Response:
    host = host_of(request)
    raw_id = request.path_params.get("conversation_id")
    context: dict[str, Any] = {"thread": None, "error": request.query_params.get("error")}
    if raw_id is not None:
        context["thread"] = await _thread_context(host, await conversation_or_404(raw_id))
    current = context["thread"]["conversation"].id if context["thread"] else None
    context.update(await _list_context(request, current))
    return render(request, "inbox.html", context)


async def conversations_fragment(request: Request) -> Response:
    current = request.query_params.get("current", "")
    return render(request, "_conversations.html", await _list_context(request, id_from_path(current)))


async def thread_fragment(request: Request) -> Response:
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    return render(request, "_thread.html", {"thread": await _thread_context(host_of(request), conversation)})


async def send(request: Request, form: FormData) -> Response:
    """Text, or a file with the text as its caption: one composer, like a phone's."""
    host = host_of(request)
    t = translator(language_of(request))
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    back = f"/console/inbox/{conversation.id}"
    if conversation.number_id not in host.numbers:
        raise FormError(f"number {conversation.number_id!r} is not active", back, 409)
    text = form.get("text")
    text = text.strip() if isinstance(text, str) else ""
    upload = form.get("file")
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            await send_upload(host, conversation, upload, text or None)
        elif text:
            await host.send_text(conversation, text[:4096], sender=Owner.HUMAN.value)
        else:
            raise FormError(t("thread.empty_send"), back)
    except ApiError as exc:
        raise FormError(exc.message, back, exc.status) from None
    return done(request, back)


async def transfer(request: Request, form: FormData) -> Response:
    """"Transfer to bot" and "Take over": the same core transfer the API and the CLI use."""
    host = host_of(request)
    conversation = await conversation_or_404(request.path_params["conversation_id"])
    back = f"/console/inbox/{conversation.id}"
    to = form.get("to")
    if to not in (Owner.BOT.value, Owner.HUMAN.value):
        raise FormError("to: expected bot or human", back)
    await host.transfer(conversation.id, Owner(to), reason="console", by=request.scope["user"].username)
    return done(request, back)
