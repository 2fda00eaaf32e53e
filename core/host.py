"""The one object hooks receive: what plugins may ask of hookline."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from pydantic import BaseModel
from tortoise.transactions import in_transaction

from core.config import Settings
from core.dispatch import Dispatch
from core.events import EventBus
from core.intake import conversation_for, record_webhook
from core.keys import SecretKey
from core.media import MediaStore
from core.numbers import ApiNumbers
from core.queue import WorkQueue
from core.sending import enqueue_outbound
from core.storage.models import Contact, Conversation, Message, NumberRow
from core.vault import seal, unseal
from core import ownership
from core.types import Interactive, Media, Number, Owner, ParsedWebhook, ProviderError, Template, UnknownNumber


class Host:
    """Configuration, numbers and the sending API, shared by the app, the workers and the CLI."""

    def __init__(
        self, settings: Settings, dispatch: Dispatch, queue: WorkQueue, media: MediaStore, secret_key: SecretKey
    ) -> None:
        self.secret_key = secret_key
        self.settings = settings
        self.dispatch = dispatch
        self.queue = queue
        self.media = media
        # The live registry: configured numbers, plus those created over the API (kept in step
        # with the database by `api_numbers`).
        self.numbers: dict[str, Number] = {number.id: number for number in settings.numbers}
        self.api_numbers = ApiNumbers(self)
        self.events = EventBus()
        self.log = logging.getLogger("hookline")

    @property
    def public_url(self) -> str:
        return self.settings.server.public_url

    def number(self, number_id: str) -> Number:
        try:
            return self.numbers[number_id]
        except KeyError:
            raise UnknownNumber(f"no number with id {number_id!r}") from None

    def numbers_of(self, provider: str) -> list[Number]:
        return [number for number in self.numbers.values() if number.provider == provider]

    def plugin_settings(self, name: str) -> BaseModel | None:
        return self.settings.plugin_settings.get(name)

    def webhook_url(self, provider: str, path: str = "") -> str:
        return f"{self.public_url}/webhooks/whatsapp/{provider}{path}"

    def status_callback_url(self, provider: str) -> str | None:
        """Where the provider posts statuses, if it has a route named "status"."""
        for route in self.dispatch.provider(provider).routes:
            if route.name == "status":
                return self.webhook_url(provider, route.path)
        return None

    # Every send takes `sender` ("bot" messages are dropped if a human owns the conversation by
    # the time they would go out) and `dedupe_key` (the same key twice in a conversation: one
    # message). All of them only queue: a worker sends.

    async def send_text(
        self, conversation: Conversation | int, text: str, *, reply_to: Message | None = None,
        sender: str | None = None, dedupe_key: str | None = None,
    ) -> Message:
        """Queue a text (as a reply to `reply_to`, where the provider can show one)."""
        return await enqueue_outbound(
            self, await _conversation(conversation), text=text, reply_to=reply_to.external_id if reply_to else None,
            sender=sender, dedupe_key=dedupe_key,
        )

    async def send_media(
        self, conversation: Conversation | int, media: Media, caption: str | None = None, *,
        sender: str | None = None, dedupe_key: str | None = None,
    ) -> Message:
        """Queue a media message: a file in the media store (`media.key`) or a fetchable `media.url`."""
        return await enqueue_outbound(
            self, await _conversation(conversation), text=caption, media=media, sender=sender, dedupe_key=dedupe_key
        )

    async def send_template(
        self, conversation: Conversation | int, template: Template, *, sender: str | None = None, dedupe_key: str | None = None
    ) -> Message:
        """Queue a pre-approved template (the way to write outside WhatsApp's 24-hour window)."""
        return await enqueue_outbound(
            self, await _conversation(conversation), template=template, sender=sender, dedupe_key=dedupe_key
        )

    async def send_interactive(
        self, conversation: Conversation | int, interactive: Interactive, *, sender: str | None = None,
        dedupe_key: str | None = None,
    ) -> Message:
        """Queue reply buttons or a list; the customer's tap comes back as an inbound message."""
        return await enqueue_outbound(
            self, await _conversation(conversation), interactive=interactive, sender=sender, dedupe_key=dedupe_key
        )

    async def transfer(
        self, conversation: Conversation | int, to: str | Owner, *, reason: str | None = None, by: str | None = None
    ) -> bool:
        """Hand the conversation to "bot" or "human"; False if it already had that owner."""
        conversation_id = conversation.id if isinstance(conversation, Conversation) else conversation
        return await ownership.transfer(self, conversation_id, Owner(to), reason, by)

    async def close_conversation(self, conversation: Conversation | int) -> None:
        conversation_id = conversation.id if isinstance(conversation, Conversation) else conversation
        await ownership.close(conversation_id)
        await self.events.conversation_updated(conversation_id)

    async def plugin_state(self, conversation: Conversation | int, plugin: str) -> dict[str, Any]:
        """This plugin's saved state for the conversation (a bot flow's step), or {}."""
        row = await _conversation(conversation) if isinstance(conversation, int) else await Conversation.get(id=conversation.id)
        return dict(row.plugin_state.get(plugin, {}))

    async def set_plugin_state(self, conversation: Conversation | int, plugin: str, state: dict[str, Any]) -> None:
        """Save this plugin's state for the conversation, in the database (survives restarts)."""
        conversation_id = conversation.id if isinstance(conversation, Conversation) else conversation
        async with in_transaction() as connection:
            row = await Conversation.filter(id=conversation_id).using_db(connection).select_for_update().get()
            await Conversation.filter(id=conversation_id).using_db(connection).update(
                plugin_state={**row.plugin_state, plugin: state}
            )

    async def schedule(
        self, plugin: str, name: str, delay_seconds: float, *, conversation: Conversation | int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Call `on_timer(name, …)` on `plugin` after `delay_seconds`; durable across restarts."""
        conversation_id = conversation.id if isinstance(conversation, Conversation) else conversation
        async with in_transaction() as connection:
            await self.queue.enqueue(
                connection, "timer",
                {"plugin": plugin, "name": name, "conversation_id": conversation_id, "payload": payload or {}},
                delay_seconds=delay_seconds,
            )

    async def refresh_status(self, message_id: int) -> Message:
        """Ask the provider for an outbound message's current status and apply it (never backwards)."""
        message = await Message.get(id=message_id).prefetch_related("conversation")
        if message.external_id is None:
            return message  # not accepted by the provider yet: nothing to ask about
        number = self.number(message.conversation.number_id)
        provider = self.dispatch.provider(number.provider)
        if not provider.implements("provider_fetch_status"):
            raise ProviderError(f"{number.provider} cannot look up message status", code="unsupported")
        update = await provider.fetch_status(self, number, message.external_id)
        result = await record_webhook(number.provider, ParsedWebhook(statuses=[update]), provider.status_map, self.queue,
                                      status_jobs=self.dispatch.listens("on_status_update"))
        refreshed = await Message.get(id=message_id)
        if result.statuses_applied:
            self.events.wake()
        return refreshed

    async def set_number_state(self, number_id: str, state: str, detail: str | None = None) -> None:
        """Record a provider-reported connection state (e.g. QRCODE, CONNECTED, needs_token) where
        operators see it (`hookline numbers`, logs)."""
        self.number(number_id)
        await NumberRow.filter(id=number_id).update(state=state, state_detail=detail, state_at=datetime.now(UTC))
        self.log.info("number %s is %s%s", number_id, state, f": {detail}" if detail else "")
        await self.events.number_state(number_id, state, detail)

    async def number_state(self, number_id: str) -> tuple[str | None, str | None]:
        """The last state recorded with `set_number_state`, and its detail."""
        row = await NumberRow.get(id=number_id)
        return row.state, row.state_detail

    async def number_secret(self, number_id: str, name: str) -> str | None:
        """A value the provider stored for this number with `store_number_secret`, decrypted."""
        row = await NumberRow.get(id=number_id)
        sealed = row.sealed_secrets.get(name)
        return unseal(self.secret_key.value, sealed) if sealed else None

    async def store_number_secret(self, number_id: str, name: str, value: str, *, if_absent: bool = False) -> str:
        """Keep a generated secret (a webhook secret, a session token) encrypted at rest; return
        the value kept. With `if_absent`, an existing value wins: several workers generating a
        secret at once all end up with the same one."""
        async with in_transaction() as connection:
            row = await NumberRow.filter(id=number_id).using_db(connection).select_for_update().get()
            if if_absent and name in row.sealed_secrets:
                return unseal(self.secret_key.value, row.sealed_secrets[name])
            await NumberRow.filter(id=number_id).using_db(connection).update(
                sealed_secrets={**row.sealed_secrets, name: seal(self.secret_key.value, value)}
            )
        return value

    async def conversation_with(self, number_id: str, address: str, name: str | None = None) -> Conversation:
        """The conversation between a number and an address, created if new (for first contact)."""
        self.number(number_id)
        async with in_transaction() as connection:
            contact, _ = await Contact.get_or_create(address=address, defaults={"name": name}, using_db=connection)
            return await conversation_for(connection, number_id, contact)


async def _conversation(conversation: Conversation | int) -> Conversation:
    if isinstance(conversation, Conversation):
        return conversation
    return await Conversation.get(id=conversation)
