"""The plugin host: discovery, enabling, contract checks, scoped calls and isolated fan-out."""

from __future__ import annotations

import logging
import types

import pytest

from core import hookimpl
from core.dispatch import Dispatch
from core.plugins import PluginError, build_manager, discover, explicit
from core.storage.models import Message
from tests import recording_provider
from tests.helpers import eventually, inbound_body, post_signed, runtime_for, started, write_config


def test_bundled_plugins_are_found_through_the_entry_point_group():
    found = discover()
    for name, role in (("twilio", "provider"), ("meta", "provider"), ("wppconnect", "provider"), ("bot_transfer", "extension")):
        assert found[name].source == "entry point"
        assert found[name].role in (role, "workflow")
        assert found[name].version


def test_module_plugins_are_found_by_import_path():
    found = discover(["tests.recording_provider"])
    assert found["recorder"].source == "module"
    assert found["recorder"].role == "provider"


def test_only_enabled_plugins_are_registered():
    available = explicit({"recorder": recording_provider, "other": types.SimpleNamespace()})
    manager = build_manager(available, ["recorder"])
    assert [name for name, _ in manager.list_name_plugin()] == ["recorder"]


def test_notification_hooks_must_be_async():
    class Sync:
        @hookimpl
        def on_inbound_message(self, message):  # not async: would silently never be awaited
            pass

    with pytest.raises(PluginError, match="'bad': on_inbound_message must be `async def`"):
        build_manager(explicit({"bad": Sync()}), ["bad"])


def test_provider_missing_a_required_hook_fails_at_boot():
    half = types.ModuleType("half")
    half.provider_number_settings_model = recording_provider.provider_number_settings_model
    half.provider_verify = recording_provider.provider_verify
    with pytest.raises(PluginError, match="provider 'half' lacks required hooks: provider_webhook_routes"):
        build_manager(explicit({"half": half}), ["half"])


def test_status_map_must_use_the_vocabulary():
    broken = types.ModuleType("broken")
    for name in dir(recording_provider):
        if name.startswith("provider_"):
            setattr(broken, name, getattr(recording_provider, name))

    @hookimpl
    def provider_status_map():
        return {"delivered": "arrived"}

    broken.provider_status_map = provider_status_map
    with pytest.raises(PluginError, match="unknown statuses \\['arrived'\\]"):
        build_manager(explicit({"broken": broken}), ["broken"])


def test_provider_calls_are_scoped_to_one_plugin():
    """Two providers: asking one to verify never runs the other's hook."""
    calls: list[str] = []

    def provider_copy(name: str) -> types.ModuleType:
        module = types.ModuleType(name)
        for attr in dir(recording_provider):
            if attr.startswith("provider_"):
                setattr(module, attr, getattr(recording_provider, attr))

        @hookimpl
        def provider_verify(request, numbers):
            calls.append(name)
            return name == "a"

        module.provider_verify = provider_verify
        return module

    dispatch = Dispatch(build_manager(explicit({"a": provider_copy("a"), "b": provider_copy("b")}), ["a", "b"]))
    assert dispatch.provider("b").verify(None, []) is False
    assert dispatch.provider("a").verify(None, []) is True
    assert calls == ["b", "a"]


class Raising:
    @hookimpl
    async def on_inbound_message(self, message):
        raise RuntimeError("workflow bug")


class Recording:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    async def on_inbound_message(self, message, conversation):
        self.seen.append(message.external_id)


@pytest.mark.anyio
async def test_a_raising_workflow_does_not_stop_the_others_and_is_logged_by_name(tmp_path, database_url, caplog):
    before, after = Recording(), Recording()
    config = write_config(tmp_path, database_url, enabled=["recorder", "first", "broken", "last"])
    runtime = runtime_for(config, first=before, broken=Raising(), last=after)
    caplog.set_level(logging.ERROR, logger="hookline.plugins")
    async with started(runtime) as client:
        assert (await post_signed(client, inbound_body(("w1", "+1555", "hi")))).status_code == 200
        await eventually(lambda: after.seen == ["w1"])
        assert before.seen == ["w1"]
        assert await Message.filter(external_id="w1").count() == 1
    failures = [r for r in caplog.records if "plugin broken failed in on_inbound_message" in r.getMessage()]
    assert len(failures) == 1
    assert "workflow bug" in (failures[0].exc_text or "")


@pytest.mark.anyio
async def test_notifications_run_in_the_order_plugins_are_enabled(tmp_path, database_url):
    order: list[str] = []

    def named(name: str) -> object:
        class Plugin:
            @hookimpl
            async def on_inbound_message(self):
                order.append(name)

        return Plugin()

    config = write_config(tmp_path, database_url, enabled=["recorder", "zeta", "alpha", "mid"])
    runtime = runtime_for(config, zeta=named("zeta"), alpha=named("alpha"), mid=named("mid"))
    async with started(runtime) as client:
        await post_signed(client, inbound_body(("o1", "+1555", "hi")))
        await eventually(lambda: len(order) == 3)
    assert order == ["zeta", "alpha", "mid"]


class LosesTheDatabaseOnce:
    """Its first call dies with the connection, as when PostgreSQL restarts under it."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    async def on_inbound_message(self, message):
        self.calls += 1
        if self.calls == 1:
            import asyncpg

            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


@pytest.mark.anyio
async def test_a_workflow_that_loses_the_database_runs_again_instead_of_being_dropped(tmp_path, database_url):
    """A bug is the plugin's own (logged, not retried: see above); a lost database is not, and
    what the workflow was doing must not vanish with it."""
    flaky, after = LosesTheDatabaseOnce(), Recording()
    config = write_config(tmp_path, database_url, enabled=["recorder", "flaky", "last"], queue={"backoff_base_seconds": 0.05})
    runtime = runtime_for(config, flaky=flaky, last=after)
    async with started(runtime) as client:
        assert (await post_signed(client, inbound_body(("w1", "+1555", "hi")))).status_code == 200
        await eventually(lambda: after.seen == ["w1"])
    assert flaky.calls == 2  # the job ran again; the plugin after it ran once, when the job succeeded
