"""The provider conformance suite: the hard parts of a channel, checked the same way for every
provider plugin.

Subclass `ProviderConformance` in a test module, in a class named ``Test…`` so pytest collects
it, and supply what only the provider knows: the plugin, a number's settings, how a message and a
status look on the wire, how the provider proves a request, and how its API refuses. The suite
then checks, against the whole app on a throwaway database and a fake API over real HTTP:

* a proven webhook is accepted and lands on its number; a tampered, changed or missing proof is
  403 and stores nothing;
* a webhook delivered again stores one message and notifies workflows once;
* every sample parses into the right number of messages and statuses;
* statuses follow the order they happen in, and never go backwards when they arrive out of order;
* a text (and a file) reaches the fake API with the provider's id stored;
* a permanent error fails the message with the provider's code, a transient one is retried, a
  rate limit waits as long as it asks;
* random, mutated and oversized bodies never get a 5xx nor store a row;
* no secret setting ever reaches a log line.

Every failure says in words what is wrong and which hook to look at.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel, SecretStr
from starlette.responses import Response

from core.runtime import Runtime
from core.storage.models import Message, StatusEvent
from core.testing.app import PUBLIC_URL, Inbox, eventually, make_runtime, started
from core.testing.fakes import FakeApi
from core.testing.fuzz import garbage, mutants, preview
from core.testing.webhooks import Delivery, post, proof_of, tampered, with_proof_of
from core.types import STATUS_RANK, DeliveryStatus, Media, Number

#: The answers a webhook can get, and what each says about the provider's hooks.
_REFUSALS = {
    400: "provider_parse could not read it (raised MalformedWebhook or another error)",
    403: "provider_verify refused it: does prove() prove it the way the provider does, with the number's own secret?",
    404: "provider_match_numbers found no number for it: it must return the number the request names",
    413: "it is larger than the body limit",
    503: "storing it failed: provider_parse returned a value storage cannot hold (see the reason)",
}
_SUCCESS = {DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.PLAYED}
_QUIET_LOGGERS = ("tortoise", "aiosqlite", "asyncio", "httpx", "httpcore")  # silenced below WARNING by hookline


@dataclass(frozen=True)
class Sample:
    """A real webhook in the provider's wire format (unproven; the suite proves it) and what it carries."""

    name: str
    delivery: Delivery
    messages: int = 0
    statuses: int = 0


@dataclass(frozen=True)
class ErrorAnswer:
    """How the provider's API refuses a send: the response the fake gives instead of its own.

    `code` is the error code the message must end with (permanent errors); `retry_after` the
    seconds the answer asks the sender to wait (rate limits), when it says.
    """

    response: Response
    code: str | None = None
    retry_after: float | None = None


@dataclass
class ConformanceApp:
    """The app under test: its runtime, an in-process client, the fake API, the two numbers
    (`numbers[0]` is the one the checks use) and an Inbox workflow recording notifications."""

    runtime: Runtime
    client: httpx.AsyncClient
    fake: FakeApi
    numbers: list[Number]
    inbox: Inbox
    refusals: list[str] = field(default_factory=list)  # the pipeline's log lines for refused webhooks

    @property
    def host(self) -> Any:
        return self.runtime.host

    def reason(self) -> str:
        """The last refusal the pipeline logged, to explain an answer."""
        return f" (hookline logged: {self.refusals[-1]})" if self.refusals else ""


class _Refusals(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


class ProviderConformance:
    """Base class of a provider's conformance tests; see the module docstring and
    docs/writing-plugins.md. Set the class attributes and implement the methods marked "supply"."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    # ------------------------------------------------------------------ supply: attributes

    #: The plugin module (or object) under test, and its name (the entry-point name).
    plugin: ClassVar[Any] = None
    provider: ClassVar[str] = ""
    #: The phones of the two numbers the suite configures (ids "number-a" and "number-b").
    phones: ClassVar[tuple[str, str]] = ("+15550000001", "+15550000002")
    #: The customer's address as hookline stores it (what sends go to).
    customer: ClassVar[str] = "+15550100123"
    #: The plugin's `[plugins.<name>]` table, if it needs one.
    plugin_settings: ClassVar[Mapping[str, Any] | None] = None
    #: The delivery statuses the provider's webhooks report, as hookline statuses; () for none.
    reported_statuses: ClassVar[tuple[str, ...]] = ("sent", "delivered", "read")
    #: Whether provider_send_media sends files (checked over HTTP when True).
    sends_media: ClassVar[bool] = True
    #: Whether the proof covers the body (a signature), so a changed body must be refused too;
    #: False when the proof is a secret in the URL or a header.
    proof_covers_body: ClassVar[bool] = True
    public_url: ClassVar[str] = PUBLIC_URL
    #: The seed of the random bodies, and how many mutants of each sample to try.
    fuzz_seed: ClassVar[int] = 20260101
    fuzz_rounds: ClassVar[int] = 6

    # ------------------------------------------------------------------ supply: fixture and methods

    @pytest.fixture
    def fake(self) -> Iterator[FakeApi]:
        """Supply: yield a running fake of the provider's API (a `FakeApi`)."""
        pytest.fail(f"{type(self).__name__} must define a `fake` fixture yielding a running core.testing.FakeApi")
        yield  # pragma: no cover

    def number_settings(self, fake: FakeApi, index: int) -> dict[str, Any]:
        """Supply: the `[numbers.settings]` of number `index` (0 or 1), pointed at `fake.url`."""
        raise NotImplementedError(f"{type(self).__name__} must implement number_settings(fake, index)")

    def prove(self, delivery: Delivery, number: Number) -> Delivery:
        """Supply: `delivery` proven as the provider proves it for `number` (signed, or with the
        secret in its path or headers)."""
        raise NotImplementedError(f"{type(self).__name__} must implement prove(delivery, number)")

    def inbound_webhook(self, number: Number, index: int, text: str) -> Delivery:
        """Supply: an unproven webhook carrying one text message from `customer` to `number`.
        Equal `index` means the same message (the same provider id); different, another one."""
        raise NotImplementedError(f"{type(self).__name__} must implement inbound_webhook(number, index, text)")

    def status_webhook(self, number: Number, external_id: str, status: str) -> Delivery:
        """Supply (when `reported_statuses`): an unproven webhook saying that our message
        `external_id` (the id provider_send_text returned) is now `status` (a hookline status)."""
        raise NotImplementedError(f"{type(self).__name__} must implement status_webhook(number, external_id, status)")

    def samples(self, number: Number) -> Sequence[Sample]:
        """Supply: real webhooks for `number` in the provider's wire format, unproven."""
        raise NotImplementedError(f"{type(self).__name__} must implement samples(number)")

    def permanent_error(self) -> ErrorAnswer:
        """Supply: an API answer no retry will change (an invalid recipient), with its code."""
        raise NotImplementedError(f"{type(self).__name__} must implement permanent_error()")

    def transient_error(self) -> ErrorAnswer:
        """Supply: an API answer a later try can get past (a 5xx, an outage)."""
        raise NotImplementedError(f"{type(self).__name__} must implement transient_error()")

    def rate_limit(self) -> ErrorAnswer | None:
        """Supply, if the API has one: its rate-limit answer, with the wait it asks for."""
        return None

    def tamper(self, unproven: Delivery, proven: Delivery, number: Number) -> Delivery:
        """A forger's copy of `proven`: by default one character changed in every header and path
        part that prove() added. Override for proofs kept elsewhere (e.g. in the body)."""
        return tampered(unproven, proven)

    # ------------------------------------------------------------------ optional checks

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Leave out the checks of what the provider declares it does not do."""
        super().__init_subclass__(**kwargs)
        if not cls.reported_statuses:
            cls.test_statuses_follow_the_order_they_happen = None  # type: ignore[assignment]
            cls.test_statuses_never_go_backwards = None  # type: ignore[assignment]
        if not cls.proof_covers_body:
            cls.test_a_body_changed_after_proving_is_refused = None  # type: ignore[assignment]
        if not cls.sends_media:
            cls.test_a_file_send_reaches_the_api_and_stores_the_provider_id = None  # type: ignore[assignment]
        if cls.rate_limit is ProviderConformance.rate_limit:
            cls.test_a_rate_limit_is_retried_after_the_wait_it_asks = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ the app

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def conformance(self, tmp_path: Path, hookline_database_url: str, fake: FakeApi) -> AsyncIterator[ConformanceApp]:
        """The app with the provider, two of its numbers and an Inbox workflow, started."""
        if self.plugin is None or not self.provider:
            pytest.fail(f"{type(self).__name__} must set `plugin` (the plugin module) and `provider` (its name)")
        if not isinstance(fake, FakeApi) or not fake.url:
            pytest.fail("the `fake` fixture must yield a running core.testing.FakeApi (inside `with fake.running():`)")
        inbox = Inbox()
        numbers = [
            {"id": f"number-{letter}", "provider": self.provider, "phone": phone, "settings": self.number_settings(fake, index)}
            for index, (letter, phone) in enumerate(zip("ab", self.phones))
        ]
        runtime = make_runtime(
            tmp_path, {self.provider: self.plugin, "conformance_inbox": inbox}, database_url=hookline_database_url,
            numbers=numbers, public_url=self.public_url,
            plugin_settings={self.provider: dict(self.plugin_settings)} if self.plugin_settings else None,
        )
        refusals: list[str] = []
        handler = _Refusals(refusals)
        logging.getLogger("hookline.webhook").addHandler(handler)
        try:
            async with started(runtime) as client:
                yield ConformanceApp(runtime, client, fake, [runtime.host.number(n["id"]) for n in numbers], inbox, refusals)
        finally:
            logging.getLogger("hookline.webhook").removeHandler(handler)

    # ------------------------------------------------------------------ proof of origin

    async def test_a_proven_webhook_is_accepted_for_its_number(self, conformance: ConformanceApp) -> None:
        for index, number in enumerate(conformance.numbers, start=1):
            response = await self._post_proven(conformance, self.inbound_webhook(number, index, f"hello number {index}"), number)
            assert response.is_success, (
                f"a correctly proven inbound webhook for number {number.id!r} was answered {response.status_code}: "
                f"{_REFUSALS.get(response.status_code, 'unexpected answer')}{conformance.reason()}"
            )
            rows = await Message.filter(direction="in").order_by("id").prefetch_related("conversation")
            assert len(rows) == index, f"a proven inbound webhook for number {number.id!r} stored {len(rows) - index + 1} messages, expected 1"
            assert rows[-1].conversation.number_id == number.id, (
                f"a webhook for number {number.id!r} was stored for number {rows[-1].conversation.number_id!r}: "
                "provider_parse must set InboundMessage.number_id to the number the request is for"
            )
        await eventually(lambda: len(conformance.inbox.inbound) == 2, what="on_inbound_message for both messages")

    async def test_a_tampered_proof_is_refused_and_nothing_stored(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        unproven = self.inbound_webhook(number, 11, "tampered")
        proven = self._prove(unproven, number)
        try:
            forged = self.tamper(unproven, proven, number)
        except ValueError as exc:
            pytest.fail(f"prove() added no proof to check: {exc}; it must sign the request or put its secret in it")
        headers, path = proof_of(unproven, forged)
        what = ", ".join([*(f"header {name}" for name in headers), *(["path"] if path else [])]) or "the proof"
        await self._expect_refused(conformance, forged, f"a webhook with a tampered proof ({what} changed)",
                                   "provider_verify must reject it: compare the proof with hmac.compare_digest "
                                   "against what the number's own secret gives")

    async def test_a_body_changed_after_proving_is_refused(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        proven = self._prove(self.inbound_webhook(number, 12, "what the provider sent"), number)
        changed = with_proof_of(proven, self.inbound_webhook(number, 12, "what a forger wrote instead"))
        await self._expect_refused(conformance, changed, "a webhook whose body was changed after it was proven",
                                   "provider_verify must check the proof over the raw body as received (request.body)")

    async def test_a_missing_proof_is_refused_and_nothing_stored(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        await self._expect_refused(conformance, self.inbound_webhook(number, 13, "unproven"), "a webhook without any proof",
                                   "provider_verify must return False when the proof is absent")

    # ------------------------------------------------------------------ duplicates and samples

    async def test_a_duplicate_delivery_stores_one_message_and_notifies_once(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        delivery = self._prove(self.inbound_webhook(number, 21, "delivered again and again"), number)
        responses = [await post(conformance.client, delivery) for _ in range(3)]
        responses += await asyncio.gather(*(post(conformance.client, delivery) for _ in range(3)))
        refused = sorted({r.status_code for r in responses if not r.is_success})
        assert not refused, (
            f"a repeated delivery of the same webhook was answered {refused}{conformance.reason()}; providers "
            "deliver again whatever was not acknowledged, so a duplicate must be answered like the first"
        )
        stored = await Message.filter(direction="in").count()
        assert stored == 1, (
            f"6 deliveries of one webhook stored {stored} messages: provider_parse must give the provider's own "
            "message id as InboundMessage.external_id, the same on every delivery"
        )
        await eventually(lambda: len(conformance.inbox.inbound) >= 1, what="on_inbound_message for the message")
        other = await self._post_proven(conformance, self.inbound_webhook(number, 22, "another message"), number)
        assert other.is_success, f"a second, different message was answered {other.status_code}{conformance.reason()}"
        assert await Message.filter(direction="in").count() == 2, (
            "two different messages (inbound_webhook indexes 21 and 22) were stored as one: their provider ids "
            "(InboundMessage.external_id) must differ"
        )
        await eventually(lambda: len(conformance.inbox.inbound) >= 2, what="on_inbound_message for the second message")
        await asyncio.sleep(0.2)  # time for a wrongly queued second notification to run
        assert len(conformance.inbox.inbound) == 2, (
            f"on_inbound_message ran {len(conformance.inbox.inbound)} times for 2 messages, one of them delivered 6 times"
        )

    async def test_every_sample_parses_into_its_messages_and_statuses(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        samples = list(self.samples(number))
        assert any(sample.messages for sample in samples), "samples() must include at least one webhook with a message"
        for sample in samples:
            before_messages = await Message.filter(direction="in").count()
            before_statuses = await StatusEvent.all().count()
            response = await self._post_proven(conformance, sample.delivery, number)
            assert response.is_success, (
                f"sample {sample.name!r} was answered {response.status_code}: "
                f"{_REFUSALS.get(response.status_code, 'unexpected answer')}{conformance.reason()}"
            )
            new = await Message.filter(direction="in").order_by("id").offset(before_messages).prefetch_related("conversation")
            assert len(new) == sample.messages, (
                f"sample {sample.name!r} stored {len(new)} message(s), expected {sample.messages}: provider_parse must "
                "return every message the webhook carries (and only those)"
            )
            elsewhere = sorted({row.conversation.number_id for row in new} - {number.id})
            assert not elsewhere, f"sample {sample.name!r} for number {number.id!r} was stored for {elsewhere}"
            kept = await StatusEvent.all().count() - before_statuses
            assert kept == sample.statuses, (
                f"sample {sample.name!r} gave {kept} status(es), expected {sample.statuses}: provider_parse must "
                "return every status the webhook carries as a StatusUpdate"
            )

    # ------------------------------------------------------------------ statuses

    async def test_statuses_follow_the_order_they_happen(self, conformance: ConformanceApp) -> None:
        order = self._status_order()
        message = await self._sent(conformance, "statuses in order")
        observed, expected, raws = await self._post_statuses(conformance, message, order)
        if observed != expected:
            step = next(i for i, (seen, wanted) in enumerate(zip(observed, expected)) if seen != wanted)
            raw = raws[step]
            pytest.fail(
                f"status webhooks sent in the order they happen ({' → '.join(order)}) should take the message "
                f"through {' → '.join(expected)}, but it went {' → '.join(observed)}: after the {order[step]!r} "
                f"webhook the message is {observed[step]!r}. hookline only moves a status forward, so a raw status "
                f"mapped to the wrong meaning looks like a status going backwards and is dropped: check what "
                f"provider_status_map (and provider_parse) make of {raw!r}."
            )
        await eventually(lambda: conformance.inbox.statuses[-1:] == [expected[-1]], what=f"on_status_update for {expected[-1]!r}")

    async def test_statuses_never_go_backwards(self, conformance: ConformanceApp) -> None:
        order = list(reversed(self._status_order()))
        message = await self._sent(conformance, "statuses out of order")
        observed, expected, _ = await self._post_statuses(conformance, message, [*order, *order])
        assert observed == expected, (
            f"status webhooks arriving out of order ({' → '.join(order)}, then the same again) must leave the "
            f"message at the furthest status, {expected[-1]!r}, at every step; it went {' → '.join(observed)}"
        )
        furthest = expected[-1]
        await eventually(lambda: furthest in conformance.inbox.statuses, what=f"on_status_update for {furthest!r}")
        await asyncio.sleep(0.2)
        ranks = [STATUS_RANK[DeliveryStatus(status)] for status in conformance.inbox.statuses]
        assert ranks == sorted(set(ranks)), (
            f"on_status_update was told {conformance.inbox.statuses}: each status at most once, always forward"
        )

    # ------------------------------------------------------------------ sending

    async def test_a_text_send_reaches_the_api_and_stores_the_provider_id(self, conformance: ConformanceApp) -> None:
        token = _token("text")
        message = await self._send_text(conformance, f"Hola {token}, ¿cómo está?")
        self._expect_sent(conformance, message, token, "text")

    async def test_a_file_send_reaches_the_api_and_stores_the_provider_id(self, conformance: ConformanceApp) -> None:
        token = _token("file")
        host = conformance.host
        key = host.media.save(b"%PDF-1.4\n% hookline conformance\n%%EOF\n", "application/pdf", "acuerdo.pdf")
        conversation = await host.conversation_with(conformance.numbers[0].id, self.customer)
        queued = await host.send_media(conversation, Media(content_type="application/pdf", key=key, filename="acuerdo.pdf"),
                                       caption=f"Su acuerdo {token}")
        message = await self._settled(queued.id)
        self._expect_sent(conformance, message, token, "file (with a caption)")

    async def test_a_permanent_error_fails_the_message_with_its_code_and_no_retry(self, conformance: ConformanceApp) -> None:
        answer = self.permanent_error()
        token = _token("permanent")
        conformance.fake.answer_next(answer.response, when=lambda request: request.carries(token))
        message = await self._send_text(conformance, f"Hola {token}", timeout=5, pending_ok=True)
        attempts = len(conformance.fake.carrying(token))
        described = _describe(answer)
        if message.status is not DeliveryStatus.FAILED:
            outcome = (f"went out on attempt {attempts} and is {message.status.value!r}" if attempts > 1
                       else f"is still {message.status.value!r} 5 s later, waiting to be tried again")
            pytest.fail(
                f"a permanent error ({described}) was retried: the message {outcome}; provider_send_text must raise "
                "ProviderError(retryable=False) for errors that will not get better"
            )
        if answer.code is not None:
            assert message.error_code == answer.code, (
                f"a permanent error ({described}) failed the message with code {message.error_code!r}, expected the "
                f"provider's own code {answer.code!r}: set ProviderError(code=...) from the API's answer"
            )
        assert message.error_text, "a failed message has no error text: ProviderError's message is what agents see"
        await asyncio.sleep(0.2)
        assert len(conformance.fake.carrying(token)) == 1, f"a permanent error was sent {len(conformance.fake.carrying(token))} times"

    async def test_a_transient_error_is_retried(self, conformance: ConformanceApp) -> None:
        answer = self.transient_error()
        token = _token("transient")
        conformance.fake.answer_next(answer.response, when=lambda request: request.carries(token))
        message = await self._send_text(conformance, f"Hola {token}", pending_ok=True)
        attempts = len(conformance.fake.carrying(token))
        assert message.status is not DeliveryStatus.PENDING, (
            f"a send refused once with a transient error ({_describe(answer)}) is still pending after "
            f"{attempts} attempt(s) and 15 s: a transient error should be retried within the queue's backoff"
        )
        assert message.status in _SUCCESS, (
            f"a transient error ({_describe(answer)}) failed the message at once ({message.error_code}: "
            f"{message.error_text}) after {attempts} attempt(s); raise ProviderError(retryable=True) for 5xx, "
            "timeouts and rate limits so the queue tries again"
        )
        assert attempts == 2, f"a send refused once with a transient error took {attempts} attempts, expected 2"

    async def test_a_rate_limit_is_retried_after_the_wait_it_asks(self, conformance: ConformanceApp) -> None:
        answer = self.rate_limit()
        assert answer is not None
        token = _token("ratelimit")
        conformance.fake.answer_next(answer.response, when=lambda request: request.carries(token))
        message = await self._send_text(conformance, f"Hola {token}", timeout=15 + (answer.retry_after or 0))
        attempts = conformance.fake.carrying(token)
        assert message.status in _SUCCESS and len(attempts) == 2, (
            f"a rate-limited send ({_describe(answer)}) ended {message.status.value!r} after {len(attempts)} attempt(s); "
            "a rate limit must raise ProviderError(retryable=True) so it is tried again"
        )
        if answer.retry_after:
            waited = attempts[1].at - attempts[0].at
            assert waited >= answer.retry_after * 0.9, (
                f"the retry came {waited:.2f} s after a rate-limit answer that asked for {answer.retry_after:g} s: "
                "pass the wait the API asks for as ProviderError(retry_after=...)"
            )

    # ------------------------------------------------------------------ hostile bodies

    async def test_random_and_mutated_bodies_never_get_a_5xx_nor_store_a_row(self, conformance: ConformanceApp) -> None:
        rng = random.Random(self.fuzz_seed)
        number = conformance.numbers[0]
        samples = list(self.samples(number))
        hostile = [(base, what, body, False) for base in self._fuzz_bases(number, samples) for what, body in garbage(rng)]
        hostile += [
            (sample.delivery, f"{what} ({sample.name})", body, True)
            for sample in samples
            for what, body in mutants(rng, sample.delivery.body, sample.delivery.header("content-type"), self.fuzz_rounds)
        ]
        problems: list[str] = []
        rows = await self._rows()
        for base, what, body, may_store in hostile:
            problem, rows = await self._post_hostile(conformance, base, number, what, body, rows, may_store=may_store)
            if problem:
                problems.append(problem)
        assert not problems, (
            f"{len(problems)} hostile bodies were mishandled (fuzz_seed={self.fuzz_seed}); a webhook route must "
            "answer anything with a 2xx or a 4xx, and store only real messages and statuses:\n  "
            + "\n  ".join(problems[:12])
        )

    async def test_an_oversized_body_is_refused_with_413(self, conformance: ConformanceApp) -> None:
        number = conformance.numbers[0]
        provider = conformance.runtime.dispatch.provider(self.provider)
        limit = max([conformance.runtime.settings.server.max_body_bytes, *(r.max_body_bytes or 0 for r in provider.routes)])
        for base in self._fuzz_bases(number, list(self.samples(number))):
            delivery = self._prove_quietly(base.replace(body=b"x" * (limit + 1)), number)
            before = await self._rows()
            response = await post(conformance.client, delivery)
            assert response.status_code == 413, (
                f"a body of {limit + 1} bytes (over the {limit}-byte limit) to {base.path} was answered "
                f"{response.status_code}, not 413{conformance.reason()}"
            )
            assert await self._rows() == before, f"an oversized body to {base.path} stored rows"

    # ------------------------------------------------------------------ secrets

    async def test_secrets_never_reach_a_log_line(self, conformance: ConformanceApp, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        number = conformance.numbers[0]
        unproven = self.inbound_webhook(number, 31, "secrets")
        proven = self._prove(unproven, number)
        await post(conformance.client, proven)
        await post(conformance.client, self.tamper(unproven, proven, number))
        await post(conformance.client, unproven)
        await self._send_text(conformance, f"Hola {_token('secret')}")
        token = _token("secret-failure")
        conformance.fake.answer_next(self.permanent_error().response, when=lambda request: request.carries(token))
        await self._send_text(conformance, f"Hola {token}")
        await eventually(lambda: len(conformance.inbox.inbound) >= 1, what="on_inbound_message")
        secrets = _secrets(conformance, self.provider)
        leaks = [
            f"{record.levelname} {record.name}: {_mask(record.getMessage(), secrets)}"
            for record in caplog.records
            if not (record.name.startswith(_QUIET_LOGGERS) and record.levelno < logging.WARNING)
            and any(secret in _full_text(record) for secret in secrets)
        ]
        assert not leaks, (
            "a secret setting (a SecretStr of the number's settings) appeared in the log; log ids and reasons, "
            "never tokens or signatures:\n  " + "\n  ".join(leaks[:5])
        )

    # ------------------------------------------------------------------ helpers

    def _prove(self, delivery: Delivery, number: Number) -> Delivery:
        try:
            return self.prove(delivery, number)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(f"prove() raised {type(exc).__name__}: {exc} while proving a delivery to {delivery.path}")

    def _prove_quietly(self, delivery: Delivery, number: Number) -> Delivery:
        """Proven when prove() can prove such a body (garbage may not even decode), else as it is."""
        try:
            return self.prove(delivery, number)
        except Exception:
            return delivery

    async def _post_proven(self, conformance: ConformanceApp, delivery: Delivery, number: Number) -> httpx.Response:
        return await post(conformance.client, self._prove(delivery, number))

    async def _expect_refused(self, conformance: ConformanceApp, delivery: Delivery, what: str, fix: str) -> None:
        before = await self._rows()
        response = await post(conformance.client, delivery)
        if response.is_success:
            pytest.fail(f"{what} was accepted ({response.status_code}); {fix}")
        assert response.status_code == 403, (
            f"{what} was answered {response.status_code}, not 403: "
            f"{_REFUSALS.get(response.status_code, 'unexpected answer')}{conformance.reason()}. A request whose "
            "number is known but whose proof fails must be refused by provider_verify (403)"
        )
        after = await self._rows()
        assert after == before, f"{what} was refused, but rows were stored (messages, statuses before/after: {before}/{after})"
        await asyncio.sleep(0.1)
        assert not conformance.inbox.inbound, f"{what} reached on_inbound_message"

    @staticmethod
    async def _rows() -> tuple[int, int]:
        return await Message.filter(direction="in").count(), await StatusEvent.all().count()

    async def _settled(self, message_id: int, timeout: float = 15.0, *, pending_ok: bool = False) -> Any:
        """The message once it left `pending` (sent or failed); with `pending_ok`, also as it is
        when `timeout` runs out (a send still being retried)."""
        async def done() -> bool:
            return (await Message.get(id=message_id)).status is not DeliveryStatus.PENDING

        try:
            await eventually(done, timeout=timeout, what=f"the send of message {message_id} (it is still pending)")
        except AssertionError:
            if not pending_ok:
                raise
        return await Message.get(id=message_id)

    async def _send_text(self, conformance: ConformanceApp, text: str, timeout: float = 15.0, *, pending_ok: bool = False) -> Any:
        host = conformance.host
        conversation = await host.conversation_with(conformance.numbers[0].id, self.customer)
        queued = await host.send_text(conversation, text)
        return await self._settled(queued.id, timeout, pending_ok=pending_ok)

    def _expect_sent(self, conformance: ConformanceApp, message: Any, token: str, what: str) -> None:
        requests = conformance.fake.carrying(token)
        assert requests, (
            f"the {what} send never reached the fake API: no request to {conformance.fake.url} carried it "
            f"(message {message.status.value}: {message.error_code} {message.error_text}); number_settings() must "
            "point the number at fake.url and the send hook must send the message's text"
        )
        assert message.status in _SUCCESS, f"the {what} send failed: {message.error_code}: {message.error_text}"
        assert message.external_id, (
            f"the {what} send stored no provider id: the send hook must return SendResult(external_id=<the id the "
            "API gave the message>); status webhooks find the message by it"
        )
        assert len(requests) == 1, f"one {what} send made {len(requests)} requests carrying it (sent twice?)"

    async def _sent(self, conformance: ConformanceApp, text: str) -> Any:
        message = await self._send_text(conformance, f"{text} {_token('status')}")
        assert message.status in _SUCCESS and message.external_id, (
            f"a send (needed to test statuses) did not go out: {message.status.value} {message.error_code} {message.error_text}"
        )
        return message

    def _status_order(self) -> list[str]:
        unknown = [status for status in self.reported_statuses if status not in {s.value for s in _SUCCESS | {DeliveryStatus.FAILED}}]
        if unknown:
            pytest.fail(f"reported_statuses has {unknown}, which are not hookline delivery statuses")
        return sorted(self.reported_statuses, key=lambda status: STATUS_RANK[DeliveryStatus(status)])

    async def _post_statuses(
        self, conformance: ConformanceApp, message: Any, statuses: Sequence[str]
    ) -> tuple[list[str], list[str], list[str | None]]:
        """Post each status for `message`: the status it had after each, the one it should have
        had, and the raw status provider_parse reported for each."""
        number = conformance.numbers[0]
        furthest = message.status
        observed: list[str] = []
        expected: list[str] = []
        raws: list[str | None] = []
        for status in statuses:
            delivery = self.status_webhook(number, message.external_id, status)
            response = await self._post_proven(conformance, delivery, number)
            assert response.is_success, (
                f"a {status!r} status webhook was answered {response.status_code}: "
                f"{_REFUSALS.get(response.status_code, 'unexpected answer')}{conformance.reason()}"
            )
            if STATUS_RANK[DeliveryStatus(status)] > STATUS_RANK[furthest]:
                furthest = DeliveryStatus(status)
            expected.append(furthest.value)
            observed.append((await Message.get(id=message.id)).status.value)
            event = await StatusEvent.filter(external_id=message.external_id, provider=self.provider).order_by("-id").first()
            raws.append(event.raw_status if event else None)
        return observed, expected, raws

    def _fuzz_bases(self, number: Number, samples: Sequence[Sample]) -> list[Delivery]:
        """One delivery per distinct route and content type the provider is posted to (the
        samples should include one of each kind of webhook)."""
        bases = [self.inbound_webhook(number, 41, "fuzz"), *(sample.delivery for sample in samples)]
        distinct: dict[tuple[str, str, str | None], Delivery] = {}
        for base in bases:
            distinct.setdefault((base.method, base.path, base.header("content-type")), base)
        return list(distinct.values())

    async def _post_hostile(
        self, conformance: ConformanceApp, base: Delivery, number: Number, what: str, body: bytes,
        rows: tuple[int, int], *, may_store: bool,
    ) -> tuple[str | None, tuple[int, int]]:
        """Post one hostile body; the problem it revealed (or None) and the row counts after it.
        Rows are counted after accepted bodies only: the pipeline stores nothing it refuses."""
        delivery = self._prove_quietly(base.replace(body=body), number)
        conformance.refusals.clear()
        where = f"{what} body {preview(body)} to {base.path}"
        try:
            response = await post(conformance.client, delivery)
        except Exception as exc:  # the app raised through the transport: a 500 in production
            return f"{where} raised {type(exc).__name__}: {exc}", await self._rows()
        if response.status_code >= 500:
            return f"{where} was answered {response.status_code}{conformance.reason()}", rows
        if not response.is_success:
            return None, rows
        after = await self._rows()
        if after != rows and not may_store:
            return f"{where} was accepted ({response.status_code}) and stored rows (messages, statuses: {rows} → {after})", after
        return None, after


def _token(kind: str) -> str:
    return f"conformance-{kind}-{uuid.uuid4().hex[:10]}"


def _describe(answer: ErrorAnswer) -> str:
    body = bytes(answer.response.body)[:120].decode("utf-8", "replace")
    return f"HTTP {answer.response.status_code} {body}"


def _secrets(conformance: ConformanceApp, provider: str) -> list[str]:
    """Every SecretStr value of the numbers' and the plugin's settings, long enough to search for."""
    models: list[BaseModel] = [number.settings for number in conformance.numbers]
    plugin = conformance.host.plugin_settings(provider)
    if plugin is not None:
        models.append(plugin)
    found: list[str] = []
    for model in models:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr) and len(value.get_secret_value()) >= 6:
                found.append(value.get_secret_value())
    return found


def _full_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {record.exc_info[1]!r}"
    return text


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, f"<{len(secret)}-character secret>")
    return text[:300]
