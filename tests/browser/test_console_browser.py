"""The web console in a real headless Chromium (Debian's, driven by Playwright's async API) against
a real `hookline serve` on 127.0.0.1, at a desktop (1280x800) and a phone (390x844) viewport.

- sign in through the form, its fields found by their labels;
- add a Twilio number through the generated "Add number" form (provider, account SID, auth token,
  API base URL of a local fake Twilio) and see it in the numbers table with its provider chip;
- a Twilio webhook, signed with the auth token typed into that form, starts a conversation that
  appears in the open inbox; the thread, kept open, shows a second signed webhook's text without
  a reload (live Server-Sent Events);
- reply from the composer (the button, then Enter): the reply is in the thread, reaches the fake
  Twilio API with that number's credentials, and its tick turns to "accepted" live;
- a 40-line message is shown whole above the composer; composer, Send and "Transfer to bot" stay
  on screen with nothing over them (the live-status note used to cover Send on phones);
- "Transfer to bot" makes the owner Bot (and a reload agrees); "Take over" makes it Agent again;
- no page scrolls sideways, and nothing goes wrong in the page: no script or console error (a
  Content-Security-Policy violation is one), no response of 400 or more.

The layout is what differs by viewport, so both widths run on SQLite; the thread test runs once
more on PostgreSQL at 1280 px for the live path (events, read markers) on the other backend;
test_console.py covers every form on both. One server per backend serves the module's tests,
each in a fresh browser context with unique numbers and customers.

Screenshots go to tests/browser/artifacts/: inbox-, thread-, thread-long-, numbers- and
number-new-<width>.png, failed-<test>.png on a failure.
"""

from __future__ import annotations

import re
import secrets
import time
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Page, expect

from plugins.twilio.signature import expected_signature
from tests.browser.support import ADMIN, PASSWORD, Console
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844, "mobile": True}
# (backend, viewport): the layout on SQLite at both widths; the live path once more on PostgreSQL.
ON_SQLITE = [pytest.param("sqlite", DESKTOP, id="sqlite-1280x800"), pytest.param("sqlite", PHONE, id="sqlite-390x844")]
ALSO_POSTGRES = [*ON_SQLITE, pytest.param("postgres", DESKTOP, id="postgres-1280x800")]


def cases(params: list) -> pytest.MarkDecorator:
    """Module scope: one server per backend for all the tests that use it."""
    return pytest.mark.parametrize(("console_server", "viewport"), params, indirect=True, scope="module")


INBOUND = "/webhooks/whatsapp/twilio"
LIVE = 10_000  # ms: what "appears live" may take (it takes well under a second; the machine may be busy)
expect.set_options(timeout=10_000)  # every other wait too


# --------------------------------------------------------------------------- steps


async def sign_in(page: Page, console: Console) -> None:
    await page.goto(console.url + "/")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))
    await no_sideways_scrolling(page, "Sign in")
    await page.get_by_label("Username").fill(ADMIN)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(console.url + "/console/inbox")
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Numbers")).to_be_visible()


async def add_twilio_number(page: Page, console: Console, *, id: str, phone: str, name: str, account: str, token: str) -> None:
    """Through the console, as an admin would: Numbers, "Add number", pick Twilio, fill, submit."""
    console.twilio.credentials[account] = token  # the fake Twilio accepts these credentials
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Numbers").click()
    await page.get_by_role("link", name="Add number").click()
    await expect(page.get_by_role("heading", name="Add number")).to_be_visible()
    await page.get_by_label("Provider", exact=True).select_option("twilio")
    twilio = page.get_by_role("group", name="twilio settings")
    await expect(twilio).to_be_visible()
    await expect(page.get_by_role("group", name="recorder settings")).to_be_hidden()
    await page.get_by_label("Identifier").fill(id)
    await page.get_by_label("Phone number").fill(phone)
    await page.get_by_label("Display name").fill(name)
    await twilio.get_by_label("Account Sid").fill(account)
    await twilio.get_by_label("Auth Token").fill(token)
    await expect(twilio.get_by_label("Auth Token")).to_have_attribute("type", "password")
    await twilio.get_by_label("Api Base Url").fill(console.twilio.url)
    await page.get_by_role("button", name="Add number").click()
    await expect(page).to_have_url(f"{console.url}/console/numbers/{id}")
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


def twilio_inbound(*, to: str, sender: str, profile: str, text: str, account: str) -> dict[str, str]:
    sid = "SM" + secrets.token_hex(16)
    return {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": account, "From": f"whatsapp:{sender}",
        "To": f"whatsapp:{to}", "Body": text, "NumMedia": "0", "NumSegments": "1", "MessageType": "text",
        "SmsStatus": "received", "ProfileName": profile, "WaId": sender.lstrip("+"), "ApiVersion": "2010-04-01",
    }


async def post_twilio(console: Console, form: dict[str, str], token: str) -> None:
    """POST an inbound webhook as Twilio does, signed over the server's public URL with `token`."""
    signature = expected_signature(console.url + INBOUND, {k: [v] for k, v in form.items()}, token)
    async with httpx.AsyncClient(base_url=console.url, timeout=10) as client:
        answer = await client.post(INBOUND, content=urlencode(form).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert answer.status_code == 200, f"{answer.status_code}: {answer.text}"


async def live(page: Page) -> None:
    """The page's event stream is open (what arrives now is shown)."""
    await expect(page.locator("#live-status")).to_have_text("Live updates on.", timeout=LIVE)


async def no_sideways_scrolling(page: Page, what: str) -> None:
    width, inner = await page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner + 1, f"{what} scrolls sideways at {inner}px: {width}px wide"


# The newest message ends on screen, above the composer (not hidden under it, nor below the fold).
NEWEST_SHOWN = """() => {
  const newest = document.querySelector('#messages > li:last-child').getBoundingClientRect();
  const composer = document.getElementById('composer').getBoundingClientRect();
  return newest.bottom <= composer.top + 1 && composer.bottom <= window.innerHeight + 1;
}"""


HIT_TEST = """element => {
  if (!element.isConnected) return null;  // replaced by a live refresh meanwhile: look again
  const box = element.getBoundingClientRect();
  for (const [fx, fy] of [[.5, .5], [.05, .1], [.95, .1], [.05, .9], [.95, .9]]) {
    const top = document.elementFromPoint(box.left + fx * box.width, box.top + fy * box.height);
    if (!element.contains(top)) return top ? top.outerHTML.slice(0, 120) : 'nothing (off screen)';
  }
  return '';
}"""


async def uncovered(control) -> None:
    """A tap anywhere on the control (its centre and near its corners) reaches it: nothing floats
    over it."""
    for _ in range(50):  # a live refresh may replace the element between finding and testing it
        covered = await control.evaluate(HIT_TEST)
        if covered is not None:
            break
    assert covered == "", f"covered by {covered}"


def unique() -> tuple[str, str, str]:
    """A number id, its phone and its account SID not used by another test on this server."""
    tag = secrets.token_hex(3)
    return f"tw-{tag}", "+1415" + str(int(tag, 16) % 10_000_000).zfill(7), "AC" + secrets.token_hex(16)


# --------------------------------------------------------------------------- tests


@cases(ON_SQLITE)
async def test_sign_in_and_add_a_twilio_number_through_the_generated_form(ui, console_server, viewport, artifacts):
    page, console = ui.page, console_server
    width = viewport["width"]
    await sign_in(page, console)
    number_id, phone, account = unique()
    token = "typed-" + secrets.token_hex(12)
    # The form is usable at this width: shown once with the Twilio fields, before filling it.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Numbers").click()
    await page.get_by_role("link", name="Add number").click()
    await page.get_by_label("Provider", exact=True).select_option("twilio")
    await no_sideways_scrolling(page, "Add number")
    await page.screenshot(path=str(artifacts / f"number-new-{width}.png"), full_page=True)

    await add_twilio_number(page, console, id=number_id, phone=phone, name="Ventas Web", account=account, token=token)
    facts = page.locator("#number-facts")
    await expect(facts).to_contain_text(f"{console.url}{INBOUND}")  # the webhook URL to paste into Twilio
    await expect(page.get_by_role("row", name=re.compile("auth_token"))).to_contain_text("********")
    assert token not in await page.content()
    await no_sideways_scrolling(page, "the number's page")

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Numbers").click()
    row = page.locator(f'tr[data-number-id="{number_id}"]')
    await expect(row.get_by_role("link", name="Ventas Web")).to_be_visible()
    await expect(row).to_contain_text(phone)
    chip = row.locator(".chip")
    await expect(chip).to_have_text("twilio")
    await expect(chip).to_have_class(re.compile(r"\bprovider-twilio\b"))
    await expect(chip).to_have_css("background-color", "rgb(253, 231, 234)")  # the stylesheet is applied
    await expect(row).to_contain_text("console")  # managed by the console, not the config file
    config_row = page.locator('tr[data-number-id="n1"]')
    await expect(config_row.locator(".chip")).to_have_text("recorder")
    await expect(config_row).to_contain_text("config file")
    await no_sideways_scrolling(page, "Numbers")
    await page.screenshot(path=str(artifacts / f"numbers-{width}.png"), full_page=True)


@cases(ALSO_POSTGRES)
async def test_a_live_thread_reply_and_handing_over_to_the_bot_and_back(ui, console_server, viewport, artifacts):
    page, console = ui.page, console_server
    width, mobile = viewport["width"], viewport.get("mobile", False)
    await sign_in(page, console)
    number_id, phone, account = unique()
    token = "typed-" + secrets.token_hex(12)
    await add_twilio_number(page, console, id=number_id, phone=phone, name="Soporte", account=account, token=token)
    customer = "+1555" + phone[-7:]
    profile = f"Ana {number_id}"

    # The inbox is open when the first message arrives: the conversation appears in the list.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Inbox").click()
    await live(page)
    await post_twilio(console, twilio_inbound(to=phone, sender=customer, profile=profile,
                                              text="Hola, ¿tienen envío a Quito?", account=account), token)
    conversation = page.get_by_role("link", name=re.compile(re.escape(profile)))
    await expect(conversation).to_be_visible(timeout=LIVE)
    await expect(conversation).to_contain_text(number_id)
    await no_sideways_scrolling(page, "the inbox")
    await page.screenshot(path=str(artifacts / f"inbox-{width}.png"))

    # The thread stays open; the second message appears in it without a reload.
    await conversation.click()
    await expect(page.get_by_role("heading", name=profile)).to_be_visible()
    messages = page.get_by_role("list", name="Messages")
    await expect(messages.get_by_text("Hola, ¿tienen envío a Quito?")).to_be_visible()
    await live(page)
    await page.evaluate("window.__sameDocument = true")
    started = time.monotonic()
    await post_twilio(console, twilio_inbound(to=phone, sender=customer, profile=profile,
                                              text="¿Y cuánto tarda?", account=account), token)
    await expect(messages.get_by_text("¿Y cuánto tarda?")).to_be_visible(timeout=LIVE)
    print(f"the second message appeared {time.monotonic() - started:.2f}s after its webhook was posted")
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    await expect(page).to_have_url(re.compile(r"/console/inbox/\d+$"))

    # At either width the composer and the thread's buttons are on screen; a phone shows the
    # thread alone, with a way back to the list.
    composer = page.get_by_label("Message", exact=True)
    send = page.get_by_role("button", name="Send")
    transfer = page.get_by_role("button", name="Transfer to bot")
    for control in (composer, send, transfer):
        await expect(control).to_be_visible()
        await expect(control).to_be_in_viewport()
    if mobile:
        await expect(page.get_by_role("link", name="← Conversations")).to_be_visible()
        await expect(page.get_by_role("complementary", name="Inbox")).to_be_hidden()
    else:
        listed = page.get_by_role("complementary", name="Inbox").get_by_role("link", name=re.compile(re.escape(profile)))
        await expect(listed).to_be_visible()
    await no_sideways_scrolling(page, "the thread")

    # A reply from the composer: in the thread, and at Twilio with this number's credentials.
    await composer.fill("Sí, llega en 3 días.")
    await send.click()
    reply = messages.locator("li.message.out", has_text="Sí, llega en 3 días.")
    await expect(reply).to_be_visible(timeout=LIVE)
    await expect(composer).to_have_value("")
    at_twilio = lambda: [sent for sent in console.twilio.sent if sent.account_sid == account]  # noqa: E731
    await eventually(lambda: len(at_twilio()) == 1, timeout=10)
    sent = at_twilio()[0]
    assert sent.auth == (account, token) and sent.one("Body") == "Sí, llega en 3 días."
    assert (sent.one("To"), sent.one("From")) == (f"whatsapp:{customer}", f"whatsapp:{phone}")
    await expect(reply.get_by_role("img", name="Accepted by the provider")).to_be_visible(timeout=LIVE)  # the tick, live
    # Enter sends too.
    await composer.fill("¿Algo más?")
    await composer.press("Enter")
    await expect(messages.locator("li.message.out", has_text="¿Algo más?")).to_be_visible(timeout=LIVE)
    await page.screenshot(path=str(artifacts / f"thread-{width}.png"))

    # A long message arrives: the page (phone) or the list (desktop) scrolls to show all of it
    # above the composer; the composer and the thread's buttons stay on screen, uncovered.
    poem = "\n".join(f"línea {n} de un mensaje largo" for n in range(1, 41))
    await post_twilio(console, twilio_inbound(to=phone, sender=customer, profile=profile, text=poem,
                                              account=account), token)
    await expect(messages.get_by_text("línea 40 de un mensaje largo")).to_be_visible(timeout=LIVE)
    await page.wait_for_function(NEWEST_SHOWN, timeout=LIVE)
    for control in (composer, send, transfer):
        await expect(control).to_be_in_viewport()
        await uncovered(control)
    await no_sideways_scrolling(page, "the long thread")
    await page.screenshot(path=str(artifacts / f"thread-long-{width}.png"))

    # Transfer to the bot; a reload agrees; take over again.
    await transfer.click()
    await expect(page.get_by_text("Handled by: Bot")).to_be_visible(timeout=LIVE)
    take_over = page.get_by_role("button", name="Take over")
    await expect(take_over).to_be_visible()
    await expect(transfer).to_be_hidden()
    await page.reload()
    await expect(page.get_by_text("Handled by: Bot")).to_be_visible()
    if not mobile:
        await expect(page.get_by_role("complementary", name="Inbox").locator("li.current .owner")).to_have_text("Bot")
    await take_over.click()
    await expect(page.get_by_text("Handled by: Agent")).to_be_visible(timeout=LIVE)
    await expect(transfer).to_be_visible()
    await expect(transfer).to_be_in_viewport()
    if not mobile:
        await expect(page.get_by_role("complementary", name="Inbox").locator("li.current .owner")).to_have_text("Agent", timeout=LIVE)
    await no_sideways_scrolling(page, "the thread after the handover")
