"""Pre-signed Twilio inbound webhooks, one per line, so the load generator only reads and sends.

Signing in wrk's Lua would need an HMAC-SHA1 there; signing here uses hookline's own
``expected_signature``, so a request the server refuses means the server and the signer disagree,
not that the bench re-implemented the algorithm wrongly.

Each line is ``<X-Twilio-Signature>\\t<url-encoded form body>``. Line ``i`` carries the MessageSid
``SM<nonce><i as 16 hex digits>``: unique in the file and across runs, and ordered, so the rows a
slice of lines stored can be counted with one range query (``sid_of``).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus

from plugins.twilio.signature import expected_signature

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "twilio" / "inbound_text.form"
SID_FIELDS = ("MessageSid", "SmsMessageSid", "SmsSid")


def template() -> dict[str, str]:
    """The fixture's fields: a real-shaped Twilio WhatsApp text webhook."""
    return dict(parse_qsl(FIXTURE.read_text(encoding="utf-8").strip(), keep_blank_values=True))


def our_phone() -> str:
    """The number the fixture writes to (`To`), which the bench config must own."""
    return template()["To"].removeprefix("whatsapp:")


def account_sid() -> str:
    return template()["AccountSid"]


def sid_of(nonce: str, index: int) -> str:
    return f"SM{nonce}{index:016x}"


def new_nonce() -> str:
    return secrets.token_hex(8)


def sender_digits(index: int, senders: int) -> str:
    """Customers spread over `senders` phones: real traffic is many conversations, not one."""
    return f"1555{index % senders:07d}"


def write(path: Path, count: int, url: str, auth_token: str, nonce: str, senders: int) -> None:
    """Write `count` signed requests for the webhook at `url` (the configured public URL).

    Fields that never change are url-encoded once (urlencode per line was 90 % of the time).
    """
    base = template()
    encoded = {name: f"{quote_plus(name)}={quote_plus(value)}" for name, value in base.items()}
    with path.open("w", encoding="ascii", newline="\n") as out:
        for index in range(count):
            form = dict(base)
            sid = sid_of(nonce, index)
            for name in SID_FIELDS:
                form[name] = sid
            digits = sender_digits(index, senders)
            form["From"] = f"whatsapp:+{digits}"
            form["WaId"] = digits
            form["ChannelMetadata"] = json.dumps(
                {"type": "whatsapp", "data": {"context": {"ProfileName": form["ProfileName"], "WaId": digits}}},
                separators=(",", ":"),
            )
            body = "&".join(
                encoded[name] if value == base[name] else f"{quote_plus(name)}={quote_plus(value)}"
                for name, value in form.items()
            )
            signature = expected_signature(url, {name: [value] for name, value in form.items()}, auth_token)
            out.write(f"{signature}\t{body}\n")
