"""What the host offers plugins beyond sending text: number state, sealed secrets, replies,
interactive messages, templates where unsupported, and contributed CLI commands."""

from __future__ import annotations

import argparse
import json
import types

import pytest

from core import Interactive, Template, hookimpl
from core.cli import _plugin_command
from core.plugins import Catalog, PluginError, build_manager, discover, explicit
from core.storage.models import Message, NumberRow
from core.vault import SealedValueError, seal, unseal
from tests import command_plugin, recording_provider
from tests.fake_api import running_fake_api
from tests.helpers import eventually, inbound_body, post_signed, runtime_for, started, write_config

anyio = pytest.mark.anyio


@anyio
async def test_number_state_is_stored_where_operators_see_it(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime):
        await runtime.host.set_number_state("n1", "QRCODE", "scan the code")
        row = await NumberRow.get(id="n1")
        assert (row.state, row.state_detail) == ("QRCODE", "scan the code")
        assert row.state_at is not None


@anyio
async def test_number_secrets_are_sealed_at_rest(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime):
        await runtime.host.store_number_secret("n1", "webhook_secret", "s3cr3t-value")
        await runtime.host.store_number_secret("n1", "token", "tok")
        row = await NumberRow.get(id="n1")
        assert set(row.sealed_secrets) == {"webhook_secret", "token"}
        assert "s3cr3t-value" not in json.dumps(row.sealed_secrets)
        assert await runtime.host.number_secret("n1", "webhook_secret") == "s3cr3t-value"
        assert await runtime.host.number_secret("n1", "missing") is None


def test_sealed_values_need_the_same_key():
    sealed = seal(b"key-one", "value")
    assert unseal(b"key-one", sealed) == "value"
    with pytest.raises(SealedValueError, match="HOOKLINE_SECRET_KEY"):
        unseal(b"key-two", sealed)


@anyio
async def test_replies_and_interactive_messages_reach_the_provider(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime) as client:
            await post_signed(client, inbound_body(("in-1", "+15550100123", "menu?")))
            inbound = await Message.get(external_id="in-1").prefetch_related("conversation")
            await runtime.host.send_text(inbound.conversation, "here it is", reply_to=inbound)
            choice = Interactive("Pick one", buttons=[{"id": "pay", "title": "Pay"}, {"id": "agent", "title": "Agent"}])
            message = await runtime.host.send_interactive(inbound.conversation, choice)
            await eventually(lambda: len(fake.received) == 2)
            assert fake.received[0]["reply_to"] == "in-1"
            assert fake.received[1]["interactive"]["buttons"][1] == {"id": "agent", "title": "Agent"}
            assert (await Message.get(id=message.id)).kind == "interactive"


@anyio
async def test_a_template_to_a_provider_without_templates_fails_clearly(tmp_path, database_url):
    with running_fake_api() as fake:
        runtime = runtime_for(write_config(tmp_path, database_url, api_url=fake.url))
        async with started(runtime):
            conversation = await runtime.host.conversation_with("n1", "+15550100123")
            message = await runtime.host.send_template(conversation, Template("welcome", "es"))

            async def failed() -> bool:
                return (await Message.get(id=message.id)).status.value == "failed"

            await eventually(failed)
            stored = await Message.get(id=message.id)
            assert stored.error_code == "unsupported" and "templates" in stored.error_text
            assert fake.received == []


def test_plugin_commands_run_with_storage_when_enabled(tmp_path, capsys):
    database = f"sqlite://{tmp_path}/db.sqlite3"
    config = write_config(tmp_path, database, enabled=["recorder", "cmdtest"], modules=["tests.recording_provider", "tests.command_plugin"])
    (command,) = Catalog(explicit({"cmdtest": command_plugin})).commands()[0][1:]
    args = argparse.Namespace(config=str(config), log_format=None, greeting="hola")
    assert _plugin_command("cmdtest", command, args) == 3
    assert "hola: 1 number(s)" in capsys.readouterr().out

    disabled = write_config(tmp_path, database, modules=["tests.recording_provider", "tests.command_plugin"])
    args = argparse.Namespace(config=str(disabled), log_format=None, greeting="hola")
    assert _plugin_command("cmdtest", command, args) == 2
    assert "not enabled" in capsys.readouterr().err


def test_a_module_plugin_cannot_take_an_installed_plugins_name(monkeypatch):
    impostor = types.ModuleType("impostor")
    impostor.PLUGIN_NAME = "twilio"
    monkeypatch.setitem(__import__("sys").modules, "impostor", impostor)
    with pytest.raises(PluginError, match="named 'twilio', like the installed plugin"):
        discover(["impostor"])


def _provider_with(**overrides) -> types.ModuleType:
    module = types.ModuleType("variant")
    for name in dir(recording_provider):
        if name.startswith("provider_"):
            setattr(module, name, getattr(recording_provider, name))
    for name, function in overrides.items():
        setattr(module, name, hookimpl(function))
    return module


def test_a_request_time_hook_written_async_fails_at_boot():
    async def provider_verify(request, numbers):
        return True

    with pytest.raises(PluginError, match="provider_verify must be a plain `def`"):
        build_manager(explicit({"variant": _provider_with(provider_verify=provider_verify)}), ["variant"])


def test_a_hook_with_an_unknown_argument_is_a_plugin_error():
    def provider_verify(request, numbers, colour):
        return True

    with pytest.raises(PluginError, match="'variant'"):
        build_manager(explicit({"variant": _provider_with(provider_verify=provider_verify)}), ["variant"])


@anyio
async def test_tryfirst_still_runs_first(tmp_path, database_url):
    order: list[str] = []

    class Plain:
        @hookimpl
        async def on_inbound_message(self):
            order.append("plain")

    class Eager:
        @hookimpl(tryfirst=True)
        async def on_inbound_message(self):
            order.append("eager")

    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "plain", "eager"]), plain=Plain(), eager=Eager())
    async with started(runtime) as client:
        await post_signed(client, inbound_body(("t1", "+1555", "hi")))
        await eventually(lambda: len(order) == 2)
    assert order == ["eager", "plain"]


@anyio
async def test_a_parser_naming_another_number_is_400_not_an_endless_retry(tmp_path, database_url):
    def provider_parse(request, numbers):
        parsed = recording_provider.provider_parse(request, numbers)
        for message in parsed.messages:
            message.number_id = "someone-else"
        return parsed

    config = write_config(tmp_path, database_url, enabled=["variant"],
                          numbers=[{"id": "n1", "provider": "variant", "phone": "+1", "settings": {"secret": "test-secret", "api_url": "http://127.0.0.1:9"}}])
    runtime = runtime_for(config, variant=_provider_with(provider_parse=provider_parse))
    async with started(runtime) as client:
        response = await post_signed(client, inbound_body(("x1", "+1555", "hi")), path="/webhooks/whatsapp/variant")
        assert response.status_code == 400
        assert await Message.all().count() == 0
