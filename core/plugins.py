"""Finding plugins and building the plugin manager.

Bundled plugins are found exactly like third-party ones: through the `hookline` entry-point group.
`[plugins] modules` adds plugins by import path (local plugins that are not packaged); tests pass
an explicit mapping instead. Only the plugins named in `[plugins] enabled` are registered.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import BaseModel

from core import hookspecs
from core.limits import DEFAULT_PROVIDER_LIMITS
from core.types import DeliveryStatus, ProviderLimits

ENTRY_POINT_GROUP = "hookline"

#: Notification hooks: fanned out to every plugin, so each implementation must be `async def`.
NOTIFICATION_HOOKS = (
    "on_startup",
    "on_shutdown",
    "on_inbound_message",
    "on_status_update",
    "on_conversation_transferred",
    "on_timer",
)
WORKFLOW_HOOKS = ("on_inbound_message", "on_status_update", "on_conversation_transferred", "on_timer")
ASYNC_PROVIDER_HOOKS = (
    "provider_send_text",
    "provider_send_media",
    "provider_send_template",
    "provider_send_interactive",
    "provider_fetch_status",
    "provider_download_media",
    "provider_pairing_qr",
    "provider_simulate_webhook",
)
REQUIRED_PROVIDER_HOOKS = (
    "provider_number_settings_model",
    "provider_webhook_routes",
    "provider_status_map",
    "provider_match_numbers",
    "provider_verify",
    "provider_parse",
    "provider_acknowledge",
    "provider_send_text",
    "provider_send_media",
)


class PluginError(Exception):
    """A plugin cannot be loaded or breaks the hook contract; raised at boot."""


@dataclass(frozen=True)
class PluginInfo:
    """A plugin that could be enabled, and where it came from."""

    name: str
    plugin: Any
    version: str | None
    source: str  # "entry point", "module" or "explicit"

    @property
    def hooks(self) -> list[str]:
        return sorted(name for name in dir(self.plugin) if _is_hookimpl(self.plugin, name))

    @property
    def role(self) -> str:
        hooks = set(self.hooks)
        if "provider_number_settings_model" in hooks:
            return "provider"
        if hooks.intersection(WORKFLOW_HOOKS):
            return "workflow"
        return "extension"


def _is_hookimpl(plugin: Any, name: str) -> bool:
    return hasattr(getattr(plugin, name, None), f"{hookspecs.PROJECT}_impl")


def discover(modules: Iterable[str] = ()) -> dict[str, PluginInfo]:
    """Every installed plugin (entry points), plus those named by import path in `modules`."""
    found: dict[str, PluginInfo] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken third-party package must say who it is
            raise PluginError(f"plugin {entry_point.name!r} ({entry_point.value}) failed to import: {exc}") from exc
        version = entry_point.dist.version if entry_point.dist else None
        found[entry_point.name] = PluginInfo(entry_point.name, plugin, version, "entry point")
    for path in modules:
        try:
            module = importlib.import_module(path)
        except Exception as exc:
            raise PluginError(f"plugin module {path!r} failed to import: {exc}") from exc
        name = getattr(module, "PLUGIN_NAME", path.rsplit(".", 1)[-1])
        if name in found:
            raise PluginError(f"plugin module {path!r} is named {name!r}, like the installed plugin from {found[name].source}; set PLUGIN_NAME")
        found[name] = PluginInfo(name, module, getattr(module, "__version__", None), "module")
    return found


def explicit(plugins: Mapping[str, Any]) -> dict[str, PluginInfo]:
    """Plugins given directly (tests, embedding): name → module or object."""
    return {
        name: PluginInfo(name, plugin, getattr(plugin, "__version__", None), "explicit")
        for name, plugin in plugins.items()
    }


class Catalog:
    """The available plugins, answering what config validation asks (see core.config)."""

    def __init__(self, available: Mapping[str, PluginInfo]) -> None:
        self.available = dict(available)

    def names(self) -> list[str]:
        return list(self.available)

    def settings_model(self, name: str) -> type[BaseModel] | None:
        return _own_hook(self.available[name].plugin, "plugin_settings_model")

    def number_settings_model(self, name: str) -> type[BaseModel] | None:
        return _own_hook(self.available[name].plugin, "provider_number_settings_model")

    def rate_limits(self, name: str) -> ProviderLimits:
        """The provider's ``provider_rate_limits``, or the core's defaults without one."""
        declared = _own_hook(self.available[name].plugin, "provider_rate_limits")
        # Anything else is reported by check_contract once the file is read.
        return declared if isinstance(declared, ProviderLimits) else DEFAULT_PROVIDER_LIMITS

    def commands(self) -> list[tuple[str, Any]]:
        """(plugin name, Command) for every installed plugin's ``register_commands``."""
        return [(name, command) for name, info in self.available.items() for command in _own_hook(info.plugin, "register_commands") or ()]


def _own_hook(plugin: Any, hook: str) -> Any:
    """Call a contribution hook of one plugin before any manager exists (config validation)."""
    function = getattr(plugin, hook, None)
    if function is None or not _is_hookimpl(plugin, hook):
        return None
    return function()


def build_manager(available: Mapping[str, PluginInfo], enabled: Iterable[str]) -> pluggy.PluginManager:
    """A plugin manager with the enabled plugins registered and their hooks checked."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    # pluggy calls the last registered first: registering in reverse makes every hook run in the
    # order of `[plugins] enabled` (and keeps tryfirst/trylast meaningful).
    for name in reversed(list(enabled)):
        try:
            manager.register(available[name].plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from None
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:  # a hook name that no spec declares
        raise PluginError(str(exc)) from None
    check_contract(manager)
    return manager


def check_contract(manager: pluggy.PluginManager) -> None:
    """Fail at boot on what would otherwise fail on the first webhook."""
    problems: list[str] = []
    for name, plugin in manager.list_name_plugin():
        implemented = {impl for impl in dir(plugin) if _is_hookimpl(plugin, impl)}
        for hook in implemented:
            is_async = inspect.iscoroutinefunction(getattr(plugin, hook))
            if hook in (*NOTIFICATION_HOOKS, *ASYNC_PROVIDER_HOOKS) and not is_async:
                problems.append(f"plugin {name!r}: {hook} must be `async def`")
            elif hook not in (*NOTIFICATION_HOOKS, *ASYNC_PROVIDER_HOOKS) and is_async:
                problems.append(f"plugin {name!r}: {hook} must be a plain `def` (it runs inside the request)")
        if "provider_number_settings_model" in implemented:
            missing = [hook for hook in REQUIRED_PROVIDER_HOOKS if hook not in implemented]
            if missing:
                problems.append(f"provider {name!r} lacks required hooks: {', '.join(missing)}")
            else:
                status_map = getattr(plugin, "provider_status_map")()
                valid = {status.value for status in DeliveryStatus} - {"received", "pending"}
                wrong = sorted({value for value in status_map.values() if value not in valid})
                if wrong:
                    problems.append(f"provider {name!r}: provider_status_map maps to unknown statuses {wrong} (expected {sorted(valid)})")
            if "provider_rate_limits" in implemented and not isinstance(getattr(plugin, "provider_rate_limits")(), ProviderLimits):
                problems.append(f"provider {name!r}: provider_rate_limits must return core.ProviderLimits")
    if problems:
        raise PluginError("; ".join(problems))
