"""Deliberately broken providers: the recording provider with one hard part done wrong. The
kit's own tests (tests/test_testing_kit.py) run the conformance suite against them and expect it
to fail, saying what is wrong."""

from __future__ import annotations

import types
from collections.abc import Sequence

from core import Number, WebhookRequest, hookimpl
from tests import recording_provider


def _recorder_with(name: str, **overrides: object) -> types.ModuleType:
    """A plugin module with every hook of the recording provider, some replaced."""
    plugin = types.ModuleType(name)
    for attribute in dir(recording_provider):
        if attribute.startswith(("provider_", "plugin_")):
            setattr(plugin, attribute, getattr(recording_provider, attribute))
    for attribute, hook in overrides.items():
        setattr(plugin, attribute, hook)
    return plugin


@hookimpl
def _verify_nothing(request: WebhookRequest, numbers: Sequence[Number]) -> bool:
    """The classic mistake: proof "checked" later, or never."""
    return True


@hookimpl
def _ack_numbers_mixed_up() -> dict[str, str]:
    """Delivered and read swapped (WPPConnect's acks 2 and 3 are easy to mix up): a message
    delivered then read looks to hookline like read, then back to delivered."""
    return {"queued": "queued", "sent": "sent", "delivered": "read", "read": "delivered", "failed": "failed"}


skips_proof = _recorder_with("skips_proof", provider_verify=_verify_nothing)
statuses_go_backwards = _recorder_with("statuses_go_backwards", provider_status_map=_ack_numbers_mixed_up)
