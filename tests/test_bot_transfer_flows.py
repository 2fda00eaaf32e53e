"""Bot flows through the whole app (recording provider), on SQLite and PostgreSQL: menus, rules,
the handoff keyword (and a queued bot reply dropped after it), the fallback, inactivity."""

from __future__ import annotations


import pytest

import plugins.bot_transfer as bot_transfer
from core.jobs import job_handlers
from core.storage.models import Conversation, Job, Message
from tests.test_bot_transfer_helpers import fake, shared_fake_api  # noqa: F401 (fixtures)
from tests.test_bot_transfer_helpers import NAME, Watcher, conversation_with_history, outbound, say
from tests.helpers import eventually, runtime_for, started, write_config

pytestmark = pytest.mark.anyio

FALLBACK = """[plugins.bot_transfer.fallback]
reply = "No entendí, {{ contact.name }}. Escribe *menu* para ver las opciones."
"""

FLOWS = """
[plugins.bot_transfer]
after = "bot"
handoff_keywords = ["agente", "humano"]
handoff_reply = "Te comunico con un agente."
variables = { horario = "de 9 a 18 h" }

[[plugins.bot_transfer.rules]]
keywords = ["menu", "opciones"]
menu = "principal"

[[plugins.bot_transfer.rules]]
regex = "(?i)\\\\bhorarios?\\\\b"
reply = "Atendemos {{ vars.horario }}."

[[plugins.bot_transfer.rules]]
keywords = ["saldo"]
reply = "Tu saldo es {{ vars.saldo }}."

[[plugins.bot_transfer.rules]]
keywords = ["promo"]
reply = "Promo del día: 2x1 en recargas."

""" + FALLBACK + """
[plugins.bot_transfer.menus.principal]
text = "Hola {{ contact.name }}, ¿en qué te ayudo?"
[[plugins.bot_transfer.menus.principal.options]]
label = "Estado de mi pedido"
reply = "Tu pedido está en camino."
[[plugins.bot_transfer.menus.principal.options]]
label = "Medios de pago"
reply = "Aceptamos tarjeta, transferencia y Pix."
[[plugins.bot_transfer.menus.principal.options]]
label = "Más opciones"
menu = "mas"
[[plugins.bot_transfer.menus.principal.options]]
label = "Hablar con una persona"
handoff = true
reply = "Ya te paso con alguien del equipo."

[plugins.bot_transfer.menus.mas]
text = "Más opciones:"
[[plugins.bot_transfer.menus.mas.options]]
label = "Facturas"
reply = "Te enviamos la factura por correo."
"""


def flow_runtime(tmp_path, database_url, api_url: str, watcher: Watcher | None = None, extra: str = FLOWS):
    config = write_config(tmp_path, database_url, api_url=api_url, enabled=["recorder", "bot_transfer", "watch"], extra=extra)
    return runtime_for(config, bot_transfer=bot_transfer, watch=watcher or Watcher())


async def with_the_bot(client, host, fake) -> Conversation:
    """A conversation handed to the bot, its PDF and farewell sent."""
    conversation = await conversation_with_history(client, host)
    await host.transfer(conversation, "bot")
    await eventually(lambda: len(fake.received) == 2)
    await eventually(lambda: _phase(host, conversation, "done"))
    return conversation


async def _phase(host, conversation, phase: str) -> bool:
    return (await host.plugin_state(conversation, "bot_transfer")).get("phase") == phase


async def bot_says(fake, count: int) -> list[str]:
    await eventually(lambda: len(fake.received) >= count)
    return [r["text"] for r in fake.received]


async def test_menu_option_2_gets_the_configured_reply_and_a_sub_menu_works(tmp_path, database_url, fake):
    runtime = flow_runtime(tmp_path, database_url, fake.url)
    async with started(runtime) as client:
        conversation = await with_the_bot(client, runtime.host, fake)
        await say(client, "¡Menú!")
        said = await bot_says(fake, 3)
        assert said[2] == (f"Hola {NAME}, ¿en qué te ayudo?\n\n1. Estado de mi pedido\n2. Medios de pago\n"
                           "3. Más opciones\n4. Hablar con una persona")
        await say(client, "2")
        assert (await bot_says(fake, 4))[3] == "Aceptamos tarjeta, transferencia y Pix."
        await say(client, " 3. ")
        assert (await bot_says(fake, 5))[4] == "Más opciones:\n\n1. Facturas"
        await say(client, "facturas")  # an option by its label
        assert (await bot_says(fake, 6))[5] == "Te enviamos la factura por correo."
        await say(client, "¿Cuál es el HORARIO?")
        assert (await bot_says(fake, 7))[6] == "Atendemos de 9 a 18 h."
        await say(client, "blablá")
        assert (await bot_says(fake, 8))[7] == f"No entendí, {NAME}. Escribe *menu* para ver las opciones."
        replies = (await outbound(conversation.id))[2:]
        assert all(m.sender == "bot" and m.dedupe_key.startswith("reply:") for m in replies)
        state = await runtime.host.plugin_state(conversation, "bot_transfer")
        assert state["menu"] == "mas"  # flow state lives in the database
        assert (await Conversation.get(id=conversation.id)).owner.value == "bot"


async def test_agente_hands_over_and_a_bot_reply_already_queued_is_dropped(tmp_path, database_url, fake):
    watcher = Watcher()
    runtime = flow_runtime(tmp_path, database_url, fake.url, watcher)
    async with started(runtime) as client:
        conversation = await with_the_bot(client, runtime.host, fake)
        fake.delay = 0.3  # the provider is slow: bot replies pile up behind the one in flight
        await say(client, "promo", "menu", "quiero hablar con un AGENTE por favor")
        await eventually(lambda: [t["to"] for t in watcher.transfers] == ["bot", "human"])
        handoff = watcher.transfers[1]
        assert handoff["by"] == "bot" and "agente" in handoff["reason"]  # what the agents are told
        assert (await Conversation.get(id=conversation.id)).owner.value == "human"

        async def settled() -> bool:
            return await Message.filter(conversation_id=conversation.id, status="pending").count() == 0
        await eventually(settled)
        promo, menu, notice = (await outbound(conversation.id))[2:]
        assert menu.sender == "bot" and menu.status.value == "failed" and menu.error_code == "dropped_not_owner"
        assert notice.text == "Te comunico con un agente." and notice.status.value == "queued"
        sent = [r["text"] for r in fake.received]
        assert menu.text not in sent  # queued before the handoff, never sent after it
        assert sent[-1] == "Te comunico con un agente."

        await say(client, "hola?")  # a human owns it now: the bot stays quiet
        await eventually(lambda: _no_jobs("inbound", "send"))
        assert len(await outbound(conversation.id)) == 5 and fake.received[-1]["text"] == "Te comunico con un agente."


async def test_a_menu_option_can_hand_over_and_no_fallback_means_a_human(tmp_path, database_url, fake):
    watcher = Watcher()
    no_fallback = FLOWS.replace(FALLBACK, "")
    assert no_fallback != FLOWS
    runtime = flow_runtime(tmp_path, database_url, fake.url, watcher, extra=no_fallback)
    async with started(runtime) as client:
        conversation = await with_the_bot(client, runtime.host, fake)
        await say(client, "menu")
        await bot_says(fake, 3)
        await say(client, "4")
        await eventually(lambda: len(watcher.transfers) == 2)
        assert "menu 'principal' option 4" in watcher.transfers[1]["reason"]
        assert (await bot_says(fake, 4))[3] == "Ya te paso con alguien del equipo."

        await runtime.host.transfer(conversation, "bot")  # back to the bot: a new PDF and farewell
        await bot_says(fake, 6)
        await eventually(lambda: _phase(runtime.host, conversation, "done"))
        await say(client, "algo que el bot no sabe")
        await eventually(lambda: len(watcher.transfers) == 4)
        assert watcher.transfers[3]["to"] == "human" and "no answer" in watcher.transfers[3]["reason"]
        assert (await bot_says(fake, 7))[6] == "Te comunico con un agente."


async def test_inactivity_closes_with_the_farewell(tmp_path, database_url, fake):
    runtime = flow_runtime(tmp_path, database_url, fake.url, extra=FLOWS.replace('after = "bot"\n', 'after = "bot"\ninactivity_seconds = 0.3\n'))
    async with started(runtime) as client:
        conversation = await with_the_bot(client, runtime.host, fake)  # the customer says nothing more
        await eventually(lambda: _closed(conversation.id))
        said = await bot_says(fake, 3)
        assert said[2].startswith("Cerramos esta conversación por inactividad. ¡Gracias por escribirnos, Ana Souza!")
        farewell = (await outbound(conversation.id))[-1]
        assert farewell.sender == "bot" and ":inactivity:" in farewell.dedupe_key
        await eventually(_no_inactivity_timers)
        await eventually(lambda: _no_jobs("send"))
        assert len(fake.received) == 3


async def test_an_inactivity_timer_acts_only_if_nothing_happened_since(tmp_path, database_url, fake):
    """Timers run by hand: a stale one (the customer wrote since, a human took over) does nothing."""
    config = write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "bot_transfer"],
                          extra=FLOWS.replace('after = "bot"\n', 'after = "bot"\ninactivity_seconds = 3600\n'))
    runtime = runtime_for(config, bot_transfer=bot_transfer)
    host = runtime.host
    async with started(runtime, run_workers=False) as client:
        handlers = job_handlers(host)
        conversation = await host.conversation_with("n1", "+15550100123", name=NAME)
        await host.transfer(conversation, "bot")
        await drain(handlers)  # PDF, farewell: timer 0
        await say(client, "promo")
        await drain(handlers)  # reply: timer 1
        await say(client, "promo")
        await drain(handlers)  # reply: timer 2
        timers = await inactivity_timers()
        assert len(timers) == 3 and len(await outbound(conversation.id)) == 4
        for stale in timers[:2]:  # the customer wrote after these were set
            await handlers["timer"](stale.payload)
        assert not await _closed(conversation.id) and len(await outbound(conversation.id)) == 4
        for _ in range(2):  # at-least-once: the due timer twice
            await handlers["timer"](timers[2].payload)
        assert await _closed(conversation.id)
        farewells = [m for m in await outbound(conversation.id) if ":inactivity:" in (m.dedupe_key or "")]
        assert len(farewells) == 1 and farewells[0].text.startswith("Cerramos esta conversación por inactividad")

        await say(client, "promo")  # reopens it, still with the bot
        await drain(handlers)
        timer = (await inactivity_timers())[-1]
        await host.transfer(conversation, "human", by="ana")  # its notification has not run yet
        await handlers["timer"](timer.payload)  # a person has it now: the bot stays quiet
        await drain(handlers)
        assert not await _closed(conversation.id) and len(await outbound(conversation.id)) == 6


async def drain(handlers) -> None:
    """Run every due job but the timers, in queue order, as a worker would."""
    while (job := await Job.filter(kind__in=["inbound", "transferred", "send", "status"]).order_by("id").first()) is not None:
        await handlers[job.kind](job.payload)
        await job.delete()


async def inactivity_timers() -> list[Job]:
    return [job for job in await Job.filter(kind="timer").order_by("id") if job.payload["name"] == "inactivity"]


async def _no_inactivity_timers() -> bool:
    timers = await Job.filter(kind="timer")
    return not [job for job in timers if job.payload["name"] == "inactivity"]


async def _no_jobs(*kinds: str) -> bool:
    return await Job.filter(kind__in=list(kinds)).count() == 0


async def _closed(conversation_id: int) -> bool:
    return (await Conversation.get(id=conversation_id)).state.value == "closed"


async def test_a_message_written_before_the_transfer_is_not_answered_and_a_reply_job_run_again_answers_once(tmp_path, database_url, fake):
    config = write_config(tmp_path, database_url, api_url=fake.url, enabled=["recorder", "bot_transfer"], extra=FLOWS)
    runtime = runtime_for(config, bot_transfer=bot_transfer)
    async with started(runtime, run_workers=False) as client:  # jobs run by hand, in queue order
        handlers = job_handlers(runtime.host)
        await say(client, "menu")  # to the agent; the transfer comes before its job has run
        conversation = await runtime.host.conversation_with("n1", "+15550100123")
        await runtime.host.transfer(conversation, "bot")
        for kind in ("inbound", "transferred"):
            job = await Job.get(kind=kind)
            await handlers[kind](job.payload)
            await job.delete()
        assert [m.kind for m in await outbound(conversation.id)] == ["document"]  # the PDF, no menu
        await say(client, "menu")  # after the transfer: the bot answers, once however often its job runs
        job = await Job.get(kind="inbound")
        for _ in range(3):
            await handlers["inbound"](job.payload)
        await job.delete()
        document, menu = await outbound(conversation.id)
        assert menu.text.startswith(f"Hola {NAME}") and menu.dedupe_key == f"reply:{job.payload['message_id']}"
        await say(client, "2")
        job = await Job.get(kind="inbound")
        for _ in range(2):  # the menu state was saved with the answer: "2" is read against the same menu
            await handlers["inbound"](job.payload)
        assert [m.text for m in await outbound(conversation.id)][2:] == ["Aceptamos tarjeta, transferencia y Pix."]

        await say(client, "mi saldo?")  # its reply needs vars.saldo, which nobody set: a person answers
        job = await Job.filter(kind="inbound").order_by("-id").first()
        await handlers["inbound"](job.payload)
        assert (await Conversation.get(id=conversation.id)).owner.value == "human"
        assert (await outbound(conversation.id))[-1].text == "Te comunico con un agente."
        transfers = await Job.filter(kind="transferred").order_by("-id")
        assert "could not be rendered" in transfers[0].payload["reason"] and "saldo" in transfers[0].payload["reason"]
