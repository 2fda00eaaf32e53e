"""The WPPConnect provider through the whole app, against a fake WPPConnect Server over real HTTP:
session lifecycle (token, start, QR, scan), secret-URL webhooks, inbound media, sends with the
bearer token, acks, a session that goes down and comes back, send errors, and the simulator.

Where the fake must call hookline back (webhooks), hookline runs in uvicorn on a real port and the
fake's `proxy` plays the TLS proxy that serves hookline's public URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
from pathlib import Path

import httpx
import pytest

import plugins.wppconnect as wppconnect
from core import Media
from core.storage.models import Message, NumberRow, StatusEvent
from plugins.wppconnect import commands
from plugins.wppconnect.session import derived_secret
from tests.fake_wppconnect import FakeWppconnect, running_fake_wppconnect, text_message
from tests.helpers import Inbox, eventually, runtime_for, served, started, write_config
from tests.test_process import hookline

pytestmark = pytest.mark.anyio

PUBLIC = "https://hookline.example.com"
WEBHOOKS = "/webhooks/whatsapp/wppconnect"
SECRET_KEY = "THISISMYSECURETOKEN"
WEBHOOK_SECRET = "configured-" + "w" * 32
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wppconnect"
CUSTOMER = "+5511900000001"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def number(server_url: str, id: str = "wpp", session: str = "acme", **settings) -> dict:
    return {"id": id, "provider": "wppconnect", "phone": "+5511900000009",
            "settings": {"server_url": server_url, "session": session, "secret_key": SECRET_KEY, **settings}}



def wpp_config(tmp_path: Path, database_url: str, numbers: list[dict], *, workflow: bool = True,
               queue: dict | None = None, **plugin_settings) -> Path:
    extra = "[plugins.wppconnect]\n" + "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in {"status_interval_seconds": 0, **plugin_settings}.items()
    )
    enabled = ["wppconnect", "p0"] if workflow else ["wppconnect"]
    return write_config(tmp_path, database_url, enabled=enabled, numbers=numbers, queue=queue, extra=extra)


def wpp_runtime(config: Path, inbox: Inbox | None = None):
    return runtime_for(config, *([inbox] if inbox else []), wppconnect=wppconnect)


def serving(runtime, fake: FakeWppconnect | None = None):
    """hookline on a real port; the fake reaches it through `proxy` as hookline's public URL."""
    return served(runtime, proxy=fake.proxy if fake is not None else None)


async def state_of(number_id: str = "wpp") -> str | None:
    return (await NumberRow.get(id=number_id)).state


def in_state(state: str, number_id: str = "wpp"):
    async def check() -> bool:
        return await state_of(number_id) == state
    return check


async def settled(message_id: int, *statuses: str) -> Message:
    async def done() -> bool:
        return (await Message.get(id=message_id)).status.value in statuses
    await eventually(done)
    return await Message.get(id=message_id)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --------------------------------------------------------------------------- lifecycle


async def test_lifecycle_token_start_qr_scan_connected_visible_to_operators(tmp_path, database_url, capsys):
    with running_fake_wppconnect(secret_key=SECRET_KEY) as fake:
        config = wpp_config(tmp_path, database_url, [number(fake.url)], workflow=False)
        runtime = wpp_runtime(config)
        host = runtime.host
        async with serving(runtime, fake):
            await eventually(in_state("QRCODE"))
            # A token from the secret key, then start-session with it and our secret webhook URL.
            assert [session for session, _ in fake.generated] == ["acme"]
            (start,) = fake.calls_to("start-session")
            assert start.token == fake.generated[0][1] and start.status == 200
            secret = derived_secret(host.secret_key.value, "wpp")
            assert len(secret) >= 40 and secret != derived_secret(host.secret_key.value, "wpp2")
            assert start.body == {"webhook": f"{PUBLIC}{WEBHOOKS}/wpp/{secret}", "waitQrCode": False}
            assert await host.number_secret("wpp", "webhook_secret") is None  # nothing to store: derived
            await eventually(lambda: [status for payload, status in fake.webhooks if payload["event"] == "qrcode"] == [200])

            # The QR code while pairing, as `hookline wppconnect qr --out FILE` writes it.
            out = tmp_path / "pairing.png"
            assert await commands.run(host, argparse.Namespace(action="qr", number="wpp", out=str(out))) == 0
            assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and out.read_bytes() == fake.sessions["acme"].qr

            # The phone scans: the server says so through the webhook.
            assert await fake.scan("acme") == [200, 200]
            await eventually(in_state("CONNECTED"))
            capsys.readouterr()
            assert await commands.run(host, argparse.Namespace(action="qr", number="wpp", out=str(tmp_path / "no.png"))) == 1
            assert "QRCode is not available" in capsys.readouterr().err

            # Operators see it from another process: `hookline wppconnect status`.
            listed = await asyncio.to_thread(hookline, "wppconnect", "status", "--number", "wpp", "--config", config, cwd=tmp_path)
            assert listed.returncode == 0, listed.stderr
            assert listed.stdout.split() == ["wpp", "acme", "CONNECTED"]

            # Log out (unpairs), start again: a new QR code is needed.
            assert await commands.run(host, argparse.Namespace(action="logout", number="wpp", out=None)) == 0
            assert fake.sessions["acme"].paired is False and await state_of() == "CLOSED"
            assert await commands.run(host, argparse.Namespace(action="start", number="wpp", out=None)) == 0
            await eventually(in_state("QRCODE"))
            assert "scan the QR code" in (await NumberRow.get(id="wpp")).state_detail


# --------------------------------------------------------------------------- inbound


async def test_image_is_stored_decoded_and_unproven_webhooks_store_nothing(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    inbox = Inbox()
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        fake.session("other", status="CONNECTED", paired=True)
        numbers = [number(fake.url, webhook_secret=WEBHOOK_SECRET), number(fake.url, id="gen", session="other")]
        runtime = wpp_runtime(wpp_config(tmp_path, database_url, numbers, start_sessions=False), inbox)
        async with started(runtime) as client:
            image = json.loads(fixture_bytes("onmessage_image.json"))
            generated = derived_secret(runtime.host.secret_key.value, "gen")
            refused = [
                f"{WEBHOOKS}/wpp/wrong-secret", f"{WEBHOOKS}/wpp", f"{WEBHOOKS}/wpp/{generated}",
                f"{WEBHOOKS}/gen/{WEBHOOK_SECRET}", f"{WEBHOOKS}/gen/{generated[:-1]}",
            ]
            for path in refused:
                assert (await client.post(path, content=fixture_bytes("onmessage_image.json"))).status_code == 403, path
            assert (await client.post(f"{WEBHOOKS}/nope/{WEBHOOK_SECRET}", content=b"{}")).status_code == 404
            assert await Message.all().count() == 0

            response = await client.post(f"{WEBHOOKS}/wpp/{WEBHOOK_SECRET}", content=fixture_bytes("onmessage_image.json"))
            assert response.status_code == 200
            message = await Message.get(external_id=image["id"]).prefetch_related("conversation__contact")
            assert (message.kind, message.text) == ("image", "Foto da caixa amassada")
            assert message.conversation.contact.address == CUSTOMER and message.conversation.number_id == "wpp"
            (item,) = message.media
            decoded = base64.b64decode(image["body"])
            stored = (tmp_path / "data" / "media" / item["key"]).read_bytes()
            assert item["content_type"] == "image/jpeg" and item["key"].endswith(".jpg")
            assert stored == decoded and len(stored) == len(decoded)
            assert image["body"] not in json.dumps(message.payload)

            # The same message twice (a resend, or two deliveries): one row; the generated secret works.
            text = fixture_bytes("onmessage_text.json")
            for _ in range(2):
                assert (await client.post(f"{WEBHOOKS}/wpp/{WEBHOOK_SECRET}", content=text)).status_code == 200
            assert await Message.filter(external_id=json.loads(text)["id"]).count() == 1
            other = text_message("para a outra loja").copy() | {"session": "other"}
            assert (await client.post(f"{WEBHOOKS}/gen/{generated}", content=json.dumps(other))).status_code == 200

            # A file that did not come in the body is fetched through the server's download-media.
            fake.media["false_5511900000001@c.us_3AD0C"] = (b"%PDF-1.4 invoice", "application/pdf")
            document = text_message("", message_id="false_5511900000001@c.us_3AD0C") | {
                "type": "document", "mimetype": "application/pdf", "filename": "nota.pdf", "body": ""}
            assert (await client.post(f"{WEBHOOKS}/wpp/{WEBHOOK_SECRET}", content=json.dumps(document))).status_code == 200
            await eventually(lambda: len(inbox.inbound) == 4)
            fetched = next(m for m in inbox.inbound if m.kind == "document").media[0]
            assert (tmp_path / "data" / "media" / fetched["key"]).read_bytes() == b"%PDF-1.4 invoice"
            assert inbox.inbound[0].media[0]["key"] == item["key"]  # workflows see the stored image
            assert await Message.all().count() == 4
    # The secrets are in the webhook paths: none of them may reach a log line. (httpx's own request
    # lines come from this test's client; hookline's logging keeps httpx at WARNING.)
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "refused 403" in logged and WEBHOOK_SECRET not in logged and generated not in logged


# --------------------------------------------------------------------------- sending


async def _sent(runtime, coroutine) -> Message:
    message = await coroutine
    return await settled(message.id, "sent", "failed")


async def test_text_and_pdf_reach_the_fake_with_the_bearer_token_and_a_data_uri(tmp_path, database_url):
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        runtime = wpp_runtime(wpp_config(tmp_path, database_url, [number(fake.url, webhook_secret=WEBHOOK_SECRET)],
                                         start_sessions=False), Inbox())
        host = runtime.host
        async with started(runtime) as client:
            assert (await client.post(f"{WEBHOOKS}/wpp/{WEBHOOK_SECRET}", content=fixture_bytes("onmessage_text.json"))).status_code == 200
            inbound = await Message.get(external_id=json.loads(fixture_bytes("onmessage_text.json"))["id"]).prefetch_related("conversation")
            conversation = inbound.conversation
            text = await _sent(runtime, host.send_text(conversation, "Olá! Seu pedido saiu para entrega."))
            key = host.media.save(PDF, "application/pdf", "acordo.pdf")
            pdf = await _sent(runtime, host.send_media(conversation, Media(content_type="application/pdf", key=key, filename="acordo.pdf"),
                                                       caption="Seu acordo"))
            reply = await _sent(runtime, host.send_text(conversation, "Recebido!", reply_to=inbound))
            lid = await host.conversation_with("wpp", "123456789012345@lid")
            to_lid = await _sent(runtime, host.send_text(lid, "oi"))

        ((session, token),) = fake.generated
        assert session == "acme" and fake.valid(token, "acme")
        assert [sent.token for sent in fake.sent] == [token] * 4
        assert all(call.token == token for call in fake.calls)  # status-session at start too
        assert [call.status for call in fake.calls if call.route.startswith("send-")] == [201] * 4
        first, second, third, fourth = fake.sent
        assert first.route == "send-message" and first.to == "5511900000001@c.us"
        assert first.body == {"phone": "5511900000001", "isGroup": False, "isNewsletter": False, "isLid": False,
                              "message": "Olá! Seu pedido saiu para entrega."}
        assert second.route == "send-file-base64"
        assert second.body["base64"].startswith("data:application/pdf;base64,") and second.mimetype == "application/pdf"
        assert second.data == PDF and base64.b64decode(second.body["base64"].partition(",")[2]) == PDF
        assert (second.body["filename"], second.body["caption"]) == ("acordo.pdf", "Seu acordo")
        assert third.body["options"] == {"quotedMsg": inbound.external_id}
        assert fourth.to == "123456789012345@lid" and fourth.body["isLid"] is True
        for message, sent in zip((text, pdf, reply, to_lid), fake.sent):
            assert (message.status.value, message.external_id) == ("sent", sent.id)
            assert message.external_id.startswith("true_")


async def test_acks_move_the_message_forward_never_back(tmp_path, database_url):
    inbox = Inbox()
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        runtime = wpp_runtime(wpp_config(tmp_path, database_url, [number(fake.url)]), inbox)
        async with serving(runtime, fake):
            await eventually(lambda: fake.sessions["acme"].webhook is not None)  # start-session gave it our URL
            await eventually(in_state("CONNECTED"))
            conversation = await runtime.host.conversation_with("wpp", CUSTOMER)
            message = await _sent(runtime, runtime.host.send_text(conversation, "Seu pedido 1234 saiu para entrega."))
            assert message.status.value == "sent"
            for ack, expected in ((2, "delivered"), (3, "read"), (2, "read"), (1, "read"), (-1, "read")):
                assert await fake.ack("acme", message.external_id, ack) == 200
                assert (await Message.get(id=message.id)).status.value == expected
            events = await StatusEvent.filter(message_id=message.id).order_by("id").values_list("raw_status", "applied")
            assert events == [("1", True), ("2", True), ("3", True), ("2", False), ("1", False), ("-1", False)]
            await eventually(lambda: inbox.statuses == ["sent", "delivered", "read"])


async def test_session_down_then_up_the_message_is_sent_after_reconnection(tmp_path, database_url):
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        config = wpp_config(tmp_path, database_url, [number(fake.url)], queue={"max_attempts": 1000})
        runtime = wpp_runtime(config, Inbox())
        async with serving(runtime, fake):
            await eventually(in_state("CONNECTED"))
            assert await fake.drop("acme") == 200
            await eventually(in_state("CLOSED"))

            conversation = await runtime.host.conversation_with("wpp", CUSTOMER)
            message = await runtime.host.send_text(conversation, "Chegou?")
            await eventually(lambda: len([c for c in fake.calls_to("send-message") if c.status == 404]) >= 2)
            assert (await Message.get(id=message.id)).status.value == "pending"  # waiting, not failed
            assert await state_of() == "DISCONNECTED" and fake.sent == []

            assert await fake.reconnect("acme") == 200
            delivered = await settled(message.id, "sent", "failed")
            assert delivered.status.value == "sent"
            assert [sent.body["message"] for sent in fake.sent] == ["Chegou?"]
            assert delivered.external_id == fake.sent[0].id
            await eventually(in_state("CONNECTED"))


async def test_unknown_number_fails_with_the_servers_words_and_a_refused_token_is_renewed_once(tmp_path, database_url):
    with running_fake_wppconnect() as fake:
        fake.session("acme", status="CONNECTED", paired=True)
        numbers = [number(fake.url, token="stale-token-from-another-server", webhook_secret=WEBHOOK_SECRET)]
        runtime = wpp_runtime(wpp_config(tmp_path, database_url, numbers, start_sessions=False), Inbox())
        host = runtime.host
        async with started(runtime):
            # The configured token is stale: the status read at start gets 401, a new token is
            # generated from the secret key once, and the read is repeated with it.
            await eventually(lambda: [call.status for call in fake.calls_to("status-session")] == [401, 200])
            assert len(fake.generated) == 1 and fake.calls_to("status-session")[1].token == fake.generated[0][1]

            # The same on a send: 401, a new token, the same send again.
            fake.expire_tokens()
            conversation = await host.conversation_with("wpp", CUSTOMER)
            renewed = await _sent(runtime, host.send_text(conversation, "primeira"))
            assert renewed.status.value == "sent"
            assert [call.status for call in fake.calls_to("send-message")] == [401, 201]
            assert len(fake.generated) == 2 and fake.calls_to("send-message")[1].token == fake.generated[1][1]

            # A phone without WhatsApp: 400, failed at once with the server's message.
            fake.missing.add("5511999999999")
            stranger = await host.conversation_with("wpp", "+5511999999999")
            unknown = await _sent(runtime, host.send_text(stranger, "oi"))
            assert (unknown.status.value, unknown.error_code) == ("failed", "unknown_number")
            assert "O número 5511999999999 não existe." in unknown.error_text
            assert [call.status for call in fake.calls_to("send-message")] == [401, 201, 400]

            # Every token refused: renewed once, then failed (not retried forever).
            fake.reject_tokens = True
            refused = await _sent(runtime, host.send_text(conversation, "segunda"))
            assert (refused.status.value, refused.error_code) == ("failed", "unauthorized")
            assert [call.status for call in fake.calls_to("send-message")] == [401, 201, 400, 401, 401]
            assert len(fake.generated) == 3
            assert await state_of() == "UNAUTHORIZED"


# --------------------------------------------------------------------------- the simulator


async def test_simulate_posts_a_proven_message(tmp_path, database_url):
    numbers = [number("http://127.0.0.1:9", webhook_secret=WEBHOOK_SECRET), number("http://127.0.0.1:9", id="gen", session="other")]
    config = wpp_config(tmp_path, database_url, numbers, workflow=False, start_sessions=False)
    runtime = wpp_runtime(config)
    provider = runtime.dispatch.provider("wppconnect")
    async with serving(runtime) as base:
        simulated = await asyncio.to_thread(hookline, "simulate", "wppconnect", "--number", "wpp", "--from", "5511900000001", "oi",
                                            "--url", base, "--config", config, cwd=tmp_path)
        assert simulated.returncode == 0, simulated.stderr + simulated.stdout
        message = await Message.get(text="oi").prefetch_related("conversation__contact")
        assert message.conversation.contact.address == CUSTOMER and message.conversation.number_id == "wpp"

        # A derived secret: the simulator, another process, derives the same one.
        built = await provider.simulate_webhook(runtime.host, runtime.host.number("gen"), "+5511900000002", "olá", PUBLIC)
        async with httpx.AsyncClient() as client:
            assert (await client.post(base + built.path, content=built.body, headers=built.headers)).status_code == 200
        generated = await asyncio.to_thread(hookline, "simulate", "wppconnect", "--number", "gen", "--from", "5511900000003", "tchau",
                                            "--url", base, "--config", config, cwd=tmp_path)
        assert generated.returncode == 0, generated.stderr + generated.stdout
        assert await Message.filter(text="tchau").count() == 1


async def test_console_pairing_qr_starts_the_session_then_shows_the_code_until_scanned(tmp_path, database_url):
    """`GET /api/whatsapp-numbers/{id}/qrcode`, as the console polls it while a number pairs."""
    from core.auth.tokens import create_token, create_user

    with running_fake_wppconnect(secret_key=SECRET_KEY) as fake:
        config = wpp_config(tmp_path, database_url, [number(fake.url)], workflow=False, start_sessions=False)
        runtime = wpp_runtime(config)
        async with serving(runtime, fake) as base, httpx.AsyncClient(base_url=base) as client:
            admin = {"Authorization": f"Bearer {await create_token(await create_user('ada', 'pw-pw-pw-pw', 'admin'))}"}
            agent = {"Authorization": f"Bearer {await create_token(await create_user('alan', 'pw-pw-pw-pw', 'agent'))}"}
            assert not fake.calls_to("start-session")

            first = await client.get("/api/whatsapp-numbers/wpp/qrcode", headers=admin)
            assert first.status_code == 409 and first.json()["error"]["code"] == "not_pairing"
            assert "starting" in first.json()["error"]["message"]
            assert len(fake.calls_to("start-session")) == 1

            async def code_on_offer() -> bool:
                answer = await client.get("/api/whatsapp-numbers/wpp/qrcode", headers=admin)
                return answer.status_code == 200 and answer.content == fake.sessions["acme"].qr
            await eventually(code_on_offer)
            shown = await client.get("/api/whatsapp-numbers/wpp/qrcode", headers=admin)
            assert shown.headers["content-type"] == "image/png" and shown.headers["cache-control"] == "no-store"
            assert (await client.get("/api/whatsapp-numbers/wpp/qrcode", headers=agent)).status_code == 403

            await fake.scan("acme")
            await eventually(in_state("CONNECTED"))
            after = await client.get("/api/whatsapp-numbers/wpp/qrcode", headers=admin)
            assert after.status_code == 409 and "QRCode is not available" in after.json()["error"]["message"]
            assert len(fake.calls_to("start-session")) == 1  # a connected session is not restarted


async def test_a_number_added_in_another_process_is_proven_here_at_once(tmp_path, database_url):
    """`serve --workers N`: the console adds a WPPConnect number in one process; the server posts
    its webhooks to whichever process answers, which knows the secret without asking anyone."""
    from core.api.numbers import NewNumber, add_number

    with running_fake_wppconnect(secret_key=SECRET_KEY) as fake:
        fake.session("loja", status="CONNECTED", paired=True)
        runtime = wpp_runtime(wpp_config(tmp_path, database_url, [number(fake.url)], workflow=False, start_sessions=False))
        async with started(runtime) as client:
            elsewhere = wpp_runtime(runtime.settings.path).host
            await add_number(elsewhere, NewNumber(id="loja", provider="wppconnect", phone="+5511900000010",
                                                  settings={"server_url": fake.url, "session": "loja", "secret_key": SECRET_KEY}), "test")
            their_url = await wppconnect.Sessions(elsewhere).webhook_url(elsewhere.number("loja"))
            assert "loja" not in runtime.host.numbers
            text = {**text_message("oi", message_id="false_5511900000001@c.us_LOJA1"), "session": "loja"}
            answer = await client.post(their_url.removeprefix(PUBLIC), content=json.dumps(text))
            assert answer.status_code == 200
            assert await Message.filter(external_id="false_5511900000001@c.us_LOJA1", conversation__number_id="loja").exists()
            wrong = await client.post(f"{WEBHOOKS}/loja/{derived_secret(b'another key' * 3, 'loja')}", content=json.dumps(text))
            assert wrong.status_code == 403
