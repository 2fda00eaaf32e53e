"""The webhook pipeline: proof, idempotency, limits and clear refusals (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json

import pytest

from core import hookimpl
from core.storage.models import Contact, Conversation, Job, Message
from tests.helpers import SECRET, eventually, inbound_body, post_signed, runtime_for, started, write_config
from tests.recording_provider import signed_headers

pytestmark = pytest.mark.anyio


class InboundRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    @hookimpl
    async def on_inbound_message(self, message, conversation) -> None:
        self.calls.append((message.id, message.external_id))


async def test_signed_webhook_is_stored_and_reaches_workflows(tmp_path, database_url):
    recorder = InboundRecorder()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), recorder)
    async with started(runtime) as client:
        response = await post_signed(client, inbound_body(("m1", "+15550100123", "hola")))
        assert response.status_code == 200
        assert response.json() == {"ok": True, "messages": 1, "statuses": 0}
        message = await Message.get(external_id="m1").prefetch_related("conversation__contact")
        assert message.text == "hola"
        assert message.status.value == "received"
        assert message.conversation.contact.address == "+15550100123"
        assert message.conversation.number_id == "n1"
        await eventually(lambda: recorder.calls == [(message.id, "m1")])


async def test_fifty_concurrent_deliveries_store_one_row_and_call_once(tmp_path, database_url):
    recorder = InboundRecorder()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), recorder)
    async with started(runtime) as client:
        body = inbound_body(("dup-1", "+15550100123", "same"))
        responses = await asyncio.gather(*(post_signed(client, body) for _ in range(50)))
        assert {response.status_code for response in responses} == {200}
        assert await Message.filter(external_id="dup-1").count() == 1
        assert await Contact.all().count() == 1
        assert await Conversation.all().count() == 1
        await eventually(lambda: len(recorder.calls) == 1)
        await eventually(_no_jobs)
        await asyncio.sleep(0.2)
        assert len(recorder.calls) == 1


async def test_a_new_customers_first_messages_at_once_make_one_contact_and_one_conversation(tmp_path, database_url):
    """On PostgreSQL each message is one statement that loses this race to whichever commits the
    contact first; the loser must fall back and store its message, not drop it."""
    recorder = InboundRecorder()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), recorder)
    async with started(runtime) as client:
        bodies = [inbound_body((f"first-{n}", "+15550100999", f"hola {n}")) for n in range(20)]
        responses = await asyncio.gather(*(post_signed(client, body) for body in bodies))
        assert {response.status_code for response in responses} == {200}
        assert await Message.filter(external_id__startswith="first-").count() == 20
        assert await Contact.filter(address="+15550100999").count() == 1
        assert await Conversation.all().count() == 1
        await eventually(lambda: len(recorder.calls) == 20)
        ids = [message_id for message_id, _ in recorder.calls]
        assert ids == sorted(ids)  # stored order, one conversation


async def _no_jobs() -> bool:
    return await Job.all().count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Test-Number": "n1", "X-Test-Signature": "0" * 64},  # wrong signature
        {"X-Test-Number": "n1"},  # no signature
    ],
)
async def test_unproven_request_is_403_and_stores_nothing(tmp_path, database_url, headers):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        response = await client.post("/webhooks/whatsapp/recorder", content=inbound_body(("x1", "+1555", "hi")), headers=headers)
        assert response.status_code == 403
        assert await Message.all().count() == 0
        assert await Job.all().count() == 0


async def test_tampered_body_is_403(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        body = inbound_body(("x1", "+1555", "hi"))
        headers = signed_headers("n1", SECRET, body)
        response = await client.post("/webhooks/whatsapp/recorder", content=body.replace(b"hi", b"ho"), headers=headers)
        assert response.status_code == 403
        assert await Message.all().count() == 0


async def test_oversized_body_is_413_and_stores_nothing(tmp_path, database_url):
    config = write_config(tmp_path, database_url)
    config.write_text(config.read_text().replace("[server]\n", "[server]\nmax_body_bytes = 2048\n"))
    runtime = runtime_for(config)
    async with started(runtime) as client:
        body = inbound_body(("big", "+1555", "x" * 4096))
        response = await post_signed(client, body)
        assert response.status_code == 413
        # Without a Content-Length (chunked), the streamed size is what counts.
        async def chunks():
            yield body[:1000]
            yield body[1000:]

        headers = signed_headers("n1", SECRET, body)
        response = await client.post("/webhooks/whatsapp/recorder", content=chunks(), headers=headers)
        assert response.status_code == 413
        assert await Message.all().count() == 0


async def test_unknown_number_is_404(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        response = await post_signed(client, inbound_body(("u1", "+1555", "hi")), number="nobody")
        assert response.status_code == 404
        assert await Message.all().count() == 0


async def test_malformed_body_is_400_and_stores_nothing(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        for body in (b"{not json", json.dumps({"messages": [{"text": "no id"}]}).encode(), b"[1, 2]"):
            response = await post_signed(client, body)
            assert response.status_code == 400, body
        assert await Message.all().count() == 0
        assert await Job.all().count() == 0


async def test_batch_is_all_or_nothing(tmp_path, database_url):
    """A batch whose second item breaks storage leaves no first item behind."""
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        too_long = "x" * 300  # external ids are at most 255 characters
        response = await post_signed(client, inbound_body(("ok-1", "+1555", "a"), (too_long, "+1555", "b")))
        assert response.status_code == 400
        assert await Message.all().count() == 0
        assert await Job.all().count() == 0


async def test_storage_down_is_503_and_then_recovers(tmp_path, database_url):
    from tortoise.connection import connections

    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        client_db = connections.get("default")
        await client_db.close()
        saved = {name: getattr(client_db, name) for name in ("filename", "port") if hasattr(client_db, name)}
        if "filename" in saved:
            client_db.filename = str(tmp_path / "missing-dir" / "db.sqlite3")
        else:
            client_db.port = 1
        try:
            response = await post_signed(client, inbound_body(("d1", "+1555", "hi")))
            assert response.status_code == 503
            assert response.headers["retry-after"]
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
        finally:
            await client_db.close()
            for name, value in saved.items():
                setattr(client_db, name, value)
        assert await Message.all().count() == 0
        response = await post_signed(client, inbound_body(("d1", "+1555", "hi")))
        assert response.status_code == 200
        assert await Message.filter(external_id="d1").count() == 1


async def test_a_route_may_accept_more_than_the_server_limit(tmp_path, database_url):
    """A provider that batches (Meta: 3 MB) declares its own larger limit on its route."""
    import types

    from core import WebhookRoute, hookimpl
    from tests import recording_provider

    variant = types.ModuleType("variant")
    for name in dir(recording_provider):
        if name.startswith("provider_"):
            setattr(variant, name, getattr(recording_provider, name))
    variant.provider_webhook_routes = hookimpl(lambda: [WebhookRoute("", max_body_bytes=8192)])
    config = write_config(tmp_path, database_url, enabled=["variant"], numbers=[
        {"id": "n1", "provider": "variant", "phone": "+1", "settings": {"secret": SECRET, "api_url": "http://127.0.0.1:9"}}])
    config.write_text(config.read_text().replace("[server]\n", "[server]\nmax_body_bytes = 2048\n"))
    async with started(runtime_for(config, variant=variant)) as client:
        path = "/webhooks/whatsapp/variant"
        assert (await post_signed(client, inbound_body(("big", "+1555", "x" * 4096)), path=path)).status_code == 200
        assert (await post_signed(client, inbound_body(("huge", "+1555", "x" * 9000)), path=path)).status_code == 413


async def test_concurrent_batches_sharing_customers_do_not_deadlock(tmp_path, database_url):
    """Batches whose messages name the same customers in different orders (Meta batches mix
    senders) all store: rows are locked in one order, and a deadlock victim would be retried."""
    runtime = runtime_for(write_config(tmp_path, database_url))
    senders = [f"+1555000{i:04d}" for i in range(6)]
    async with started(runtime) as client:
        bodies = []
        for batch in range(24):
            order = senders[batch % 6:] + senders[:batch % 6]
            if batch % 2:
                order.reverse()
            bodies.append(inbound_body(*[(f"b{batch}-{i}", sender, "hi") for i, sender in enumerate(order)]))
        responses = await asyncio.gather(*(post_signed(client, body) for body in bodies))
        assert [r.status_code for r in responses] == [200] * 24
        assert await Message.all().count() == 24 * 6
        assert await Conversation.all().count() == 6


async def test_a_nul_the_customer_typed_is_kept_and_a_value_the_database_refuses_is_400(tmp_path, database_url):
    """PostgreSQL keeps no NUL character in text or JSON. In what a customer wrote it becomes
    U+FFFD, so the message is kept (a 400 would lose it: providers do not resend those); in a
    provider's id it cannot be mended, fails the same way on every retry, and is refused as
    unstorable (400), not answered 503 "storage unavailable" for the provider to retry forever.
    SQLite keeps the id. Found by tests/test_reliability_fuzz.py."""
    runtime = runtime_for(write_config(tmp_path, database_url))
    postgres = database_url.startswith("postgres")
    async with started(runtime) as client:
        message = await post_signed(client, inbound_body(("nul-1", "+1555", "a\x00b")))
        status = await post_signed(client, inbound_body(statuses=[{"id": "x", "status": "sent", "error_text": "a\x00b"}]),
                                   path="/webhooks/whatsapp/recorder/status")
        assert (message.status_code, status.status_code) == (200, 200)
        assert (await Message.get(external_id="nul-1")).text == "a\ufffdb"
        bad_id = await post_signed(client, inbound_body(("nul\x00id", "+1555", "hola")))
        assert bad_id.status_code == (400 if postgres else 200)
        assert await Message.all().count() == (1 if postgres else 2)
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("item", [
    {"id": [], "from": "+1555"},  # was 503 "storage unavailable": a list bound as a parameter
    {"id": None, "from": "+1555"},  # was 200, with a message row without an id (never deduplicated)
    {"id": True, "from": "+1555"},  # was 503: len() of a bool
    {"id": "m-1", "from": "+1555", "text": {"nested": "object"}},
    {"id": "m-2", "from": ""},
])
async def test_a_parse_of_the_wrong_types_is_400_and_stores_nothing(tmp_path, database_url, item):
    """A provider's parse that hands the core a JSON list, null or object where core/types.py
    promises a string (the recorder passes the body's values through, as a careless plugin
    might) is malformed: 400, nothing stored, not a 503 the provider retries forever. Found by
    tests/test_reliability_fuzz.py."""
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        response = await post_signed(client, json.dumps({"messages": [item]}).encode())
        assert response.status_code == 400, response.text
        assert await Message.all().count() == 0
        assert await Job.all().count() == 0


async def test_a_content_length_of_other_digits_is_not_a_500(tmp_path, database_url):
    """"²".isdigit() is true and int("²") fails: a Content-Length of it was a 500 in the webhook
    pipeline and the API (uvicorn's HTTP parsers refuse it first; other ASGI servers may not).
    Found by tests/test_reliability_fuzz.py."""
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        body = inbound_body(("cl-1", "+1555", "hi"))
        response = await client.post("/webhooks/whatsapp/recorder", content=body,
                                     headers={**signed_headers("n1", SECRET, body), "Content-Length": "\u00b2".encode("latin-1")})
        assert response.status_code == 200
        api = await client.post("/api/auth/login", content=b"{}",
                                headers={"Content-Length": "\u00b2".encode("latin-1"), "Content-Type": "application/json"})
        assert api.status_code == 422
