"""Everything a hookline process assembles at boot, from a config file and the installed plugins."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ConfigError, Problem, Settings, load_settings, read_config_file
from core.dispatch import Dispatch
from core.host import Host
from core.plugins import Catalog, PluginError, PluginInfo, build_manager, discover, explicit
from core.keys import SecretKey
from core.media import MediaStore
from core.queue import EmbeddedQueue, WorkQueue


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    available: Mapping[str, PluginInfo]
    dispatch: Dispatch
    host: Host


def build_runtime(
    config_path: Path, plugins: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Runtime:
    """Validate the config against the plugins and wire the host. Raises ConfigError or PluginError.

    `plugins` replaces discovery (tests pass an explicit list; entry points are then not loaded).
    """
    env = os.environ if env is None else env
    if plugins is None:
        available = discover(_plugin_modules(config_path, env))
    else:
        available = explicit(plugins)
    settings = load_settings(config_path, Catalog(available), env)
    try:
        manager = build_manager(available, settings.enabled_plugins)
    except PluginError as exc:  # name the file and the key, like every configuration problem
        raise ConfigError(config_path, [Problem("plugins.enabled", str(exc))]) from None
    dispatch = Dispatch(manager)
    data_dir = Path(settings.server.data_dir)
    key = SecretKey(data_dir, env)
    media = MediaStore(data_dir / "media", key, settings.server.public_url, settings.media.url_ttl_seconds)
    host = Host(settings, dispatch, _queue_for(settings), media, key)
    return Runtime(settings, available, dispatch, host)


def _queue_for(settings: Settings) -> WorkQueue:
    if settings.queue_backend == "pgqueuer":
        from core.pgqueue import PgQueue  # pgqueuer is not imported on the embedded default

        return PgQueue(settings.database.url)
    return EmbeddedQueue()


def _plugin_modules(config_path: Path, env: Mapping[str, str]) -> list[str]:
    """`[plugins] modules` must be known before the file can be validated against plugins."""
    try:
        data = read_config_file(config_path, env)
    except ConfigError as exc:
        data = getattr(exc, "data", {})
    modules = data.get("plugins", {}).get("modules", []) if isinstance(data.get("plugins"), dict) else []
    return [module for module in modules if isinstance(module, str)]
