"""Rate limits per number and per recipient: declared by providers (`provider_rate_limits`), set
per number in the config file and over the API, checked against the provider's cap, and kept by
the send job — sends over real HTTP spaced by the limit, slots too far off postponed without
using attempts, each conversation's order kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import plugins.meta as meta
import plugins.twilio as twilio
import plugins.wppconnect as wppconnect
import pytest

from core import ProviderLimits, RateLimit, hookimpl
from core.auth.tokens import create_token, create_user
from core.config import ConfigError, load_settings
from core.limits import effective, of_number, over_cap
from core.plugins import Catalog, PluginError, build_manager, explicit
from core.storage.models import Job, Message, NumberRow, RateLimitRow
from core.types import DeliveryStatus
from tests import recording_provider
from tests.fake_api import running_fake_api
from tests.helpers import SECRET, eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

CATALOG = Catalog(explicit({"recorder": recording_provider, "twilio": twilio, "meta": meta, "wppconnect": wppconnect}))
TWILIO = '[numbers.settings]\naccount_sid = "AC' + "0" * 32 + '"\nauth_token = "t"\n'
META = '[numbers.settings]\nphone_number_id = "1234"\naccess_token = "a"\napp_secret = "s"\nverify_token = "v"\n'
WPP = '[numbers.settings]\nsession = "shop"\ntoken = "tok"\n'


def settings_of(tmp_path: Path, text: str):
    path = tmp_path / "hookline.toml"
    path.write_text('[plugins]\nenabled = ["recorder", "twilio", "meta", "wppconnect"]\n' + text)
    return path, lambda: load_settings(path, CATALOG, {})


def number(id: str, provider: str, settings: str, extra: str = "") -> str:
    return f'[[numbers]]\nid = "{id}"\nprovider = "{provider}"\nphone = "+1555000{len(id)}"\n{settings}{extra}'


# --------------------------------------------------------------------------- providers and the file


def test_each_providers_defaults_and_a_numbers_own_limits_from_the_file(tmp_path):
    _, load = settings_of(tmp_path, "".join([
        number("tw", "twilio", TWILIO),
        number("fast", "twilio", TWILIO, "[numbers.rate_limit]\nmessages = 400\n"),
        number("me", "meta", META),
        number("paced", "meta", META, "[numbers.recipient_rate_limit]\nmessages = 2\nper_seconds = 10\nburst = 3\n"),
        number("wpp", "wppconnect", WPP),
        number("rec", "recorder", f'[numbers.settings]\nsecret = "{SECRET}"\napi_url = "http://x"\n',
               '[numbers.recipient_rate_limit]\nmessages = 1\nper_seconds = 3\n'),
    ]))
    settings = load()
    in_force = {n.id: of_number(CATALOG.rate_limits(n.provider), n) for n in settings.numbers}
    assert in_force == {
        "tw": (RateLimit(80, 1.0, 8), None),
        "fast": (RateLimit(400, 1.0, 40), None),  # burst left out: a tenth of a second's worth
        "me": (RateLimit(80, 1.0, 8), RateLimit(1, 6.0, 30)),  # Meta's pair limit by default
        "paced": (RateLimit(80, 1.0, 8), RateLimit(2, 10.0, 3)),
        "wpp": (RateLimit(1, 1.0, 5), None),
        "rec": (RateLimit(80, 1.0, 8), RateLimit(1, 3.0, 1)),  # no hook: the core's default, no cap
    }
    assert settings.number("tw").rate_limit is None  # the provider's default, not a copy of it
    assert settings.queue.rate_limit_max_wait_seconds == 2.0


def test_a_limit_above_the_providers_cap_or_malformed_is_a_config_error_naming_file_and_key(tmp_path):
    path, load = settings_of(tmp_path, "[queue]\nrate_limit_max_wait_seconds = -1\n" + "".join([
        number("tw", "twilio", TWILIO, "[numbers.rate_limit]\nmessages = 500\n"),
        number("me", "meta", META, "[numbers.rate_limit]\nmessages = 2000\nper_seconds = 2\nburst = 1001\n"),
        number("wpp", "wppconnect", WPP, "[numbers.rate_limit]\nmessages = 30\n"),
        number("burst", "twilio", TWILIO, "[numbers.rate_limit]\nmessages = 100\nburst = 401\n"),
        number("zero", "twilio", TWILIO, "[numbers.rate_limit]\nmessages = 0\n"),
        number("typo", "meta", META, "[numbers.recipient_rate_limit]\nmessage = 1\n"),
        number("ok", "twilio", TWILIO, "[numbers.rate_limit]\nmessages = 400\nburst = 400\n"),
    ]))
    with pytest.raises(ConfigError) as caught:
        load()
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}: queue.rate_limit_max_wait_seconds: Input should be greater than or equal to 0 (got -1)",
        f"{path}: numbers[4].rate_limit.messages: Input should be greater than 0 (got 0)",
        f"{path}: numbers[5].recipient_rate_limit.messages: required key is missing",
        f"{path}: numbers[5].recipient_rate_limit.message: unknown key (expected one of: messages, per_seconds, burst)",
        f"{path}: numbers[0].rate_limit: 500 messages/s is more than twilio allows a number (400/s)",
        f"{path}: numbers[1].rate_limit: a burst of 1001 is more than meta allows a number in a second (1000)",
        f"{path}: numbers[2].rate_limit: 30 messages/s is more than wppconnect allows a number (20/s)",
        f"{path}: numbers[3].rate_limit: a burst of 401 is more than twilio allows a number in a second (400)",
    ]


def test_a_provider_rate_limits_hook_must_declare_provider_limits():
    @hookimpl
    def provider_rate_limits() -> dict[str, int]:
        return {"per_second": 80}

    hooks = [name for name in dir(recording_provider) if name.startswith("provider_")]
    sloppy = SimpleNamespace(**{name: getattr(recording_provider, name) for name in hooks}, provider_rate_limits=provider_rate_limits)
    with pytest.raises(PluginError, match="provider 'sloppy': provider_rate_limits must return core.ProviderLimits"):
        build_manager(explicit({"sloppy": sloppy}), ["sloppy"])
    assert over_cap(ProviderLimits(RateLimit(1), max_per_second=None), "x", RateLimit(10**6)) is None  # no cap


def test_a_stored_limit_above_a_cap_lowered_since_is_held_to_the_cap():
    declared = ProviderLimits(RateLimit(80, 1.0, 8), max_per_second=400)
    assert effective(declared, RateLimit(1000, 2.0, 900), None) == (RateLimit(400, 1.0, 400), None)
    assert effective(declared, RateLimit(300, 1.0, 30), RateLimit(1, 6.0, 2)) == (RateLimit(300, 1.0, 30), RateLimit(1, 6.0, 2))


# --------------------------------------------------------------------------- the API


@asynccontextmanager
async def admin_api(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[Any, dict[str, str], Any]]:
    numbers = [{"id": "n1", "provider": "recorder", "phone": "+15550000001", "settings": {"secret": SECRET, "api_url": "http://x"}},
               {"id": "own", "provider": "recorder", "phone": "+15550000002", "settings": {"secret": SECRET, "api_url": "http://x"},
                "rate_limit": {"messages": 5, "per_seconds": 2}}]
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "twilio"], numbers=numbers), twilio=twilio)
    async with started(runtime) as client:
        token = await create_token(await create_user("ada", "correct horse battery", "admin"))
        yield client, {"Authorization": f"Bearer {token}"}, runtime.host


async def test_a_numbers_rate_limits_over_the_api(tmp_path, database_url):
    async with admin_api(tmp_path, database_url) as (client, admin, host):
        listed = {n["id"]: n for n in (await client.get("/api/whatsapp-numbers", headers=admin)).json()["items"]}
        assert (listed["n1"]["rate_limit"], listed["n1"]["recipient_rate_limit"]) == ({"messages": 80, "per_seconds": 1, "burst": 8}, None)
        assert listed["own"]["rate_limit"] == {"messages": 5, "per_seconds": 2, "burst": 1}  # from the file

        new = {"id": "api1", "provider": "recorder", "phone": "+15550000009", "settings": {"secret": "s3cret", "api_url": "http://x"},
               "rate_limit": {"messages": 200, "burst": 10}, "recipient_rate_limit": {"messages": 1, "per_seconds": 6, "burst": 45}}
        created = await client.post("/api/whatsapp-numbers", json=new, headers=admin)
        assert created.status_code == 201, created.text
        assert (created.json()["rate_limit"], created.json()["recipient_rate_limit"]) == (
            {"messages": 200, "per_seconds": 1, "burst": 10}, {"messages": 1, "per_seconds": 6, "burst": 45})
        assert (host.number("api1").rate_limit, host.number("api1").recipient_rate_limit) == (RateLimit(200, 1.0, 10), RateLimit(1, 6.0, 45))

        # Another process loads it from the row with its limits.
        host.numbers.pop("api1")
        host.api_numbers.versions.clear()
        await host.api_numbers.refresh()
        assert host.number("api1").rate_limit == RateLimit(200, 1.0, 10)

        # PATCH: a limit left out stays, null goes back to the provider's default.
        patched = await client.patch("/api/whatsapp-numbers/api1", json={"rate_limit": {"messages": 50}}, headers=admin)
        assert patched.status_code == 200, patched.text
        assert (patched.json()["rate_limit"], patched.json()["recipient_rate_limit"]) == (
            {"messages": 50, "per_seconds": 1, "burst": 5}, {"messages": 1, "per_seconds": 6, "burst": 45})
        reset = await client.patch("/api/whatsapp-numbers/api1", json={"recipient_rate_limit": None, "display_name": "x"}, headers=admin)
        assert (reset.json()["rate_limit"]["messages"], reset.json()["recipient_rate_limit"]) == (50, None)
        assert (await NumberRow.get(id="api1")).rate_limits == {"rate_limit": {"messages": 50, "per_seconds": 1, "burst": 5}}

        bad = await client.post("/api/whatsapp-numbers", json={**new, "id": "api2", "rate_limit": {"messages": 0}}, headers=admin)
        assert (bad.status_code, bad.json()["error"]["details"][0]["field"]) == (422, "rate_limit.messages")
        twilio_number = {"id": "tw", "provider": "twilio", "phone": "+15550000010", "rate_limit": {"messages": 500},
                         "settings": {"account_sid": "AC" + "0" * 32, "auth_token": "t"}}
        over = await client.post("/api/whatsapp-numbers", json=twilio_number, headers=admin)
        assert over.status_code == 422 and over.json()["error"]["details"] == [
            {"field": "rate_limit", "message": "500 messages/s is more than twilio allows a number (400/s)"}]
        assert not await NumberRow.filter(id="tw").exists()
        allowed = await client.post("/api/whatsapp-numbers", json={**twilio_number, "rate_limit": {"messages": 400}}, headers=admin)
        assert allowed.status_code == 201 and allowed.json()["rate_limit"] == {"messages": 400, "per_seconds": 1, "burst": 40}


# --------------------------------------------------------------------------- sending


def recorder_number(**limits: dict[str, Any]) -> dict[str, Any]:
    return {"id": "n1", "provider": "recorder", "phone": "+15550000001", "settings": {"secret": SECRET}, **limits}


async def test_sends_over_real_http_are_spaced_by_the_numbers_limit(tmp_path, database_url):
    with running_fake_api() as fake:
        number = recorder_number(rate_limit={"messages": 5, "burst": 1})  # one every 200 ms
        number["settings"]["api_url"] = fake.url
        runtime = runtime_for(write_config(tmp_path, database_url, numbers=[number], queue={"concurrency": 8}))
        async with started(runtime):
            host = runtime.host
            conversations = [await host.conversation_with("n1", f"+1555010{index:04d}") for index in range(6)]
            before = time.monotonic()
            # Six conversations: the queue runs them all at once, the limit one every 200 ms.
            messages = [await host.send_text(conversation, f"hi {index}") for index, conversation in enumerate(conversations)]

            async def all_queued() -> bool:
                return await Message.filter(id__in=[m.id for m in messages], status=DeliveryStatus.QUEUED).count() == 6

            await eventually(all_queued, timeout=5)
    arrivals = sorted(fake.received_at)
    assert len(arrivals) == 6
    # The k-th send never before k intervals: a send may be late (a busy machine), never early.
    early = [round(at - before - index * 0.2, 3) for index, at in enumerate(arrivals) if at < before + index * 0.2 - 0.005]
    assert early == []
    assert arrivals[-1] - before < 3  # and nothing waited for no reason


async def test_a_far_slot_postpones_the_send_without_using_attempts_and_keeps_the_conversations_order(tmp_path, database_url):
    """One customer may get one message every 0.5 s; a send waits at most 0.1 s in its job. With
    max_attempts = 1, a postponement that counted as an attempt would end the message failed."""
    with running_fake_api() as fake:
        number = recorder_number(recipient_rate_limit={"messages": 1, "per_seconds": 0.5, "burst": 1})
        number["settings"]["api_url"] = fake.url
        config = write_config(tmp_path, database_url, numbers=[number],
                              queue={"max_attempts": 1, "rate_limit_max_wait_seconds": 0.1, "concurrency": 4})
        runtime = runtime_for(config)
        async with started(runtime):
            host = runtime.host
            ana = await host.conversation_with("n1", "+15550100001")
            bea = await host.conversation_with("n1", "+15550100002")
            before = time.monotonic()
            sent = [await host.send_text(ana, f"part {index}") for index in range(3)]
            sent.append(await host.send_text(bea, "for bea"))

            async def postponed() -> bool:
                job = await Job.filter(kind="send", last_error__startswith="rate limit per recipient of number n1").first()
                return job is not None and job.state == "ready" and job.attempts == 0

            await eventually(postponed, timeout=5)

            async def all_queued() -> bool:
                return await Message.filter(id__in=[m.id for m in sent], status=DeliveryStatus.QUEUED).count() == 4

            await eventually(all_queued, timeout=10)
    texts = [request["text"] for request in fake.received]
    assert [text for text in texts if text.startswith("part")] == ["part 0", "part 1", "part 2"]
    assert texts.index("for bea") < texts.index("part 1")  # another customer is not held up
    at = dict(zip(texts, fake.received_at))
    assert at["part 1"] - before >= 0.5 - 0.005 and at["part 2"] - before >= 1.0 - 0.005  # never before its slot
    assert at["part 2"] - before < 5


async def test_a_recipient_slot_is_given_back_when_the_numbers_is_too_far_off(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG, logger="hookline.worker")
    with running_fake_api() as fake:
        number = recorder_number(rate_limit={"messages": 1, "per_seconds": 1, "burst": 1},
                                 recipient_rate_limit={"messages": 1, "per_seconds": 10, "burst": 1})
        number["settings"]["api_url"] = fake.url
        config = write_config(tmp_path, database_url, numbers=[number], queue={"rate_limit_max_wait_seconds": 0.1})
        runtime = runtime_for(config)
        async with started(runtime):
            host = runtime.host
            ana, bea = [await host.conversation_with("n1", address) for address in ("+15550100001", "+15550100002")]
            before = time.monotonic()
            first = await host.send_text(ana, "takes the number's slot")
            await eventually(lambda: len(fake.received) == 1, timeout=5)
            second = await host.send_text(bea, "waits for the next one")

            async def waiting_for_the_number() -> bool:
                return await Job.filter(kind="send", last_error__startswith="rate limit of number n1").exists()

            await eventually(waiting_for_the_number, timeout=5)
            row = await RateLimitRow.get(name="recipient:n1:+15550100002")
            assert row.tat_us == row.asked_us  # its slot was given back: a fresh key again
            await eventually(lambda: len(fake.received) == 2, timeout=5)
            assert fake.received_at[1] - before >= 1.0 - 0.005  # not before the number's next slot

            async def both_queued() -> bool:
                return await Message.filter(id__in=[first.id, second.id], status=DeliveryStatus.QUEUED).count() == 2

            await eventually(both_queued, timeout=5)
    assert "postponed" in caplog.text and "+15550100002" not in caplog.text  # no customer numbers in logs


async def test_a_send_woken_long_after_its_slot_takes_a_new_one_instead_of_bunching(tmp_path, database_url, monkeypatch):
    """A stalled process must not send on a slot long gone: with the sends of later slots it would
    put more than the limit into one second at the provider."""
    from core import ratelimit, sending

    real_sleep, real_acquire = sending.asyncio.sleep, ratelimit.acquire
    stalls = [0.3]  # the first real wait oversleeps by 300 ms (the loop was busy), later ones do not
    slots: list[float] = []

    async def stalling_sleep(delay: float) -> None:
        await real_sleep(delay + (stalls.pop() if stalls and delay > 0 else 0.0))

    async def counted_acquire(*args, **kwargs):  # type: ignore[no-untyped-def]
        reservation = await real_acquire(*args, **kwargs)
        slots.append(reservation.wait)
        return reservation

    number = recorder_number(rate_limit={"messages": 10, "per_seconds": 1, "burst": 1})
    number["settings"]["api_url"] = "http://127.0.0.1:9"
    runtime = runtime_for(write_config(tmp_path, database_url, numbers=[number]))
    async with started(runtime, run_workers=False):
        host = runtime.host
        provider = host.dispatch.provider("recorder")
        monkeypatch.setattr(sending, "asyncio", SimpleNamespace(sleep=stalling_sleep))  # this module's sleeps only
        monkeypatch.setattr(ratelimit, "acquire", counted_acquire)
        await sending.wait_for_slots(host, provider, host.number("n1"), "+15550100001")  # the burst: now
        await sending.wait_for_slots(host, provider, host.number("n1"), "+15550100001")  # 100 ms away, woken 300 ms late
    assert len(slots) == 3 and stalls == []  # the overslept slot was given up for a new one
    assert slots[0] == 0 and slots[1] > 0.05 and slots[2] < 0.05  # the new one was due at once: the old had passed
