"""Pre-signed inbound webhooks, one request per line, so the load generator only reads and sends.

Each provider's shape is a small *request builder*: the route it posts to, its content type, the
header its proof goes in, how many messages one request carries, how message ids are made, the
body of request ``i`` and its signature, and the ``[[numbers]]`` table a server needs to accept
them. Everything else (the file format, bench/post.lua, the stored-row check, the cases) is the
same for every builder, so a provider is added by writing one more builder.

Signing uses each plugin's own signer (``plugins.twilio.signature.expected_signature``,
``plugins.meta.signature.sign``), so a request the server refuses means the server and the signer
disagree, not that the bench re-implemented an algorithm wrongly.

Each line is ``<signature header value>\\t<body>``; bodies never contain a tab or a newline
(form encoding escapes them, compact JSON escapes control characters). Message ``m`` of the file
carries the id ``message_id(m)``: unique in the file and across runs (a per-run nonce), and
ordered, so the rows a slice of lines stored can be counted with one range query. Request ``i``
carries messages ``i * batch`` to ``i * batch + batch - 1``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
import random
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus

from plugins.meta.signature import SIGNATURE_HEADER as META_SIGNATURE_HEADER
from plugins.meta.signature import sign as meta_sign
from plugins.twilio.signature import expected_signature

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


def new_nonce() -> str:
    return secrets.token_hex(8)


def sender_digits(index: int, senders: int, mixed: bool = False) -> str:
    """Customers spread over `senders` phones: real traffic is many conversations, not one.

    By default message `index` comes from phone `index % senders`, so the messages of one batch
    come from consecutive phones in ascending order, and two batches share either all of their
    senders or none. `mixed` draws each message's phone at random (seeded by `index`, so a file
    is the same every time): batches overlap partly and in any order, as Meta's batches of a
    busy number do. See "Mixed senders" in docs/performance.md.
    """
    if mixed:
        return f"1555{random.Random(index).randrange(senders):07d}"
    return f"1555{index % senders:07d}"


class RequestBuilder(ABC):
    """One provider's inbound webhook, as the bench sends it. Subclasses set the class attributes
    and write `number_toml`, `message_id` and `request`."""

    #: the plugin; also `hookline_message.provider` of what it stores
    provider: str = ""
    #: the route the provider's plugin mounts
    path: str = ""
    content_type: str = ""
    #: where the proof goes; None for a provider whose proof is the URL itself
    signature_header: str | None = None
    #: whether one request may carry several messages (Meta's "×1" is a batch of one; a Twilio
    #: webhook is always one message)
    batched: bool = False

    def __init__(
        self, *, batch: int, secret: str, nonce: str, senders: int, public_url: str, mixed_senders: bool = False
    ) -> None:
        self.batch = batch  # messages per request
        self.secret = secret  # the number's signing secret for this run
        self.nonce = nonce
        self.senders = senders
        self.mixed_senders = mixed_senders
        self.public_url = public_url  # what the server is configured with (Twilio signs the URL)

    @property
    def label(self) -> str:
        """`twilio inbound`, `meta inbound ×10`: what the case names start with."""
        return f"{self.provider} inbound" + (f" ×{self.batch}" if self.batched else "")

    @property
    def key(self) -> str:
        """Short name for --cases and file names: `twilio`, `meta1`, `meta10`."""
        return self.provider + (str(self.batch) if self.batched else "")

    def sender(self, index: int) -> str:
        """The digits of message `index`'s sender."""
        return sender_digits(index, self.senders, self.mixed_senders)

    @abstractmethod
    def message_id(self, index: int) -> str:
        ...

    @abstractmethod
    def request(self, index: int) -> tuple[str, str]:
        """(signature header value, body) of request `index`."""
        ...

    @abstractmethod
    def number_toml(self) -> str:
        """`[plugins]` and the `[[numbers]]` table(s) that accept these requests."""
        ...

    def ids_of(self, first_request: int, end_request: int) -> tuple[str, str]:
        """[first, end) message ids carried by requests [first_request, end_request)."""
        return self.message_id(first_request * self.batch), self.message_id(end_request * self.batch)

    def write(self, path: Path, count: int) -> None:
        """Write `count` signed requests, one per line."""
        with path.open("w", encoding="ascii", newline="\n") as out:
            for index in range(count):
                signature, body = self.request(index)
                out.write(f"{signature}\t{body}\n")


# --------------------------------------------------------------------------- Twilio


class TwilioInbound(RequestBuilder):
    """The body of `tests/fixtures/twilio/inbound_text.form` with its `MessageSid` (and `SmsSid`,
    `SmsMessageSid`) made unique and the sender spread, signed (`X-Twilio-Signature`, HMAC-SHA1 of
    the URL and the sorted fields) for the public URL + path. One message per request."""

    provider = "twilio"
    path = "/webhooks/whatsapp/twilio"
    content_type = "application/x-www-form-urlencoded"
    signature_header = "X-Twilio-Signature"
    FIXTURE = FIXTURES / "twilio" / "inbound_text.form"
    SID_FIELDS = ("MessageSid", "SmsMessageSid", "SmsSid")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.batch != 1:
            raise ValueError("a Twilio webhook carries one message")
        self.base = dict(parse_qsl(self.FIXTURE.read_text(encoding="utf-8").strip(), keep_blank_values=True))
        # Fields that never change are url-encoded once (urlencode per line was 90 % of the time).
        self.encoded = {name: f"{quote_plus(name)}={quote_plus(value)}" for name, value in self.base.items()}
        self.url = self.public_url + self.path

    def message_id(self, index: int) -> str:
        return f"SM{self.nonce}{index:016x}"

    def request(self, index: int) -> tuple[str, str]:
        base = self.base
        form = dict(base)
        sid = self.message_id(index)
        for name in self.SID_FIELDS:
            form[name] = sid
        digits = self.sender(index)
        form["From"] = f"whatsapp:+{digits}"
        form["WaId"] = digits
        form["ChannelMetadata"] = json.dumps(
            {"type": "whatsapp", "data": {"context": {"ProfileName": form["ProfileName"], "WaId": digits}}},
            separators=(",", ":"),
        )
        body = "&".join(
            self.encoded[name] if value == base[name] else f"{quote_plus(name)}={quote_plus(value)}"
            for name, value in form.items()
        )
        return expected_signature(self.url, {name: [value] for name, value in form.items()}, self.secret), body

    def number_toml(self) -> str:
        return f"""[plugins]
enabled = ["twilio"]

[[numbers]]
id = "bench"
provider = "twilio"
phone = "{self.base["To"].removeprefix("whatsapp:")}"
[numbers.settings]
account_sid = "{self.base["AccountSid"]}"
auth_token = "{self.secret}"
"""


# --------------------------------------------------------------------------- Meta


class MetaInbound(RequestBuilder):
    """A Cloud API `messages` update shaped like `tests/fixtures/meta/inbound_text.json`: one entry,
    one change, `value.messages` holding `batch` text messages (each its own wamid and sender,
    `value.contacts` one item per sender), for the fixture's `phone_number_id`. Serialised as
    Meta does (compact, non-ASCII as `\\uXXXX`, `/` as `\\/`) and signed over exactly those bytes:
    `X-Hub-Signature-256: sha256=HMAC-SHA256(app secret, body)`."""

    provider = "meta"
    path = "/webhooks/whatsapp/meta"
    content_type = "application/json"
    signature_header = META_SIGNATURE_HEADER
    batched = True
    FIXTURE = FIXTURES / "meta" / "inbound_text.json"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        fixture = json.loads(self.FIXTURE.read_text(encoding="utf-8"))
        self.entry_id = fixture["entry"][0]["id"]
        value = fixture["entry"][0]["changes"][0]["value"]
        self.metadata = value["metadata"]
        self.profile_name = value["contacts"][0]["profile"]["name"]
        self.message = value["messages"][0]
        self.timestamp = str(int(time.time()))  # Meta's are seconds, and recent

    def message_id(self, index: int) -> str:
        return f"wamid.bench{self.nonce}{index:016x}"

    def request(self, index: int) -> tuple[str, str]:
        first = index * self.batch
        messages, contacts = [], []
        for number in range(first, first + self.batch):
            digits = self.sender(number)
            messages.append({**self.message, "from": digits, "id": self.message_id(number), "timestamp": self.timestamp})
            contacts.append({"profile": {"name": self.profile_name}, "wa_id": digits})
        unique_contacts = list({contact["wa_id"]: contact for contact in contacts}.values())
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.entry_id, "changes": [{"value": {
                "messaging_product": "whatsapp", "metadata": self.metadata,
                "contacts": unique_contacts, "messages": messages,
            }, "field": "messages"}]}],
        }
        body = json.dumps(payload, separators=(",", ":")).replace("/", "\\/")
        return meta_sign(body.encode("ascii"), self.secret), body

    def number_toml(self) -> str:
        # mark_read off: read receipts are Graph API calls made later by the queue worker, not part
        # of the inbound path; api_base_url points at a closed local port so nothing can reach Meta.
        return f"""[plugins]
enabled = ["meta"]

[plugins.meta]
mark_read = false

[[numbers]]
id = "bench"
provider = "meta"
phone = "+{self.metadata["display_phone_number"]}"
[numbers.settings]
phone_number_id = "{self.metadata["phone_number_id"]}"
waba_id = "{self.entry_id}"
access_token = "bench-no-token"
app_secret = "{self.secret}"
verify_token = "bench-{self.nonce}"
api_base_url = "http://127.0.0.1:9"
"""


# --------------------------------------------------------------------------- WPPConnect


class WppconnectInbound(RequestBuilder):
    """The `onmessage` event of `tests/fixtures/wppconnect/onmessage_text.json` with its id made
    unique and the sender spread. WPPConnect signs nothing: the proof is the number's secret in
    the webhook URL (`/webhooks/whatsapp/wppconnect/<number id>/<webhook_secret>`), so every line's
    "signature" is empty and the path carries the run's secret. One message per request.

    A real id is `false_<chat>_<hex>`; hookline treats it as opaque (only `true_`/`false_` matter),
    so the bench leaves the chat out (`false_bench<nonce><index>`) to keep the ids of a slice of the
    file one range for the stored-row count, whatever the database's collation."""

    provider = "wppconnect"
    content_type = "application/json"
    signature_header = None
    FIXTURE = FIXTURES / "wppconnect" / "onmessage_text.json"
    NUMBER_ID = "bench"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.batch != 1:
            raise ValueError("a WPPConnect webhook carries one message")
        self.event = json.loads(self.FIXTURE.read_text(encoding="utf-8"))
        self.path = f"/webhooks/whatsapp/wppconnect/{self.NUMBER_ID}/{self.secret}"

    def message_id(self, index: int) -> str:
        return f"false_bench{self.nonce}{index:016x}"

    def request(self, index: int) -> tuple[str, str]:
        chat = f"{self.sender(index)}@c.us"
        event = {**self.event, "id": self.message_id(index), "from": chat, "chatId": chat,
                 "sender": {**self.event["sender"], "id": chat}}
        return "", json.dumps(event, separators=(",", ":"), ensure_ascii=True)

    def number_toml(self) -> str:
        # No WPPConnect server: sessions are not started, statuses not read, and server_url points
        # at a closed local port, so the bench measures the inbound path only.
        return f"""[plugins]
enabled = ["wppconnect"]

[plugins.wppconnect]
start_sessions = false
status_interval_seconds = 0

[[numbers]]
id = "{self.NUMBER_ID}"
provider = "wppconnect"
phone = "+{self.event["to"].split("@")[0]}"
[numbers.settings]
server_url = "http://127.0.0.1:9"
session = "{self.event["session"]}"
token = "bench-no-token"
webhook_secret = "{self.secret}"
"""


BUILDERS: dict[str, type[RequestBuilder]] = {"twilio": TwilioInbound, "meta": MetaInbound, "wppconnect": WppconnectInbound}
