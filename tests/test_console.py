"""The web console over HTTP, as a browser without JavaScript would use it (and as the console's
fetch calls do): sign-in, CSRF, roles, the generated "Add number" form, the inbox with unread
counts and search, the thread's actions, languages. tests/browser/ runs it in a real Chromium."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import plugins.twilio
from core.auth.tokens import create_user
from core.console.i18n import CATALOGUE
from core.console.rendering import TEMPLATES
from core.storage.models import Conversation, Message, NumberRow
from tests.helpers import eventually, inbound_body, post_signed, runtime_for, started, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.storage]

PUBLIC = "https://hookline.example.com"
PASSWORD = "correct horse battery"
TWILIO_TOKEN = "console-twilio-token-0badc0ffee"
ACCOUNT = "AC" + "0123456789abcdef" * 2


@dataclass
class Console:
    client: httpx.AsyncClient
    runtime: object

    async def sign_in(self, username: str, password: str = PASSWORD, next_url: str = "") -> httpx.Response:
        form = await self.client.get("/console/login", params={"next": next_url} if next_url else None)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        return await self.client.post("/console/login", data={
            "username": username, "password": password, "csrf_token": token, "next": next_url})

    async def csrf(self) -> str:
        page = await self.client.get("/console/inbox")
        return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


@asynccontextmanager
async def console(tmp_path: Path, database_url: str) -> AsyncIterator[Console]:
    config = write_config(tmp_path, database_url, enabled=["recorder", "twilio"])
    runtime = runtime_for(config, twilio=plugins.twilio)
    async with started(runtime, base_url=PUBLIC) as client:
        await create_user("ada", PASSWORD, "admin")
        await create_user("alan", PASSWORD, "agent")
        yield Console(client, runtime)


# --------------------------------------------------------------------------- signing in


async def test_sign_in_needs_the_forms_token_and_sends_the_browser_back_where_it_was_going(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        client = ui.client
        away = await client.get("/console/numbers?x=1")
        assert away.status_code == 303 and away.headers["location"] == "/console/login?next=%2Fconsole%2Fnumbers%3Fx%3D1"

        # Another site cannot post the form: the token must match the cookie set with the form.
        forged = await client.post("/console/login", data={"username": "ada", "password": PASSWORD, "csrf_token": "guess"})
        assert forged.status_code == 403 and "hookline_session" not in forged.headers.get("set-cookie", "")

        wrong = await ui.sign_in("ada", "not the password")
        assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
        assert 'value="ada"' in wrong.text and "not the password" not in wrong.text

        done = await ui.sign_in("ada", next_url="/console/numbers?x=1")
        assert done.status_code == 303 and done.headers["location"] == "/console/numbers?x=1"
        cookie = done.headers["set-cookie"]
        assert "hookline_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" in cookie
        page = await client.get("/console/numbers")
        assert page.status_code == 200 and "Signed in as ada (admin)" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")

        # Logging out is a form too: without the token nothing happens.
        assert (await client.post("/console/logout", data={})).status_code == 403
        assert (await client.get("/console/inbox")).status_code == 200
        out = await client.post("/console/logout", data={"csrf_token": await ui.csrf()})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        assert (await client.get("/console/inbox")).status_code == 303


async def test_sign_in_never_redirects_off_site_and_shares_the_apis_rate_limit(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        done = await ui.sign_in("alan", next_url="https://evil.example/console/")
        assert done.headers["location"] == "/console/"  # the host is dropped: a path on this site
        ui.client.cookies.clear()
        assert (await ui.sign_in("alan", next_url="//evil.example/x")).headers["location"] == "/console/inbox"
        ui.client.cookies.clear()
        for _ in range(5):
            assert (await ui.sign_in("ada", "wrong")).status_code == 401
        limited = await ui.sign_in("ada")
        assert limited.status_code == 429 and "Too many failed attempts" in limited.text
        api = await ui.client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD})
        assert api.status_code == 429  # the console's failures count for the API too


# --------------------------------------------------------------------------- numbers


async def test_numbers_table_and_add_number_from_the_providers_schema(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    async with console(tmp_path, database_url) as ui:
        client = ui.client
        await ui.sign_in("ada")
        pages: list[str] = []

        table = await client.get("/console/numbers")
        pages.append(table.text)
        assert 'class="chip provider-recorder">recorder<' in table.text and "config file" in table.text

        form = await client.get("/console/numbers/new?provider=twilio")
        pages.append(form.text)
        twilio = re.search(r'<fieldset class="provider-settings" data-provider="twilio" >(.*?)</fieldset>', form.text, re.S)
        assert twilio, "the chosen provider's fieldset is shown and enabled"
        assert re.search(r'<fieldset class="provider-settings" data-provider="recorder" hidden disabled>', form.text)
        fields = twilio.group(1)
        assert '<input id="twilio-auth_token" name="twilio.auth_token" type="password" autocomplete="new-password" required' in fields
        assert "That account&#39;s Auth Token: signs webhooks and authenticates sends" in fields  # help from the schema
        assert 'id="twilio-api_base_url" name="twilio.api_base_url" type="text" value="https://api.twilio.com"' in fields
        assert 'aria-describedby="help-twilio-auth_token"' in fields
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        new = {"csrf_token": token, "provider": "twilio", "id": "tw1", "phone": "+15550001111", "display_name": "Ventas",
               "twilio.account_sid": "AC123", "twilio.auth_token": TWILIO_TOKEN, "twilio.api_base_url": "http://127.0.0.1:9"}

        # No CSRF token: refused before anything runs.
        assert (await client.post("/console/numbers/new", data={**new, "csrf_token": ""})).status_code == 403
        assert not await NumberRow.filter(id="tw1").exists()

        # A bad field: shown beside it, everything typed kept but the secret.
        bad = await client.post("/console/numbers/new", data=new)
        pages.append(bad.text)
        assert bad.status_code == 422
        assert re.search(r'<p class="field-error" id="error-twilio-account_sid">String should match pattern', bad.text)
        assert 'aria-describedby="help-twilio-account_sid error-twilio-account_sid" aria-invalid="true"' in bad.text
        assert 'value="Ventas"' in bad.text and 'value="AC123"' in bad.text and TWILIO_TOKEN not in bad.text
        assert not await NumberRow.filter(id="tw1").exists()

        added = await client.post("/console/numbers/new", data={**new, "twilio.account_sid": ACCOUNT})
        assert added.status_code == 303 and added.headers["location"] == "/console/numbers/tw1"
        host = ui.runtime.host
        assert host.number("tw1").settings.auth_token.get_secret_value() == TWILIO_TOKEN  # live at once
        row = await NumberRow.get(id="tw1")
        assert TWILIO_TOKEN not in json.dumps(row.public_settings) + json.dumps(row.sealed_settings)

        shown = await client.get("/console/numbers/tw1")
        pages.append(shown.text)
        assert "https://hookline.example.com/webhooks/whatsapp/twilio" in shown.text and "********" in shown.text
        assert "Pair with WhatsApp" not in shown.text  # Twilio numbers pair otherwise
        assert "console" in (await client.get("/console/fragments/numbers")).text

        taken = await client.post("/console/numbers/new", data={**new, "twilio.account_sid": ACCOUNT})
        assert taken.status_code == 409 and "error-id" in taken.text
        assert all(TWILIO_TOKEN not in page for page in pages)
        assert TWILIO_TOKEN not in caplog.text


async def test_agents_see_numbers_but_cannot_add_them(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        await ui.sign_in("alan")
        table = await ui.client.get("/console/numbers")
        assert table.status_code == 200 and "Add number" not in table.text
        assert (await ui.client.get("/console/numbers/new")).status_code == 403
        attempt = await ui.client.post("/console/numbers/new", data={
            "csrf_token": await ui.csrf(), "provider": "recorder", "id": "sneaky", "phone": "+1555",
            "recorder.secret": "s", "recorder.api_url": "http://x"})
        assert attempt.status_code == 303 and "error=" in attempt.headers["location"]
        assert not await NumberRow.filter(id="sneaky").exists()
        assert (await ui.client.get("/console/numbers/nope")).status_code == 404


# --------------------------------------------------------------------------- inbox


async def _inbound(client: httpx.AsyncClient, *messages: tuple[str, str, str]) -> None:
    assert (await post_signed(client, inbound_body(*messages))).status_code == 200
    await eventually(lambda: Message.filter(external_id=messages[-1][0]).exists())


async def test_inbox_unread_counts_search_and_a_thread_that_marks_read(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        client = ui.client
        await ui.sign_in("alan")
        await _inbound(client, ("m1", "+15550100001", "hola <script>alert(1)</script>"), ("m2", "+15550100001", "¿hay alguien?"))
        await _inbound(client, ("m3", "+15550100002", "buenas"))

        inbox = await client.get("/console/inbox")
        assert inbox.text.count('<li class=" unread">') == 2
        assert '<span class="unread-count" aria-label="2 unread">2</span>' in inbox.text
        assert '<span class="unread-count" aria-label="1 unread">1</span>' in inbox.text

        found = await client.get("/console/inbox", params={"q": "0100002"})
        assert "+15550100002" in found.text and "+15550100001" not in found.text
        bots = await client.get("/console/inbox", params={"owner": "bot"})
        assert "No conversations." in bots.text

        first = await Conversation.get(contact__address="+15550100001")
        thread = await client.get(f"/console/inbox/{first.id}")
        assert "hola &lt;script&gt;alert(1)&lt;/script&gt;" in thread.text and "<script>alert(1)" not in thread.text
        assert 'aria-current="page"' in thread.text and "Handled by: Agent" in thread.text
        listed = await client.get("/api/conversations")  # the session works for the API's GETs too
        unread = {item["contact"]["address"]: item["unread"] for item in listed.json()["items"]}
        assert unread == {"+15550100001": 0, "+15550100002": 1}

        # The fragments the live view fetches are the same pieces.
        fragment = await client.get(f"/console/fragments/thread/{first.id}")
        assert fragment.text.lstrip().startswith('<header class="thread-head">') and "¿hay alguien?" in fragment.text
        assert "+15550100002" in (await client.get("/console/fragments/conversations")).text
        assert (await client.get("/console/inbox/999999")).status_code == 404


async def test_thread_actions_send_attach_transfer_and_take_over(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        client = ui.client
        await ui.sign_in("alan")
        await _inbound(client, ("m1", "+15550100001", "hola"))
        conversation = await Conversation.get(contact__address="+15550100001")
        base = f"/console/inbox/{conversation.id}"
        token = await ui.csrf()
        fetch = {"X-Requested-With": "fetch"}

        sent = await client.post(f"{base}/send", data={"csrf_token": token, "text": "  ¿En qué te ayudo?  "}, headers=fetch)
        assert sent.status_code == 204
        reply = await Message.filter(conversation_id=conversation.id, direction="out").get()
        assert reply.text == "¿En qué te ayudo?" and reply.sender == "human"

        plain = await client.post(f"{base}/send", data={"csrf_token": token, "text": "sin JavaScript"})
        assert plain.status_code == 303 and plain.headers["location"] == base

        empty = await client.post(f"{base}/send", data={"csrf_token": token, "text": " "}, headers=fetch)
        assert empty.status_code == 422 and empty.json()["error"]["message"] == "Write a message or attach a file."
        unproven = await client.post(f"{base}/send", data={"text": "x"}, headers=fetch)
        assert unproven.status_code == 403
        assert await Message.filter(conversation_id=conversation.id, direction="out").count() == 2

        attached = await client.post(f"{base}/send", data={"csrf_token": token, "text": "la factura"},
                                     files={"file": ("factura.pdf", b"%PDF-1.4 test", "application/pdf")}, headers=fetch)
        assert attached.status_code == 204
        media = await Message.filter(conversation_id=conversation.id, kind="document").get()
        assert media.text == "la factura" and media.media[0]["filename"] == "factura.pdf"
        thread = await client.get(base)
        link = re.search(r'<a href="(/media/[^"]+)"[^>]*>📎 factura.pdf</a>', thread.text)
        assert link and (await client.get(html.unescape(link.group(1)))).content == b"%PDF-1.4 test"
        assert thread.text.count('role="img" aria-label="Sending"') == 3

        to_bot = await client.post(f"{base}/transfer", data={"csrf_token": token, "to": "bot"}, headers=fetch)
        assert to_bot.status_code == 204
        assert (await Conversation.get(id=conversation.id)).owner.value == "bot"
        page = await client.get(base)
        assert "Handled by: Bot" in page.text and "Take over" in page.text and "Transfer to bot" not in page.text
        back = await client.post(f"{base}/transfer", data={"csrf_token": token, "to": "human"})
        assert back.status_code == 303
        assert (await Conversation.get(id=conversation.id)).owner.value == "human"
        nonsense = await client.post(f"{base}/transfer", data={"csrf_token": token, "to": "cat"}, headers=fetch)
        assert nonsense.status_code == 422


async def test_failed_messages_show_the_providers_reason(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        await ui.sign_in("alan")
        await _inbound(ui.client, ("m1", "+15550100001", "hola"))
        conversation = await Conversation.get(contact__address="+15550100001")
        message = await ui.runtime.host.send_text(conversation, "tarde")
        await Message.filter(id=message.id).update(status="failed", error_code="63016",
                                                   error_text="outside the 24-hour window: send a template")
        page = await ui.client.get(f"/console/inbox/{conversation.id}")
        assert "Not delivered: outside the 24-hour window: send a template (63016)" in page.text
        assert 'aria-label="Failed"' in page.text


# --------------------------------------------------------------------------- languages


async def test_spanish_from_the_browser_or_the_language_switch(tmp_path, database_url):
    async with console(tmp_path, database_url) as ui:
        client = ui.client
        spanish = await client.get("/console/login", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
        assert '<html lang="es">' in spanish.text and "Iniciar sesión" in spanish.text and "Contraseña" in spanish.text
        await ui.sign_in("alan")
        chosen = await client.get("/console/inbox", params={"lang": "es"})
        assert "Bandeja" in chosen.text and "hookline_lang=es" in chosen.headers["set-cookie"]
        assert "Buscar conversaciones" in (await client.get("/console/inbox")).text  # remembered
        assert "Search conversations" in (await client.get("/console/inbox", params={"lang": "en"})).text


def test_both_languages_have_every_word_the_templates_use():
    assert set(CATALOGUE["en"]) == set(CATALOGUE["es"])
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']""", template.read_text(encoding="utf-8")))
    prefixes = {"role.", "owner.", "status.", "thread.sent_by."}  # completed with a value in the template
    missing = sorted(key for key in used if key not in CATALOGUE["en"] and not any(key == p for p in prefixes))
    assert used and not missing, f"words used by templates but missing from the catalogue: {missing}"
    for prefix, values in {"status.": ["received", "pending", "queued", "sent", "failed", "delivered", "read", "played"],
                           "owner.": ["bot", "human"], "role.": ["admin", "agent"]}.items():
        assert all(prefix + value in CATALOGUE["en"] for value in values), prefix


async def test_the_conversations_fragment_ignores_a_current_id_that_names_no_row(tmp_path, database_url):
    """`?current=²` was a 500 ("²".isdigit() is true, int("²") fails). Found with schemathesis's
    path ids (tests/test_reliability_openapi.py), the same parsing."""
    async with console(tmp_path, database_url) as ui:
        await ui.sign_in("alan")
        for current in ("²", "673427405555620773888", "abc"):
            assert (await ui.client.get("/console/fragments/conversations", params={"current": current})).status_code == 200
