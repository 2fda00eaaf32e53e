"""Settings of the bot_transfer workflow (`[plugins.bot_transfer]`).

Every key is optional: `after = "close"` alone is a complete configuration (the built-in PDF
summary and farewell). Inline texts (`reply`, `text`, `farewell`, `pdf_filename`, …) are Jinja2
templates checked here, at start; template *files* are read relative to the configuration file
when the server starts (see docs/workflows/bot_transfer.md).
"""

from __future__ import annotations

import re
from datetime import UTC, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

_SYNTAX = SandboxedEnvironment()


def _check_template(source: str | None) -> str | None:
    if source is not None:
        try:
            _SYNTAX.parse(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"not a valid Jinja2 template (line {exc.lineno}): {exc.message}") from None
    return source


class Action(BaseModel):
    """What the bot does: reply with a text, show a menu, and/or hand over to a human."""

    model_config = ConfigDict(extra="forbid")

    reply: str | None = None  # a Jinja2 template of the text to send
    menu: str | None = None  # the name of a menu in [plugins.bot_transfer.menus] to show next
    handoff: bool = False  # hand the conversation to a human (after `reply`, or `handoff_reply`)

    @field_validator("reply")
    @classmethod
    def _reply_is_a_template(cls, value: str | None) -> str | None:
        return _check_template(value)

    @model_validator(mode="after")
    def _does_something(self) -> Action:
        if self.reply is None and self.menu is None and not self.handoff:
            raise ValueError("give at least one of reply, menu or handoff = true")
        if self.handoff and self.menu is not None:
            raise ValueError("handoff = true ends the bot's turn: it cannot also show a menu")
        return self


class Rule(Action):
    """Keywords or a regular expression that trigger an action while the bot owns a conversation."""

    keywords: list[str] = Field(default_factory=list)  # whole words, any case, accents ignored
    regex: str | None = None  # Python syntax, searched in the message text; (?i) for any case

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_a_trigger(self) -> Rule:
        if not self.regex and not any(keyword.strip() for keyword in self.keywords):
            raise ValueError("a rule needs keywords or a regex")
        return self


class MenuOption(Action):
    """One numbered option: the customer answers with its number (or its label)."""

    label: str


class Menu(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str  # a Jinja2 template shown above the numbered options
    options: list[MenuOption] = Field(min_length=1, max_length=50)

    @field_validator("text")
    @classmethod
    def _text_is_a_template(cls, value: str) -> str:
        return _check_template(value)  # type: ignore[return-value]


class BotTransferSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # -- the handover: a PDF, then (once the provider accepted it) the farewell
    after: Literal["bot", "close"] = "bot"  # keep the conversation with the bot, or close it
    pdf_template: str | None = None  # a Jinja2 HTML template file; default: the conversation summary
    pdf_filename: str = "conversacion-{{ conversation.id }}.pdf"  # a Jinja2 template
    pdf_caption: str | None = None  # a Jinja2 template; no caption by default
    farewell_template: str | None = None  # a Jinja2 text template file …
    farewell: str | None = None  # … or the template inline; default: templates/farewell.txt.j2
    transcript_limit: int = Field(200, ge=1, le=5000)  # the last N messages go in the PDF
    timezone: str = "UTC"  # IANA name, for dates in templates
    date_format: str = "%d/%m/%Y %H:%M"
    variables: dict[str, Any] = Field(default_factory=dict)  # `vars` in every template

    # -- bot flows while the bot owns the conversation
    handoff_keywords: list[str] = Field(default_factory=lambda: ["agente"])
    handoff_reply: str | None = "Te comunico con un agente. En un momento te responde."
    rules: list[Rule] = Field(default_factory=list)
    menus: dict[str, Menu] = Field(default_factory=dict)
    fallback: Action | None = None  # when nothing matched; none: hand over to a human
    inactivity_seconds: float | None = Field(None, gt=0)  # close with the farewell after this silence

    _templates: Any = PrivateAttr(default=None)  # compiled on first use (plugins.bot_transfer.templating)

    @field_validator("pdf_filename", "pdf_caption", "farewell", "handoff_reply")
    @classmethod
    def _inline_templates(cls, value: str | None) -> str | None:
        return _check_template(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BotTransferSettings:
        if self.farewell is not None and self.farewell_template is not None:
            raise ValueError("give farewell (inline) or farewell_template (a file), not both")
        named = [("fallback", self.fallback)] + [(f"rules[{i}]", rule) for i, rule in enumerate(self.rules)]
        for menu_name, menu in self.menus.items():
            named += [(f"menus.{menu_name}.options[{i}]", option) for i, option in enumerate(menu.options)]
        for where, action in named:
            if action is not None and action.menu is not None and action.menu not in self.menus:
                known = ", ".join(sorted(self.menus)) or "none"
                raise ValueError(f"{where}.menu: no menu named {action.menu!r} (menus: {known})")
        return self


def zone(name: str) -> tzinfo:
    """The time zone of `timezone`; UTC needs no time zone database."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as America/Bogota)") from None
