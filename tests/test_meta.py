"""The Meta provider through the whole app, on SQLite and PostgreSQL: the verification handshake,
signed batches (tampered → 403), routing by phone_number_id across numbers and apps, dedupe of
Meta's retries, statuses out of order, sends to a fake Graph API over real HTTP (text, a PDF by
upload, templates, buttons, lists, replies), errors (130429, 131047, 190), inbound media, read
receipts, and the simulator (the API and `hookline simulate meta`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import plugins.meta as meta
from core import Interactive, Media, Template
from core.storage.models import Message, NumberRow, StatusEvent
from plugins.meta.signature import sign
from tests.fake_meta import FakeMeta, StoredMedia, running_fake_meta
from tests.helpers import Inbox, eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

TOKEN = "meta-test-access-token"
SECRET = "meta-test-app-secret"
VERIFY = "meta-test-verify-token"
PNID = "109876543210987"  # the fixtures' phone_number_id
PNID2 = "109876543210999"
PUBLIC = "https://hookline.example.com"
WEBHOOK = "/webhooks/whatsapp/meta"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "meta"
CUSTOMER = "+15550100123"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}


def number(api: str, id: str = "m1", pnid: str = PNID, *, token: str = TOKEN, secret: str = SECRET, verify: str = VERIFY, phone: str = "+15550100001") -> dict:
    return {"id": id, "provider": "meta", "phone": phone, "settings": {
        "phone_number_id": pnid, "access_token": token, "app_secret": secret, "verify_token": verify, "api_base_url": api,
    }}



def meta_runtime(tmp_path: Path, database_url: str, fake: FakeMeta | None, inbox: Inbox | None = None,
                 numbers: list[dict] | None = None, mark_read: bool | None = None):
    api = fake.url if fake else "http://127.0.0.1:9"
    extra = f"[plugins.meta]\nmark_read = {'true' if mark_read else 'false'}\n" if mark_read is not None else ""
    config = write_config(tmp_path, database_url, enabled=["meta", "p0"], numbers=numbers or [number(api)], extra=extra)
    return runtime_for(config, inbox or Inbox(), meta=meta)


def batch(*changes: dict[str, Any]) -> bytes:
    """A webhook body as Meta writes it: compact, with "/" escaped as "\\/"."""
    body = {"object": "whatsapp_business_account", "entry": [{"id": "102345678901234", "changes": [
        {"field": "messages", "value": change} for change in changes]}]}
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode()


def change(pnid: str, messages: list[dict] = (), statuses: list[dict] = ()) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550100001", "phone_number_id": pnid}}
    if messages:
        value["contacts"] = [{"profile": {"name": "Ana Souza"}, "wa_id": m["from"]} for m in messages]
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return value


def text_message(wamid: str, text: str, sender: str = "15550100123") -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": text}}


def status(wamid: str, name: str, timestamp: str = "1767225700") -> dict[str, Any]:
    return {"id": wamid, "status": name, "timestamp": timestamp, "recipient_id": "15550100123"}


async def send_and_wait(runtime, kind: str = "text", number_id: str = "m1", **options) -> Message:
    host = runtime.host
    conversation = await host.conversation_with(number_id, CUSTOMER)
    if kind == "text":
        message = await host.send_text(conversation, options.get("text", "Olá, ¿cómo está? https://example.com/pedido"), reply_to=options.get("reply_to"))
    elif kind == "pdf":
        key = host.media.save(b"%PDF-1.4 acuerdo", "application/pdf", "acuerdo.pdf")
        message = await host.send_media(conversation, Media(content_type="application/pdf", key=key, filename="acuerdo.pdf"), caption="Su acuerdo")
    elif kind == "link":
        message = await host.send_media(conversation, Media(content_type="image/png", url="https://cdn.example.com/box.png"), caption="La caja")
    elif kind == "template":
        message = await host.send_template(conversation, options.get("template") or Template(
            "order_update", language="es_MX", variables={"1": "Ana", "2": "#1234"}))
    elif kind == "buttons":
        message = await host.send_interactive(conversation, Interactive(
            "¿Qué desea hacer?", buttons=[{"id": "track-order", "title": "Rastrear pedido"}, {"id": "agent", "title": "Hablar con agente"}],
            header="Pedido #1234", footer="Responda con un botón"))
    else:
        message = await host.send_interactive(conversation, Interactive(
            "Elija un horario", sections=[{"title": "Mañana", "rows": [{"id": "slot-10", "title": "10:00", "description": "Con Ana"}, {"id": "slot-11", "title": "11:00"}]}],
            action_label="Horarios"))

    async def done() -> bool:
        return (await Message.get(id=message.id)).status.value != "pending"

    await eventually(done)
    return await Message.get(id=message.id)


# --------------------------------------------------------------------------- handshake


async def test_handshake_answers_the_challenge_byte_for_byte(tmp_path, database_url):
    numbers = [number("http://127.0.0.1:9"), number("http://127.0.0.1:9", "m2", PNID2, verify="second-app-token", secret="other")]
    async with started(meta_runtime(tmp_path, database_url, None, numbers=numbers)) as client:
        for token, challenge in ((VERIFY, "1158201444"), ("second-app-token", "Zx9-_.~ü 1")):
            query = urlencode({"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": token})
            response = await client.get(f"{WEBHOOK}?{query}")
            assert response.status_code == 200
            assert response.content == challenge.encode()
            assert response.headers["content-type"].startswith("text/plain")
        assert await Message.all().count() == 0


WRONG_HANDSHAKES = [
    {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "wrong"},
    {"hub.mode": "unsubscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY},
    {"hub.challenge": "1158201444", "hub.verify_token": VERIFY},
    {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
    {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY.upper()},
]


async def test_handshake_with_a_wrong_token_or_mode_is_403(tmp_path, database_url):
    async with started(meta_runtime(tmp_path, database_url, None)) as client:
        for query in WRONG_HANDSHAKES:
            response = await client.get(f"{WEBHOOK}?{urlencode(query)}")
            assert response.status_code == 403, query
            assert "1158201444" not in response.text


# --------------------------------------------------------------------------- inbound


async def test_every_shared_fixture_is_stored_as_the_right_messages_and_statuses(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_meta({PNID: TOKEN}) as fake:
        fake.media["1234567890123456"] = StoredMedia(b"\xff\xd8 jpeg bytes", "image/jpeg")
        async with started(meta_runtime(tmp_path, database_url, fake, inbox)) as client:
            for name in ("inbound_text.json", "inbound_image.json", "inbound_interactive_button.json", "status_read.json", "status_failed.json"):
                body = raw(name)  # the exact file bytes, "\/" escapes and all
                response = await client.post(WEBHOOK, content=body, headers=signed(body))
                assert response.status_code == 200, name
            rows = await Message.all().order_by("id").prefetch_related("conversation__contact")
            assert [(m.kind, m.text, m.direction.value, m.status.value) for m in rows] == [
                ("text", "Hi! Is my order #1234 on its way?", "in", "received"),
                ("image", "Photo of the damaged box", "in", "received"),
                ("button", "Track order", "in", "received"),
            ]
            assert {m.provider for m in rows} == {"meta"} and {m.conversation.number_id for m in rows} == {"m1"}
            assert rows[0].conversation.contact.address == CUSTOMER and rows[0].conversation.contact.wa_id == "15550100123"
            assert rows[2].data["button"]["payload"] == "track-order"
            assert rows[2].reply_to == "wamid.HBgLMTU1NTAxMDAxMjMVAgARGBI4QzZCMDFFRDRBMkY5RTdEM0IA"
            events = await StatusEvent.all().order_by("id")
            assert [(e.raw_status, e.error_code, e.message_id) for e in events] == [("read", None, None), ("failed", "131047", None)]
            assert "template" in events[1].error_text
            await eventually(lambda: len(inbox.inbound) == 3)
            image = next(m for m in inbox.inbound if m.kind == "image").media[0]
            assert (tmp_path / "data" / "media" / image["key"]).read_bytes() == b"\xff\xd8 jpeg bytes"


async def test_batch_for_two_numbers_stores_both_messages_and_the_status(tmp_path, database_url):
    with running_fake_meta({PNID: TOKEN, PNID2: "second-token"}) as fake:
        numbers = [number(fake.url), number(fake.url, "m2", PNID2, token="second-token", phone="+15550100002")]
        runtime = meta_runtime(tmp_path, database_url, fake, numbers=numbers)
        async with started(runtime) as client:
            outbound = await send_and_wait(runtime, number_id="m2")
            assert fake.sends[-1].path == f"/v23.0/{PNID2}/messages" and fake.sends[-1].token == "second-token"
            body = batch(
                change(PNID, [text_message("wamid.first", "para el uno")]),
                change(PNID2, [text_message("wamid.second", "para el dos", "15550100777")], [status(outbound.external_id, "delivered")]),
            )
            response = await client.post(WEBHOOK, content=body, headers=signed(body))
            assert response.status_code == 200
            first = await Message.get(external_id="wamid.first").prefetch_related("conversation__contact")
            second = await Message.get(external_id="wamid.second").prefetch_related("conversation__contact")
            assert (first.conversation.number_id, first.text, first.conversation.contact.address) == ("m1", "para el uno", CUSTOMER)
            assert (second.conversation.number_id, second.text, second.conversation.contact.address) == ("m2", "para el dos", "+15550100777")
            delivered = await Message.get(id=outbound.id)
            assert delivered.status.value == "delivered"
            assert await Message.filter(direction="in").count() == 2


async def test_unproven_posts_are_403_and_store_nothing_and_escaped_slashes_verify(tmp_path, database_url):
    async with started(meta_runtime(tmp_path, database_url, None)) as client:
        for tamper in ("byte", "secret", "missing", "reserialised"):
            body = batch(change(PNID, [text_message("wamid.t", "order #1234 / box")], [status("wamid.x", "read")]))
            headers = signed(body, "another-secret" if tamper == "secret" else SECRET)
            if tamper == "byte":
                body = body.replace(b"#1234", b"#1235")
            elif tamper == "missing":
                del headers["X-Hub-Signature-256"]
            elif tamper == "reserialised":  # the same JSON, Meta's "\/" escapes undone
                body = json.dumps(json.loads(body), separators=(",", ":")).encode()
                assert b"\\/" not in body
            response = await client.post(WEBHOOK, content=body, headers=headers)
            assert response.status_code == 403, tamper
        assert await Message.all().count() == 0 and await StatusEvent.all().count() == 0
        # The control: Meta's own bytes, "\/" escapes and all, verify.
        body = batch(change(PNID, [text_message("wamid.slash", "see https://example.com/a/b")]))
        assert b"https:\\/\\/example.com\\/a\\/b" in body
        assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
        assert (await Message.get(external_id="wamid.slash")).text == "see https://example.com/a/b"


async def test_the_same_wamid_five_times_is_one_row_one_notification_one_read_receipt(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_meta({PNID: TOKEN}) as fake:
        async with started(meta_runtime(tmp_path, database_url, fake, inbox)) as client:
            body = raw("inbound_text.json")
            for _ in range(5):  # Meta retries for up to 7 days, and to every subscribed app
                assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
            assert await Message.all().count() == 1
            await eventually(lambda: len(fake.read_receipts) == 1)
            [receipt] = fake.read_receipts
            assert receipt.token == TOKEN and receipt.path == f"/v23.0/{PNID}/messages"
            assert receipt.json == {"messaging_product": "whatsapp", "status": "read",
                                    "message_id": "wamid.HBgLMTU1NTAxMDAxMjMVAgASGBQzQTdGMkU5QzFCOEQ0QTZFNUYwMwA="}
            await eventually(lambda: len(inbox.inbound) == 1)
            assert len(fake.read_receipts) == 1


async def test_mark_read_can_be_switched_off(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_meta({PNID: TOKEN}) as fake:
        async with started(meta_runtime(tmp_path, database_url, fake, inbox, mark_read=False)) as client:
            body = raw("inbound_text.json")
            assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
            await eventually(lambda: len(inbox.inbound) == 1)
        assert fake.read_receipts == []


async def test_statuses_out_of_order_end_at_the_highest(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_meta({PNID: TOKEN}) as fake:
        runtime = meta_runtime(tmp_path, database_url, fake, inbox)
        async with started(runtime) as client:
            message = await send_and_wait(runtime)
            assert message.status.value == "queued"  # Meta accepted it; `sent` comes by webhook
            for name in ("read", "delivered", "sent", "read"):
                body = batch(change(PNID, statuses=[status(message.external_id, name)]))
                assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
            assert (await Message.get(id=message.id)).status.value == "read"
            assert await StatusEvent.filter(message_id=message.id, raw_status__in=["read", "delivered", "sent"]).count() == 4
            await eventually(lambda: inbox.statuses == ["queued", "read"])


async def test_updates_for_an_unknown_phone_number_id_are_acknowledged_not_stored(tmp_path, database_url):
    async with started(meta_runtime(tmp_path, database_url, None)) as client:
        before = meta.unrouted_updates().get("555000111222333", 0)
        body = batch(change("555000111222333", [text_message("wamid.stray", "hola")], [status("wamid.other", "sent")]))
        response = await client.post(WEBHOOK, content=body, headers=signed(body))
        assert response.status_code == 200  # so Meta stops retrying
        assert await Message.all().count() == 0 and await StatusEvent.all().count() == 0
        assert meta.unrouted_updates()["555000111222333"] == before + 2


async def test_two_apps_each_write_only_into_their_own_numbers(tmp_path, database_url):
    numbers = [number("http://127.0.0.1:9"), number("http://127.0.0.1:9", "m2", PNID2, secret="second-app-secret")]
    async with started(meta_runtime(tmp_path, database_url, None, numbers=numbers)) as client:
        mine = batch(change(PNID2, [text_message("wamid.app2", "hola")]))
        assert (await client.post(WEBHOOK, content=mine, headers=signed(mine, "second-app-secret"))).status_code == 200
        assert (await Message.get(external_id="wamid.app2").prefetch_related("conversation")).conversation.number_id == "m2"
        before = meta.unrouted_updates().get(PNID2, 0)
        foreign = batch(change(PNID2, [text_message("wamid.injected", "forged for app 2")]))
        response = await client.post(WEBHOOK, content=foreign, headers=signed(foreign, SECRET))  # app 1's secret
        assert response.status_code == 200
        assert not await Message.filter(external_id="wamid.injected").exists()
        assert meta.unrouted_updates()[PNID2] == before + 1


async def test_other_fields_are_acknowledged_and_proven_garbage_is_400(tmp_path, database_url, caplog):
    async with started(meta_runtime(tmp_path, database_url, None)) as client:
        body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_name": "order_update"}},
            {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
        ]}]}).encode()
        with caplog.at_level("INFO", logger="hookline.meta"):
            assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
        assert "message_template_status_update" in caplog.text and "account_update" in caplog.text
        assert await Message.all().count() == 0
        for garbage in (b"not json", b"[1, 2]"):  # proven, but not a webhook: 400
            assert (await client.post(WEBHOOK, content=garbage, headers=signed(garbage))).status_code == 400


# --------------------------------------------------------------------------- sending


async def test_sends_reach_the_graph_api_with_the_bearer_token_and_metas_json(tmp_path, database_url):
    with running_fake_meta({PNID: TOKEN}) as fake:
        runtime = meta_runtime(tmp_path, database_url, fake)
        async with started(runtime) as client:
            body = raw("inbound_text.json")
            assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
            inbound = await Message.get(direction="in")
            sent = [
                await send_and_wait(runtime, "text", reply_to=inbound),
                await send_and_wait(runtime, "pdf"),
                await send_and_wait(runtime, "template"),
                await send_and_wait(runtime, "buttons"),
                await send_and_wait(runtime, "list"),
                await send_and_wait(runtime, "link"),
                await send_and_wait(runtime, "pdf"),  # the same file again: its media id is reused
            ]
        assert all(r.token == TOKEN for r in fake.requests if r.path.startswith("/v23.0/"))
        assert all(r.path == f"/v23.0/{PNID}/messages" for r in fake.sends)
        text, pdf, template, buttons, choices, link, pdf_again = [r.json for r in fake.sends]
        common = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550100123"}
        assert text == {**common, "type": "text", "text": {"body": "Olá, ¿cómo está? https://example.com/pedido", "preview_url": True},
                        "context": {"message_id": inbound.external_id}, "biz_opaque_callback_data": f"hookline:{sent[0].id}"}
        [upload] = fake.uploads
        assert upload.path == f"/v23.0/{PNID}/media" and upload.token == TOKEN
        assert upload.form == {"messaging_product": "whatsapp", "type": "application/pdf"}
        assert upload.file == ("acuerdo.pdf", b"%PDF-1.4 acuerdo", "application/pdf")
        media_id = next(iter(fake.media))
        assert pdf["type"] == "document" and pdf["document"] == {"id": media_id, "caption": "Su acuerdo", "filename": "acuerdo.pdf"}
        assert pdf_again["document"]["id"] == media_id
        assert template["type"] == "template" and template["template"] == {
            "name": "order_update", "language": {"code": "es_MX"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#1234"}]}],
        }
        assert buttons["type"] == "interactive" and buttons["interactive"] == {
            "type": "button", "body": {"text": "¿Qué desea hacer?"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "track-order", "title": "Rastrear pedido"}},
                                   {"type": "reply", "reply": {"id": "agent", "title": "Hablar con agente"}}]},
            "header": {"type": "text", "text": "Pedido #1234"}, "footer": {"text": "Responda con un botón"},
        }
        assert choices["interactive"] == {
            "type": "list", "body": {"text": "Elija un horario"},
            "action": {"button": "Horarios", "sections": [{"title": "Mañana", "rows": [
                {"id": "slot-10", "title": "10:00", "description": "Con Ana"}, {"id": "slot-11", "title": "11:00"}]}]},
        }
        assert link["type"] == "image" and link["image"] == {"link": "https://cdn.example.com/box.png", "caption": "La caja"}
        for message in sent:
            assert message.status.value == "queued" and message.external_id.startswith("wamid.FAKE")


async def test_rate_limited_and_server_errors_are_retried_and_end_sent(tmp_path, database_url):
    with running_fake_meta({PNID: TOKEN}) as fake:
        runtime = meta_runtime(tmp_path, database_url, fake)
        async with started(runtime) as client:
            fake.answer((400, json.loads(raw("error_rate_limit.json"))))
            message = await send_and_wait(runtime)
            assert len(fake.sends) == 2 and fake.sends[0].json == fake.sends[1].json
            assert message.status.value == "queued" and message.error_code is None
            body = batch(change(PNID, statuses=[status(message.external_id, "sent")]))
            assert (await client.post(WEBHOOK, content=body, headers=signed(body))).status_code == 200
            assert (await Message.get(id=message.id)).status.value == "sent"
            fake.answer((500, {"error": {"message": "An unknown error occurred", "code": 1}}),
                        FakeMeta.error(131000, "Something went wrong", status=500))
            again = await send_and_wait(runtime)
            assert again.status.value == "queued" and len(fake.sends) == 5  # 2 + two 5xx + the success


async def test_closed_window_fails_with_template_guidance(tmp_path, database_url):
    with running_fake_meta({PNID: TOKEN}) as fake:
        runtime = meta_runtime(tmp_path, database_url, fake)
        async with started(runtime):
            fake.answer(FakeMeta.error(131047, "Re-engagement message",
                                       "Message failed to send because more than 24 hours have passed since the customer last replied to this number."))
            failed = await send_and_wait(runtime)
            assert failed.status.value == "failed" and failed.error_code == "131047"
            assert "24-hour" in failed.error_text and "template" in failed.error_text
            assert "more than 24 hours have passed" in failed.error_text
            assert len(fake.sends) == 1  # not retried
            other = await send_and_wait(runtime, "template", template=Template("order_update"))
            assert other.status.value == "failed" and "language" in other.error_text  # Meta needs one


async def test_expired_token_fails_and_flags_the_number_until_a_call_succeeds(tmp_path, database_url):
    with running_fake_meta({PNID: "the-new-token"}) as fake:
        runtime = meta_runtime(tmp_path, database_url, fake)  # configured with TOKEN, which Meta refuses
        async with started(runtime):
            failed = await send_and_wait(runtime)
            assert failed.status.value == "failed" and failed.error_code == "190"
            assert "access_token" in failed.error_text
            row = await NumberRow.get(id="m1")
            assert row.state == "needs_token" and "access_token" in row.state_detail
            fake.tokens[PNID] = TOKEN  # the operator rotated the token
            sent = await send_and_wait(runtime)
            assert sent.status.value == "queued"
            assert (await NumberRow.get(id="m1")).state == "connected"


# --------------------------------------------------------------------------- simulator


async def test_simulated_webhook_is_accepted_by_the_server(tmp_path, database_url):
    with running_fake_meta({PNID: TOKEN}) as fake:
        inbox = Inbox()
        runtime = meta_runtime(tmp_path, database_url, fake, inbox)
        async with started(runtime) as client:
            simulated = await runtime.dispatch.provider("meta").simulate_webhook(runtime.host, runtime.host.number("m1"), "15550100123", "hola / adiós", PUBLIC)
            assert simulated.path == WEBHOOK and b"hola \\/ adi\\u00f3s" in simulated.body
            response = await client.post(simulated.path, content=simulated.body, headers=simulated.headers)
            assert response.status_code == 200
            message = await Message.get(text="hola / adiós").prefetch_related("conversation__contact")
            assert message.conversation.contact.address == CUSTOMER and message.conversation.number_id == "m1"
            await eventually(lambda: len(inbox.inbound) == 1)
        assert fake.read_receipts == []  # Meta never sent it: nothing to mark as read


def test_hookline_simulate_meta_posts_a_signed_update_to_a_running_server(tmp_path, database_url):
    from tests.test_process import hookline, messages_json, serving

    config = write_config(tmp_path, database_url, enabled=["meta"], numbers=[number("http://127.0.0.1:9", "support")])
    with serving(config, tmp_path) as server:
        simulated = hookline("simulate", "meta", "--config", config, "--number", "support", "--from", "15550100123", "hola",
                             "--url", server.url, cwd=tmp_path)
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert simulated.stdout.startswith("200 ")
        rows = messages_json(config, tmp_path)
        assert [(r["direction"], r["number"], r["provider"], r["text"]) for r in rows] == [("in", "support", "meta", "hola")]
        assert server.stop() == 0
