"""The Jinja2 templates of one configuration, and the values they see.

Two sandboxed environments: HTML for the PDF (autoescaped, so what a customer wrote is text, never
markup) and plain text for WhatsApp messages. Undefined names are errors: a payment agreement
with a blank amount must not go out; write `{{ vars.amount | default("—") }}` for optional
values. Template files are found beside the configuration file (relative paths) or anywhere
(absolute paths); `{% extends "summary.html.j2" %}` reaches the built-in templates.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, FileSystemLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from core import Number
from core.storage.models import Contact, Conversation, Message
from core.types import DeliveryStatus, Direction
from plugins.bot_transfer.schema import BotTransferSettings, Menu, zone

BUILTIN = Path(__file__).resolve().parent / "templates"
DEFAULT_PDF = "summary.html.j2"
DEFAULT_FAREWELL = "farewell.txt.j2"


class _Loader(BaseLoader):
    """Absolute paths as they are; other names in the search path (config dir, built-ins)."""

    def __init__(self, search_path: list[Path]) -> None:
        self._search = FileSystemLoader([str(path) for path in search_path])

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        path = Path(template)
        if not path.is_absolute():
            return self._search.get_source(environment, template)
        try:
            source = path.read_text(encoding="utf-8")
            mtime = path.stat().st_mtime
        except OSError:
            raise TemplateNotFound(template) from None
        return source, str(path), lambda: path.is_file() and path.stat().st_mtime == mtime


@dataclass(frozen=True)
class RenderedPdf:
    html: str
    title: str
    filename: str
    caption: str | None
    base_dir: Path


class Templates:
    """Everything a configuration renders, compiled once (missing files and syntax fail here)."""

    def __init__(self, settings: BotTransferSettings, config_dir: Path) -> None:
        self.settings = settings
        self.zone: tzinfo = zone(settings.timezone)
        pdf_path = _resolve(config_dir, settings.pdf_template)
        farewell_path = _resolve(config_dir, settings.farewell_template)
        search = [path.parent for path in (pdf_path, farewell_path) if path] + [config_dir, BUILTIN]
        self.html = self._environment(search, autoescape=True)
        self.text = self._environment(search, autoescape=False)
        self.pdf_base_dir = pdf_path.parent if pdf_path else BUILTIN
        self.pdf = self.html.get_template(str(pdf_path) if pdf_path else DEFAULT_PDF)
        if settings.farewell is not None:
            self.farewell = self.text.from_string(settings.farewell)
        else:
            self.farewell = self.text.get_template(str(farewell_path) if farewell_path else DEFAULT_FAREWELL)
        self.pdf_filename = self.text.from_string(settings.pdf_filename)
        self.pdf_caption = self.text.from_string(settings.pdf_caption) if settings.pdf_caption else None
        self._inline: dict[str, Template] = {}

    def _environment(self, search: list[Path], *, autoescape: bool) -> SandboxedEnvironment:
        environment = SandboxedEnvironment(
            loader=_Loader(search), autoescape=autoescape, undefined=StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
        )
        environment.filters["datetime"] = self.format_datetime
        environment.filters["nl2br"] = _nl2br
        return environment

    def format_datetime(self, value: datetime | None, fmt: str | None = None) -> str:
        """`{{ m.at | datetime }}`, in the configured time zone and `date_format` (or `fmt`)."""
        if value is None:
            return ""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(self.zone).strftime(fmt or self.settings.date_format)

    def inline(self, source: str, context: dict[str, Any]) -> str:
        """Render a text template from the settings (a reply, a menu's text)."""
        template = self._inline.get(source)
        if template is None:
            template = self._inline[source] = self.text.from_string(source)
        return template.render(context).strip()

    def render_pdf(self, context: dict[str, Any]) -> RenderedPdf:
        html = self.pdf.render(context)
        title = _title(html) or str(context["contact"]["name"] or context["contact"]["address"])
        filename = safe_filename(self.pdf_filename.render(context))
        caption = self.pdf_caption.render(context).strip() if self.pdf_caption else None
        return RenderedPdf(html, title, filename, caption or None, self.pdf_base_dir)

    def render_farewell(self, context: dict[str, Any]) -> str:
        return self.farewell.render(context).strip()

    def render_menu(self, menu: Menu, context: dict[str, Any]) -> str:
        lines = [self.inline(menu.text, context), ""]
        lines += [f"{number}. {option.label}" for number, option in enumerate(menu.options, start=1)]
        return "\n".join(lines).strip()


def templates_for(settings: BotTransferSettings, config_dir: Path) -> Templates:
    """The compiled templates of these settings (kept on the settings object: one per runtime)."""
    if settings._templates is None:
        settings._templates = Templates(settings, config_dir)
    return settings._templates


def _resolve(config_dir: Path, configured: str | None) -> Path | None:
    if configured is None:
        return None
    path = (config_dir / Path(configured).expanduser()).resolve()
    if not path.is_file():
        raise TemplateNotFound(f"{configured} (looked for {path})")
    return path


def _nl2br(value: Any) -> Markup:
    """Escape, then keep the customer's line breaks: `{{ m.text | nl2br }}`."""
    return Markup("<br>").join(escape(line) for line in str(value or "").splitlines())


_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _title(html: str) -> str | None:
    found = _TITLE.search(html)
    if not found:
        return None
    from html import unescape

    return unescape(found.group(1)).strip() or None


def safe_filename(name: str) -> str:
    """ASCII letters, digits, `.`, `-` and `_`, ending in `.pdf`: every provider accepts it."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name)).strip(".-_") or "documento"
    cleaned = cleaned[:100]
    return cleaned if cleaned.lower().endswith(".pdf") else cleaned + ".pdf"


# --------------------------------------------------------------------------- the values templates see


def _when(message: Message) -> datetime:
    return message.sent_at or message.created_at


def message_values(message: Message) -> dict[str, Any]:
    inbound = message.direction == Direction.INBOUND
    sender = "customer" if inbound else ("bot" if message.sender == "bot" else "agent")
    attachments = [item.get("filename") or item.get("content_type") or message.kind for item in message.media or []]
    return {
        "id": message.id,
        "direction": message.direction.value,
        "from_customer": inbound,
        "sender": sender,  # customer, agent or bot
        "kind": message.kind,
        "text": message.text or "",
        "attachments": attachments,
        "at": _when(message),
        "status": message.status.value,
    }


async def context_for(
    conversation: Conversation,
    number: Number,
    settings: BotTransferSettings,
    state: dict[str, Any],
    *,
    transcript: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """What every template sees: contact, conversation, number, vars (and the transcript for the PDF)."""
    contact = await Contact.get(id=conversation.contact_id)
    values: dict[str, Any] = {
        "contact": {"name": contact.name, "address": contact.address, "phone": contact.address, "wa_id": contact.wa_id},
        "conversation": {
            "id": conversation.id, "number_id": conversation.number_id, "owner": conversation.owner.value,
            "state": conversation.state.value, "created_at": conversation.created_at,
            "last_message_at": conversation.last_message_at,
        },
        "number": {"id": number.id, "phone": number.phone, "display_name": number.display_name, "provider": number.provider},
        "vars": {**settings.variables, **dict(state.get("variables") or {})},
        "now": datetime.now(UTC),
    }
    if transcript:
        rows = await (
            Message.filter(conversation_id=conversation.id)
            .exclude(status=DeliveryStatus.FAILED)
            .order_by("-id")
            .limit(settings.transcript_limit)
        )
        messages = [message_values(row) for row in reversed(rows)]
        from_customer = [message for message in messages if message["from_customer"]]
        values.update(
            messages=messages,
            first_message_at=messages[0]["at"] if messages else None,
            last_message_at=messages[-1]["at"] if messages else None,
            last_message=messages[-1] if messages else None,
            last_customer_message=from_customer[-1] if from_customer else None,
            total_messages=await Message.filter(conversation_id=conversation.id).exclude(status=DeliveryStatus.FAILED).count(),
        )
    values.update(extra)
    return values
