"""hookline's kit for plugin authors: build the app around a plugin, post webhooks the way a
provider does, fake a provider's API over real HTTP, and run the provider conformance suite.

Installing hookline also registers ``core.testing.plugin`` with pytest (entry point
``pytest11``), which provides the ``hookline_database_url`` fixture. The tutorial is
docs/writing-plugins.md.
"""

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

__all__ = [
    "FAST_QUEUE",
    "PUBLIC_URL",
    "ConformanceApp",
    "Delivery",
    "ErrorAnswer",
    "FakeApi",
    "Inbox",
    "LoopbackChannel",
    "ProviderConformance",
    "RecordedRequest",
    "Sample",
    "Sent",
    "corrupted",
    "eventually",
    "form_delivery",
    "json_delivery",
    "make_runtime",
    "post",
    "served",
    "serving_in_thread",
    "sqlite_url",
    "started",
    "tampered",
    "toml_value",
    "with_proof_of",
    "write_config",
]
