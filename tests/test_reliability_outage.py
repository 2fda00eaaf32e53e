"""Provider outage (docs/reliability.md): every provider's API answers 503 for 30 s, then
recovers → every message queued before and during it is delivered afterwards, exactly once, in
order within each conversation, and none is marked failed.

Real `hookline serve` processes, one on SQLite and one on PostgreSQL, run side by side against
fakes of Twilio, Meta's Graph API and a WPPConnect Server (one set per server), each behind an
`Outage` switch that answers every request with 503 while it is down. Running both servers at
once pays the 30 s once. 20 texts per provider per server (4 conversations × 5) are queued before
the servers start, so every first attempt meets the outage.

The config sets small backoffs (`backoff_base_seconds` 0.25, `backoff_max_seconds` 2: a retry
lands within 2 s of the recovery) and `max_attempts` 60 (about 21 attempts fit in 30 s at that
ceiling; the default 10 would give up, which is the documented behaviour for a longer outage,
not what this test is about). Meta's per-customer limit is raised so the retries' slots cannot
postpone the drain. The recorder provider is left out: it answers a 503 with its own
`retry_after` of 50 ms, which is its test double's choice, not backoff.

There is no crash here, so the at-least-once duplicates the docs admit (a send whose answer is
lost) cannot happen: every text must reach its fake exactly once. The test reports one line
(tests/reliability.py: the terminal summary's "reliability suite" section).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import clean_postgres
from core.testing.fakes import serving_in_thread
from tests.fake_meta import FakeMeta
from tests.fake_twilio import FakeTwilio
from tests.fake_wppconnect import FakeWppconnect
from tests.helpers import runtime_for, write_config
from tests.reliability import KITS, META_PNID, META_TOKEN, TWILIO_ACCOUNT, TWILIO_TOKEN, WPP_KEY, Stopwatch, report
from tests.test_process import messages_json, serving, wait_until

OUTAGE_SECONDS = 30.0
PROVIDERS = ("twilio", "meta", "wppconnect")
CONVERSATIONS = 4
PER_CONVERSATION = 5
QUEUE = {"backoff_base_seconds": 0.25, "backoff_max_seconds": 2.0, "max_attempts": 60}


class Outage:
    """An ASGI switch in front of a fake provider API: while down, every request gets a 503
    (counted) and never reaches the fake, so the fake's records hold accepted sends only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.until = 0.0
        self.refused = 0

    def down_for(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and time.monotonic() < self.until:
            self.refused += 1
            response = JSONResponse({"message": "Service Unavailable", "status": 503}, status_code=503)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Fakes:
    """One server's three fake provider APIs, each behind its own Outage switch."""

    def __init__(self) -> None:
        self.twilio = FakeTwilio({TWILIO_ACCOUNT: TWILIO_TOKEN})
        self.meta = FakeMeta({META_PNID: META_TOKEN})
        self.wppconnect = FakeWppconnect(secret_key=WPP_KEY)
        self.wppconnect.session("acme", status="CONNECTED", paired=True)
        self.switches = {name: Outage(getattr(self, name).app()) for name in PROVIDERS}
        self.urls: dict[str, str] = {}

    @contextmanager
    def running(self) -> Iterator["Fakes"]:
        with ExitStack() as stack:
            stack.callback(self.wppconnect.stop)
            for name, switch in self.switches.items():
                self.urls[name] = stack.enter_context(serving_in_thread(switch))  # type: ignore[arg-type]
            yield self

    def down_for(self, seconds: float) -> None:
        for switch in self.switches.values():
            switch.down_for(seconds)

    def accepted(self, provider: str) -> list[tuple[str, str]]:
        """(recipient, text) of each send the fake accepted, in the order it accepted them."""
        if provider == "twilio":
            return [(request.one("To") or "", request.one("Body") or "") for request in list(self.twilio.sent)]
        if provider == "meta":
            return [(str(request.json.get("to")), request.json["text"]["body"]) for request in list(self.meta.sends)]
        return [(item.to, item.body.get("message", "")) for item in list(self.wppconnect.sent)]

    def total(self) -> int:
        return sum(len(self.accepted(provider)) for provider in PROVIDERS)


def config_for(directory: Path, database_url: str, fakes: Fakes) -> Path:
    numbers = []
    for name in PROVIDERS:
        number = KITS[name].number(fakes.urls[name])
        if name == "meta":  # retries take per-customer slots too; the drain must not wait on them
            number["recipient_rate_limit"] = {"messages": 20, "per_seconds": 1, "burst": 30}
        numbers.append(number)
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, database_url, enabled=list(PROVIDERS), numbers=numbers, queue=QUEUE,
                        extra=KITS["wppconnect"].extra + "[plugins.meta]\nmark_read = false\n")


def text_of(provider: str, c: int, k: int) -> str:
    return f"{provider} conversation {c} message {k}"


async def queue_messages(config: Path) -> int:
    """Each conversation's texts in order, as workflows or agents queue them, before any server runs."""
    from core.numbers import sync_config_numbers
    from core.storage.database import close_storage, open_storage, prepare_schema

    runtime = runtime_for(config, **{name: KITS[name].plugin for name in PROVIDERS})
    url = runtime.settings.database.url
    await open_storage(url)
    try:
        await prepare_schema(url)
        await sync_config_numbers(runtime.settings.numbers)
        queued = 0
        for k in range(PER_CONVERSATION):  # interleaved across conversations, in order within each
            for name in PROVIDERS:
                for c in range(CONVERSATIONS):
                    conversation = await runtime.host.conversation_with(KITS[name].number_id, f"+1555020{c:04d}")
                    await runtime.host.send_text(conversation, text_of(name, c, k))
                    queued += 1
        return queued
    finally:
        await close_storage()


def check_delivered_once_in_order(fakes: Fakes) -> None:
    for name in PROVIDERS:
        accepted = fakes.accepted(name)
        counts = Counter(text for _, text in accepted)
        wanted = {text_of(name, c, k) for c in range(CONVERSATIONS) for k in range(PER_CONVERSATION)}
        assert set(counts) == wanted, (name, sorted(set(counts) ^ wanted))
        assert all(count == 1 for count in counts.values()), (name, [t for t, n in counts.items() if n > 1])
        by_recipient: dict[str, list[int]] = {}
        for recipient, text in accepted:
            by_recipient.setdefault(recipient, []).append(int(text.rsplit(" ", 1)[1]))
        assert len(by_recipient) == CONVERSATIONS, (name, by_recipient)
        assert all(order == list(range(PER_CONVERSATION)) for order in by_recipient.values()), (name, by_recipient)


def test_after_a_thirty_second_provider_outage_every_message_goes_once_in_order_and_none_fails(tmp_path, postgres_url):
    clock = Stopwatch()
    backends = {"sqlite": None}
    if postgres_url is not None:  # SQLite always; PostgreSQL too when one answers (conftest's policy)
        backends["postgres"] = clean_postgres(postgres_url)
    with ExitStack() as stack:
        runs: dict[str, dict[str, Any]] = {}
        for backend, url in backends.items():
            directory = tmp_path / backend
            fakes = stack.enter_context(Fakes().running())
            database_url = url or f"sqlite://{directory}/hookline.sqlite3"
            config = config_for(directory, database_url, fakes)
            runs[backend] = {"fakes": fakes, "config": config, "directory": directory, "queued": asyncio.run(queue_messages(config))}

        for run in runs.values():
            run["fakes"].down_for(OUTAGE_SECONDS)
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        servers = {backend: stack.enter_context(serving(run["config"], run["directory"])) for backend, run in runs.items()}

        # Every provider was tried while it was down, and nothing got through (checked while the
        # outage lasts: a very slow start could leave little of it).
        wait_until(lambda: all(switch.refused > 0 for run in runs.values() for switch in run["fakes"].switches.values()),
                   timeout=max(1.0, outage_ends - time.monotonic()), what="a refused attempt at every fake")
        if time.monotonic() < outage_ends:
            assert all(run["fakes"].total() == 0 for run in runs.values())

        def everything_delivered() -> bool:
            return all(run["fakes"].total() >= run["queued"] for run in runs.values())

        wait_until(everything_delivered, timeout=OUTAGE_SECONDS + 30, what="every queued message at its fake", poll=0.05)
        drained_after = time.monotonic() - outage_ends
        time.sleep(1)  # a duplicate would have arrived by now
        for backend, server in servers.items():
            assert server.stop() == 0, server.output()[-3000:]

        lines = []
        for backend, run in runs.items():
            fakes = run["fakes"]
            check_delivered_once_in_order(fakes)
            rows = [row for row in messages_json(run["config"], run["directory"]) if row["direction"] == "out"]
            assert len(rows) == run["queued"]
            assert {row["status"] for row in rows} <= {"queued", "sent"}, Counter(row["status"] for row in rows)
            assert all(row["external_id"] for row in rows) and not any(row["error_code"] for row in rows)
            refused = sum(switch.refused for switch in fakes.switches.values())
            lines.append(f"{backend}: {run['queued']} queued, {refused} attempts refused with 503, "
                         f"{fakes.total()} delivered, 0 duplicates, 0 out of order, 0 failed")
    report(f"provider outage (Twilio, Meta, WPPConnect down {OUTAGE_SECONDS:.0f} s, both backends at once): "
           f"{'; '.join(lines)}; all delivered {drained_after:.1f} s after the recovery ({clock})")
