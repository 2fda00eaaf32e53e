"""hookline's kit for plugin authors: build the app around a plugin, post webhooks the way a
provider does, fake a provider's API over real HTTP, and run the provider conformance suite.

Installing hookline also registers ``core.testing.plugin`` with pytest (entry point
``pytest11``), which provides the ``hookline_database_url`` fixture. The tutorial is
docs/writing-plugins.md.

The names below are imported on first use: pytest loads the plugin module in every run of the
environment, and that must not cost the import of the whole app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "core.testing.app": ("FAST_QUEUE", "PUBLIC_URL", "Inbox", "eventually", "make_runtime", "served", "sqlite_url",
                         "started", "toml_value", "write_config"),
    "core.testing.channel": ("LoopbackChannel", "Sent"),
    "core.testing.conformance": ("ConformanceApp", "ErrorAnswer", "ProviderConformance", "Sample"),
    "core.testing.fakes": ("FakeApi", "RecordedRequest", "serving_in_thread"),
    "core.testing.webhooks": ("Delivery", "corrupted", "form_delivery", "json_delivery", "post", "tampered", "with_proof_of"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "FAST_QUEUE", "PUBLIC_URL", "ConformanceApp", "Delivery", "ErrorAnswer", "FakeApi", "Inbox", "LoopbackChannel",
    "ProviderConformance", "RecordedRequest", "Sample", "Sent", "corrupted", "eventually", "form_delivery",
    "json_delivery", "make_runtime", "post", "served", "serving_in_thread", "sqlite_url", "started", "tampered",
    "toml_value", "with_proof_of", "write_config",
]
assert set(__all__) == set(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'core.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from core.testing.app import (
        FAST_QUEUE,
        PUBLIC_URL,
        Inbox,
        eventually,
        make_runtime,
        served,
        sqlite_url,
        started,
        toml_value,
        write_config,
    )
    from core.testing.channel import LoopbackChannel, Sent
    from core.testing.conformance import ConformanceApp, ErrorAnswer, ProviderConformance, Sample
    from core.testing.fakes import FakeApi, RecordedRequest, serving_in_thread
    from core.testing.webhooks import Delivery, corrupted, form_delivery, json_delivery, post, tampered, with_proof_of
