"""The bot_transfer workflow through the whole app with the recording provider, on SQLite and
PostgreSQL: transfer → PDF → (accepted) → farewell, failures handed back to a human, custom
templates with variables, exactly once across repeated transfers, retried jobs and a restart."""

from __future__ import annotations

import asyncio

import pytest

import plugins.bot_transfer as bot_transfer
from core.jobs import job_handlers
from core.storage.models import Conversation, Job, Message, StatusEvent
from tests.test_bot_transfer_helpers import fake, shared_fake_api  # noqa: F401 (fixtures)
from tests.test_bot_transfer_helpers import (
    CUSTOMER, LAST, NAME, Watcher, conversation_with_history, flat, outbound, pdf_text, settings_toml, write_template,
)
from tests.helpers import eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio


def bot_runtime(tmp_path, database_url, api_url: str, watcher: Watcher | None = None, **settings):
    config = write_config(tmp_path, database_url, api_url=api_url, enabled=["recorder", "bot_transfer", "watch"],
                          extra=settings_toml(**settings) if settings else "")
    return runtime_for(config, bot_transfer=bot_transfer, watch=watcher or Watcher())


async def _sent(fake, count: int) -> None:
    await eventually(lambda: len(fake.received) >= count)


async def _no_pending_sends() -> bool:
    return await Job.filter(kind__in=["send", "status", "transferred", "inbound"]).count() == 0


async def test_transfer_sends_the_pdf_and_then_the_farewell_once(tmp_path, database_url, fake):
    runtime = bot_runtime(tmp_path, database_url, fake.url)
    host = runtime.host
    async with started(runtime) as client:
        conversation = await conversation_with_history(client, host)
        changed = await asyncio.gather(*(host.transfer(conversation, "bot", reason="acuerdo listo", by="ana") for _ in range(3)))
        assert sorted(changed) == [False, False, True]  # three agents at once: one handover
        await _sent(fake, 2)
        assert await host.transfer(conversation, "bot") is False  # again, later: a no-op
        await eventually(_no_pending_sends)
        await asyncio.sleep(0.2)  # nothing else is on its way
        assert len(fake.received) == 2

        pdf, farewell = await outbound(conversation.id)
        assert [r["id"] for r in fake.received] == [pdf.id, farewell.id]  # the PDF first, then the farewell
        assert pdf.kind == "document" and pdf.sender == "bot" and pdf.media[0]["content_type"] == "application/pdf"
        assert pdf.media[0]["filename"] == f"conversacion-{conversation.id}.pdf"
        data = host.media.read(pdf.media[0]["key"])
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        text = flat(pdf_text(data))
        assert NAME in text and CUSTOMER in text
        assert LAST in text  # the last message, accents intact
        assert "<b>urgente</b> & rápido" in text  # what the customer wrote, as text, not markup

        # The farewell was queued only once the provider had accepted the PDF.
        accepted = await StatusEvent.get(message_id=pdf.id, status="queued")
        assert farewell.created_at >= accepted.received_at
        assert farewell.sender == "bot" and farewell.text.startswith(f"¡Gracias por escribirnos, {NAME}!")
        assert farewell.dedupe_key.endswith(":farewell") and pdf.dedupe_key.endswith(":pdf")
        after = await Conversation.get(id=conversation.id)
        assert after.owner.value == "bot" and after.state.value == "open"  # after = "bot" (the default)


async def _closed(conversation_id: int) -> bool:
    return (await Conversation.get(id=conversation_id)).state.value == "closed"


async def test_a_refused_pdf_sends_no_farewell_and_goes_back_to_a_human(tmp_path, database_url, fake):
    watcher = Watcher()
    runtime = bot_runtime(tmp_path, database_url, fake.url, watcher)
    async with started(runtime) as client:
        conversation = await conversation_with_history(client, runtime.host)
        fake.answer((400, {"code": 21620, "message": "Invalid media URL(s)"}))
        await runtime.host.transfer(conversation, "bot", by="ana")
        await eventually(lambda: len(watcher.transfers) == 2)
        await eventually(_no_pending_sends)
        assert [t["to"] for t in watcher.transfers] == ["bot", "human"]
        back = watcher.transfers[1]
        assert back["by"] == "bot" and "PDF" in back["reason"] and "Invalid media URL" in back["reason"]
        assert (await Conversation.get(id=conversation.id)).owner.value == "human"
        (pdf,) = await outbound(conversation.id)  # no farewell
        assert pdf.status.value == "failed" and len(fake.received) == 1
        assert (await runtime.host.plugin_state(conversation, "bot_transfer"))["phase"] == "failed"


async def test_a_broken_template_sends_nothing_and_goes_back_to_a_human(tmp_path, database_url, fake, caplog):
    watcher = Watcher()
    write_template(tmp_path, "plantillas/roto.html.j2", "<p>{{ vars.monto }}</p>")  # undefined: an error, not a blank
    runtime = bot_runtime(tmp_path, database_url, fake.url, watcher, pdf_template="plantillas/roto.html.j2")
    async with started(runtime) as client:
        conversation = await conversation_with_history(client, runtime.host)
        await runtime.host.transfer(conversation, "bot")
        await eventually(lambda: len(watcher.transfers) == 2)
        assert watcher.transfers[1]["to"] == "human" and "monto" in watcher.transfers[1]["reason"]
        assert await outbound(conversation.id) == [] and fake.received == []
        assert "could not be made" in caplog.text


async def test_a_custom_template_sees_contact_conversation_and_variables(tmp_path, database_url, fake):
    write_template(tmp_path, "plantillas/acuerdo.html.j2", """
<title>Acuerdo de pago</title>
<h1>Acuerdo de pago — {{ vars.empresa }}</h1>
<p>Cliente: <b>{{ contact.name }}</b> ({{ contact.address }}), conversación {{ conversation.id }}.</p>
<p>Monto: {{ vars.monto }} en {{ vars.cuotas }} cuotas. Número: {{ number.phone }}.</p>
<p>Último mensaje: {{ last_customer_message.text }}</p>
<p>Acordado con {{ transfer.by }} ({{ transfer.reason }}).</p>
""")
    write_template(tmp_path, "plantillas/despedida.txt.j2", "Gracias {{ contact.name }}, {{ transfer.by }} te envió el acuerdo de {{ vars.empresa }}")
    runtime = bot_runtime(
        tmp_path, database_url, fake.url, pdf_template="plantillas/acuerdo.html.j2",
        farewell_template=str(tmp_path / "plantillas/despedida.txt.j2"),  # absolute paths work too
        pdf_filename="acuerdo-{{ contact.name }}.pdf", variables={"empresa": "Pagos Ñandú S.A.", "cuotas": 2},
        pdf_caption="Acuerdo de {{ contact.name }}", after="close",
    )
    host = runtime.host
    async with started(runtime) as client:
        conversation = await conversation_with_history(client, host)
        # Per-conversation values (stored by another plugin or the console before the transfer).
        await host.set_plugin_state(conversation, "bot_transfer", {"variables": {"monto": "R$ 1.250,00", "cuotas": 3}})
        await host.transfer(conversation, "bot", reason="acuerdo firmado", by="Marta")
        await _sent(fake, 2)
        pdf, farewell = await outbound(conversation.id)
        assert pdf.media[0]["filename"] == "acuerdo-Ana-Souza.pdf"
        text = flat(pdf_text(host.media.read(pdf.media[0]["key"])))
        assert "Acuerdo de pago — Pagos Ñandú S.A." in text
        assert f"Cliente: {NAME} ({CUSTOMER}), conversación {conversation.id}." in text
        assert "Monto: R$ 1.250,00 en 3 cuotas. Número: +15550000001." in text
        assert f"Último mensaje: {LAST}" in text
        assert "Acordado con Marta (acuerdo firmado)." in text
        assert farewell.text == f"Gracias {NAME}, Marta te envió el acuerdo de Pagos Ñandú S.A."
        assert fake.received[0]["text"] == pdf.text == f"Acuerdo de {NAME}"  # the caption
        await eventually(lambda: _closed(conversation.id))  # after = "close"


async def test_a_restart_between_the_pdf_and_the_farewell_and_retried_jobs_send_each_once(tmp_path, database_url, fake):
    config = write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "bot_transfer"])
    first = runtime_for(config, bot_transfer=bot_transfer)
    async with started(first, run_workers=False) as client:  # the jobs are run by hand, one by one
        handlers = job_handlers(first.host)
        conversation = await first.host.conversation_with("n1", CUSTOMER, name=NAME)
        await first.host.transfer(conversation, "bot")
        transferred = await Job.get(kind="transferred")
        for _ in range(2):  # the notification runs twice (a crash before the job was marked done)
            await handlers["transferred"](transferred.payload)
        await transferred.delete()
        (send,) = await Job.filter(kind="send")
        for _ in range(2):  # the send job too
            await handlers["send"](send.payload)
        await send.delete()
        assert len(fake.received) == 1  # the PDF went out; its status job waits: stop here
        assert await Job.filter(kind="status").count() == 1
        status_payload = (await Job.get(kind="status")).payload

    second = runtime_for(config, bot_transfer=bot_transfer)  # a new process on the same database
    async with started(second):
        await _sent(fake, 2)
        await eventually(_no_pending_sends)
        handlers = job_handlers(second.host)
        await handlers["status"](status_payload)  # the status notification again
        await handlers["transferred"](transferred.payload)  # and the transfer notification again
        await eventually(_no_pending_sends)
        pdf, farewell = await outbound(conversation.id)
        assert [r["id"] for r in fake.received] == [pdf.id, farewell.id]
        assert pdf.kind == "document" and farewell.dedupe_key == transferred.payload["transfer_id"] + ":farewell"


async def test_the_safety_net_timer_finishes_a_handover_whose_status_notification_was_lost(tmp_path, database_url, fake):
    config = write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "bot_transfer"])
    runtime = runtime_for(config, bot_transfer=bot_transfer)
    async with started(runtime, run_workers=False):
        handlers = job_handlers(runtime.host)
        conversation = await runtime.host.conversation_with("n1", CUSTOMER, name=NAME)
        await runtime.host.transfer(conversation, "bot")
        for kind in ("transferred", "send"):
            job = await Job.get(kind=kind)
            await handlers[kind](job.payload)
            await job.delete()
        await Job.filter(kind="status").delete()  # lost: the notification never runs
        timer = await Job.get(kind="timer")
        assert timer.payload["name"] == "handover"
        await handlers["timer"](timer.payload)
        farewell = await Message.get(conversation_id=conversation.id, dedupe_key__endswith=":farewell")
        assert farewell.sender == "bot"
        await handlers["timer"](timer.payload)  # at-least-once timers: still one farewell
        assert await Message.filter(conversation_id=conversation.id, dedupe_key__endswith=":farewell").count() == 1
