"""Every hook hookline calls. This module is the plugin author's reference.

A plugin is a module (or object) with functions decorated by ``@hookimpl`` whose names match the
specs below. An implementation takes only the arguments it needs, so specs can grow.

Three kinds of hook:

* **Contributions** (``plugin_*``, ``provider_*_model``, ``provider_webhook_routes``,
  ``provider_status_map``, ``provider_rate_limits``): plain functions the core calls once, at
  boot, on one plugin.
* **Provider actions** (``provider_verify``, ``provider_parse``, ``provider_send_text`` …): the core
  calls them on *one* provider plugin only, the one that owns the number or route. Never write
  "return None if this is not for me": it will not be asked.
* **Notifications** (``on_*``): ``async def`` functions the core awaits on *every* enabled plugin
  that has them, each in its own ``try``: one plugin raising is logged with its name and the
  others still run. They run on the work queue, never inside a webhook request.

``docs/plugin-hooks.md`` documents each hook with an example; a test fails if one is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy
from pydantic import BaseModel

if TYPE_CHECKING:
    from starlette.responses import Response

    from core.host import Host
    from core.storage.models import Conversation, Message, StatusEvent
    from core.types import (
        Command,
        Media,
        Number,
        OutboundMessage,
        PairingCode,
        ParsedWebhook,
        ProviderLimits,
        SendResult,
        SimulatedWebhook,
        StatusUpdate,
        WebhookRequest,
        WebhookRoute,
    )

PROJECT = "hookline"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------- contributions


@hookspec(firstresult=True)
def plugin_settings_model() -> type[BaseModel] | None:
    """The pydantic model for this plugin's ``[plugins.<name>]`` table. Sync, called at boot.

    Use ``model_config = ConfigDict(extra="forbid")`` so typos fail at start. The validated instance
    is ``host.plugin_settings("<name>")``. A plugin without this hook accepts no table.
    """


@hookspec(firstresult=True)
def provider_number_settings_model() -> type[BaseModel]:
    """The pydantic model for ``[[numbers]].settings`` of this provider. Sync, called at boot.

    Implementing it is what makes a plugin a *provider*. Declare secrets as ``SecretStr`` so they
    never print. A provider must also implement ``provider_webhook_routes``, ``provider_match_numbers``,
    ``provider_verify``, ``provider_parse``, ``provider_acknowledge``, ``provider_send_text``,
    ``provider_send_media`` and ``provider_status_map``; a missing one fails at boot.
    """


@hookspec(firstresult=True)
def provider_webhook_routes() -> Sequence[WebhookRoute]:
    """The routes this provider receives, below ``/webhooks/whatsapp/<provider>``. Sync, at boot.

    The core owns these routes: it reads the raw body once, enforces the size limit, and runs every
    request through ``provider_match_numbers`` → ``provider_verify`` → ``provider_parse`` → storage →
    ``provider_acknowledge``. ``WebhookRequest.route`` tells the later hooks which route matched.
    """


@hookspec(firstresult=True)
def provider_status_map() -> Mapping[str, str]:
    """Map this provider's raw status strings to hookline's vocabulary. Sync, at boot.

    Values must be ``DeliveryStatus`` values (``queued``, ``sent``, ``delivered``, ``read``,
    ``played``, ``failed``); checked at boot. A status the map lacks is kept as an audit event and
    logged, and does not move the message.
    """


@hookspec(firstresult=True)
def provider_rate_limits() -> ProviderLimits:
    """How fast this provider's numbers may send, as a declaration. Sync, at boot. Optional.

    ``ProviderLimits(number=RateLimit(…), recipient=RateLimit(…) | None, max_per_second=… | None)``:
    each number's default limit, the default per customer of one number, and the most a number
    may be configured to send (a higher ``rate_limit`` is a configuration error). The core enforces
    them before every send, shared by all instances. Without this hook: 80/s, no cap, no limit
    per recipient.
    """


@hookspec
def register_commands() -> Sequence[Command]:
    """``hookline`` subcommands this plugin adds, e.g. ``hookline wppconnect status``. Sync.

    Called on every *installed* plugin when the command line is built (before the config is read);
    running one requires the plugin to be enabled. Each ``Command.run(host, args)`` is awaited with
    storage open and returns the exit status.
    """


# --------------------------------------------------------------------------- provider actions


@hookspec(firstresult=True)
def provider_match_numbers(request: WebhookRequest, numbers: Sequence[Number]) -> Sequence[Number]:
    """Which of this provider's ``numbers`` the (not yet proven) request claims to be for. Sync.

    A cheap lookup (Twilio: ``To``/``MessagingServiceSid``; WPPConnect: the path). Return every
    candidate whose credentials could prove it. An empty result answers 404 and stores nothing.
    Nothing found here is trusted until ``provider_verify`` returns True.
    """


@hookspec(firstresult=True)
def provider_verify(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    """True only if the request is proven to come from the provider for one of ``numbers``. Sync.

    Compare in constant time (``hmac.compare_digest``); use ``request.public_url`` (what the
    provider called), never the URL the server saw. False answers 403 and stores nothing.
    """


@hookspec(firstresult=True)
def provider_parse(request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
    """Turn a proven request into messages and statuses. Sync; called only after verification.

    Raise ``core.types.MalformedWebhook`` for a body that cannot be understood (answered 400,
    nothing stored). Keep unknown fields in ``raw``; never reject a payload for having them.
    """


@hookspec(firstresult=True)
def provider_acknowledge(request: WebhookRequest, parsed: ParsedWebhook) -> Response:
    """The answer the provider expects once the request is stored (TwiML for Twilio). Sync."""


@hookspec(firstresult=True)
async def provider_send_text(host: Host, number: Number, message: OutboundMessage) -> SendResult:
    """Send ``message.text`` to ``message.to`` from ``number``. Async, called by a queue worker.

    Return the provider's id and raw status. Raise ``ProviderError(retryable=True)`` for rate limits,
    5xx and timeouts (retried with backoff, or after ``retry_after``), ``retryable=False`` for
    errors that will not get better (the message ends ``failed`` with code and text).
    """


@hookspec(firstresult=True)
async def provider_send_media(host: Host, number: Number, message: OutboundMessage) -> SendResult:
    """Send ``message.media`` (with ``message.text`` as caption) to ``message.to``. Async.

    Errors as for ``provider_send_text``.
    """


@hookspec(firstresult=True)
async def provider_send_template(host: Host, number: Number, message: OutboundMessage) -> SendResult:
    """Send the pre-approved ``message.template`` to ``message.to``. Async, optional.

    Needed outside WhatsApp's 24-hour window. Errors as for ``provider_send_text``; a provider
    without this hook fails template sends permanently with a clear reason.
    """


@hookspec(firstresult=True)
async def provider_send_interactive(host: Host, number: Number, message: OutboundMessage) -> SendResult:
    """Send ``message.interactive`` (reply buttons or a list) to ``message.to``. Async, optional.

    Errors as for ``provider_send_text``; a provider without this hook fails such sends
    permanently with a clear reason.
    """


@hookspec(firstresult=True)
async def provider_fetch_status(host: Host, number: Number, external_id: str) -> StatusUpdate:
    """Ask the provider for a message's current status (delivery status lookup). Async, optional."""


@hookspec(firstresult=True)
async def provider_download_media(host: Host, number: Number, media: Media) -> tuple[bytes, str | None]:
    """Fetch an inbound media item (``media.url`` or ``media.provider_media_id``). Async, optional.

    Return the bytes and their content type. Fetch only from the provider's own hosts, with the
    number's credentials. The core stores the file in its media store before workflows see the
    message; ``ProviderError(retryable=True)`` retries later, other errors are recorded on the item.
    """


@hookspec(firstresult=True)
async def provider_pairing_qr(host: Host, number: Number) -> PairingCode:
    """The QR code a person scans to pair the number, for providers paired that way. Async, optional.

    Called for ``GET /api/whatsapp-numbers/{id}/qrcode`` (the console polls it while the number
    pairs). Return ``PairingCode(png)`` while a code is on offer, else ``PairingCode(None, reason)``
    in words for the operator (already connected, session starting). Start whatever must run for
    a code to appear; the number's state changes reach the console through ``host.set_number_state``.
    ``ProviderError`` answers 502 with its message. Providers without this hook answer 404.
    """


@hookspec(firstresult=True)
async def provider_simulate_webhook(
    host: Host, number: Number, sender: str, text: str, public_url: str
) -> SimulatedWebhook:
    """Build a correctly proven inbound webhook, for ``hookline simulate``. Async, optional.

    ``sender`` is the customer's phone; ``public_url`` is the server's configured public URL.
    Storage is open (a secret the provider generated and sealed can be read with
    ``host.number_secret``); the webhook is posted to the running server by the CLI.
    """


# --------------------------------------------------------------------------- notifications


@hookspec
async def on_startup(host: Host) -> None:
    """The server started: storage is open, workers are about to run. Async, every plugin."""


@hookspec
async def on_shutdown(host: Host) -> None:
    """The server is stopping, before storage closes. Async, every plugin."""


@hookspec
async def on_inbound_message(host: Host, message: Message, conversation: Conversation) -> None:
    """A customer message was stored. Async, every plugin, on the work queue.

    Calls for one conversation come one at a time in stored order; a duplicate delivery of a
    webhook never calls this twice. Reply with ``await host.send_text(conversation, "…")``.
    """


@hookspec
async def on_status_update(host: Host, message: Message, event: StatusEvent) -> None:
    """An outbound message moved forward to ``event.status``. Async, every plugin.

    ``message`` is read when the notification runs, so its ``status`` may already be further on.

    Regressions and duplicates do not call this; every status webhook is still kept as a
    ``StatusEvent`` for audit.
    """


@hookspec
async def on_conversation_transferred(
    host: Host, conversation: Conversation, to: str, reason: str | None, by: str | None, transfer_id: str
) -> None:
    """The conversation changed owner (``to`` is ``"bot"`` or ``"human"``). Async, every plugin,
    on the work queue, in order with the conversation's messages.

    ``transfer_id`` names this one handover: use it in ``dedupe_key`` of what you send in response,
    so a notification delivered again after a crash sends nothing twice. A transfer to the current
    owner changes nothing and does not call this.
    """


@hookspec
async def on_timer(host: Host, conversation: Conversation | None, name: str, payload: dict) -> None:
    """A timer this plugin set with ``host.schedule(...)`` is due. Async, called on that plugin only.

    Timers are durable (a restart does not lose them) and at-least-once. Check whether the reason
    for the timer still holds (e.g. no message since) before acting.
    """
