"""The typed facade the core calls hooks through; nothing else touches `pm.hook`.

Provider hooks are *scoped*: a call goes to the one plugin that owns the provider
(`subset_hook_caller`). Notification hooks fan out to every plugin, each awaited in its own
`try` so one failing plugin is logged with its name and the others still run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel
from starlette.responses import Response

from core.limits import DEFAULT_PROVIDER_LIMITS
from core.storage.database import is_storage_failure
from core.types import (
    DeliveryStatus,
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

if TYPE_CHECKING:
    from core.host import Host

log = logging.getLogger("hookline.plugins")


class Provider:
    """One provider plugin's hooks, called on that plugin only."""

    def __init__(self, manager: pluggy.PluginManager, name: str) -> None:
        self.name = name
        self._manager = manager
        self._plugin = manager.get_plugin(name)
        others = [plugin for plugin in manager.get_plugins() if plugin is not self._plugin]
        self._callers = {
            hook: manager.subset_hook_caller(hook, remove_plugins=others)
            for hook in manager.hook.__dict__
            if hook.startswith("provider_")
        }

    def implements(self, hook: str) -> bool:
        return bool(self._callers[hook].get_hookimpls())

    def _call(self, hook: str, **kwargs: Any) -> Any:
        return self._callers[hook](**kwargs)

    async def _acall(self, hook: str, **kwargs: Any) -> Any:
        result = self._callers[hook](**kwargs)
        return await result if inspect.isawaitable(result) else result

    @cached_property
    def number_settings_model(self) -> type[BaseModel]:
        return self._call("provider_number_settings_model")

    @cached_property
    def rate_limits(self) -> ProviderLimits:
        """Its declared limits (``provider_rate_limits``), or the core's defaults."""
        declared = self._call("provider_rate_limits") if self.implements("provider_rate_limits") else None
        return declared or DEFAULT_PROVIDER_LIMITS

    @cached_property
    def routes(self) -> Sequence[WebhookRoute]:
        return tuple(self._call("provider_webhook_routes"))

    @cached_property
    def status_map(self) -> Mapping[str, DeliveryStatus]:
        return {raw: DeliveryStatus(mapped) for raw, mapped in self._call("provider_status_map").items()}

    def match_numbers(self, request: WebhookRequest, numbers: Sequence[Number]) -> Sequence[Number]:
        return self._call("provider_match_numbers", request=request, numbers=numbers) or ()

    def verify(self, request: WebhookRequest, numbers: Sequence[Number]) -> bool:
        return self._call("provider_verify", request=request, numbers=numbers) is True

    def parse(self, request: WebhookRequest, numbers: Sequence[Number]) -> ParsedWebhook:
        return self._call("provider_parse", request=request, numbers=numbers)

    def acknowledge(self, request: WebhookRequest, parsed: ParsedWebhook) -> Response:
        return self._call("provider_acknowledge", request=request, parsed=parsed)

    async def send_text(self, host: Host, number: Number, message: OutboundMessage) -> SendResult:
        return await self._acall("provider_send_text", host=host, number=number, message=message)

    async def send_media(self, host: Host, number: Number, message: OutboundMessage) -> SendResult:
        return await self._acall("provider_send_media", host=host, number=number, message=message)

    async def send_template(self, host: Host, number: Number, message: OutboundMessage) -> SendResult:
        return await self._acall("provider_send_template", host=host, number=number, message=message)

    async def send_interactive(self, host: Host, number: Number, message: OutboundMessage) -> SendResult:
        return await self._acall("provider_send_interactive", host=host, number=number, message=message)

    async def fetch_status(self, host: Host, number: Number, external_id: str) -> StatusUpdate:
        return await self._acall("provider_fetch_status", host=host, number=number, external_id=external_id)

    async def download_media(self, host: Host, number: Number, media: Media) -> tuple[bytes, str | None]:
        return await self._acall("provider_download_media", host=host, number=number, media=media)

    async def pairing_qr(self, host: Host, number: Number) -> PairingCode:
        return await self._acall("provider_pairing_qr", host=host, number=number)

    async def simulate_webhook(self, host: Host, number: Number, sender: str, text: str, public_url: str) -> SimulatedWebhook:
        return await self._acall(
            "provider_simulate_webhook", host=host, number=number, sender=sender, text=text, public_url=public_url
        )


class Dispatch:
    """All hook calls of one running hookline."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self._listening: dict[str, bool] = {}
        self.providers: dict[str, Provider] = {
            name: Provider(manager, name)
            for name, plugin in manager.list_name_plugin()
            if hasattr(plugin, "provider_number_settings_model")
        }

    def provider(self, name: str) -> Provider:
        return self.providers[name]

    def listens(self, hook: str) -> bool:
        """Whether any plugin implements a notification: a job that would notify nobody (a status
        move no workflow watches) is not worth its rows and round trips."""
        found = self._listening.get(hook)
        if found is None:
            found = self._listening[hook] = bool(getattr(self.manager.hook, hook).get_hookimpls())
        return found

    async def notify_plugin(self, plugin_name: str, hook: str, **kwargs: Any) -> None:
        """Await `hook` on one plugin only (timers go back to the plugin that set them)."""
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            if impl.plugin_name == plugin_name:
                await impl.function(**{name: kwargs[name] for name in impl.argnames})

    async def notify(self, hook: str, **kwargs: Any) -> list[str]:
        """Await `hook` on every plugin that has it; return the names of those that raised.

        A plugin's failure is its own (logged; the others still run) — except when the database
        went away under it: then the whole notification is raised, so its job runs again later,
        as after a crash, instead of losing what the plugin could not store."""
        failed: list[str] = []
        # pluggy's call order: the order of `[plugins] enabled` (see core.plugins.build_manager).
        for impl in reversed(getattr(self.manager.hook, hook).get_hookimpls()):
            arguments = {name: kwargs[name] for name in impl.argnames}
            try:
                await impl.function(**arguments)
            except Exception as exc:
                if is_storage_failure(exc):
                    raise
                failed.append(impl.plugin_name)
                log.exception("plugin %s failed in %s", impl.plugin_name, hook)
        return failed
