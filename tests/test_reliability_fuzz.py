"""Fuzzing every webhook endpoint (docs/reliability.md), on SQLite and PostgreSQL.

The routes are read from the app (every route under /webhooks/whatsapp/ that an enabled provider
registers), so a provider's new route is fuzzed without editing this file. Two properties:

* **Unproven requests** — random form bodies, JSON (nested, provider-shaped or not), raw and
  invalid-UTF-8 bytes, percent-encoding debris, random headers (content types, signature headers
  with random values, odd Content-Length), path parameters (real number ids, wrong secrets) and
  query strings, plus bodies just under, at and just over the route's body limit (declared and
  chunked) → never a 5xx (storage is up: not even 503), and nothing stored: no message, status
  event, job, contact, conversation or media file.
* **Proven requests** — random bodies correctly proven for the number (Twilio's signature over
  the form, Meta's HMAC over the bytes, the recorder's HMAC, WPPConnect's secret URL, Meta's
  verify token for the handshake) → 200 or 400 (413 past the body limit), never a 5xx; rows only
  with a 200, and only for message ids the body carried, on the number it was proven for.

Bounded: 100 unproven examples per route and 75 proven per proven route, derandomized and without
an example database, so CI runs the same bodies every time. Each test reports one line with its
counts per route (tests/reliability.py: the terminal summary's "reliability suite" section).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from core.app import create_app
from core.runtime import Runtime
from core.storage.models import Message
from core.storage.sql import query
from core.webhooks import WEBHOOK_PREFIX
from plugins.meta.parse import STATUS_MAP as META_STATUSES
from plugins.meta.signature import sign as meta_sign
from plugins.twilio.parse import STATUS_MAP as TWILIO_STATUSES
from plugins.twilio.signature import expected_signature
from tests.fake_wppconnect import FIXTURES as WPP_FIXTURES
from tests.helpers import SECRET, CheckedClient, runtime_for, write_config
from tests.recording_provider import sign as recorder_sign
from tests.reliability import (
    KITS, META_SECRET, META_VERIFY, PUBLIC, TWILIO_FIXTURES, TWILIO_PHONE, TWILIO_TOKEN, WPP_SECRET, Stopwatch,
    app_in_thread, backend_of, report,
)

MAX_BODY = 4096  # `[server] max_body_bytes` here: "just over the limit" stays cheap
UNPROVEN_EXAMPLES = 100
PROVEN_EXAMPLES = 75
NUMBER_IDS = [kit.number_id for kit in KITS.values()]
FUZZ_SETTINGS = settings(
    deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# --------------------------------------------------------------------------- the app


def fuzz_config(tmp_path: Path, database_url: str) -> Path:
    """Every provider enabled, one number each; no workflow, no queue workers (nothing to run)."""
    numbers = [kit.number("http://127.0.0.1:9") for kit in KITS.values()]
    extra = KITS["wppconnect"].extra + "[plugins.meta]\nmark_read = false\n"
    config = write_config(tmp_path, database_url, enabled=list(KITS), numbers=numbers, extra=extra)
    config.write_text(config.read_text().replace("[server]\n", f"[server]\nmax_body_bytes = {MAX_BODY}\n", 1))
    return config


def fuzz_runtime(config: Path) -> Runtime:
    runtime = runtime_for(config, **{name: kit.plugin for name, kit in KITS.items() if name != "recorder"})
    # A request for an unknown number refreshes the registry from the database first, at most
    # every 0.1 s (a flood of them must not flood the database). Every such request still
    # refreshes here; only the wait between them, which would make a one-at-a-time fuzzer crawl,
    # is gone.
    runtime.host.api_numbers.MIN_SPACING_SECONDS = 0.0
    return runtime


@dataclass(frozen=True)
class FuzzedRoute:
    """One route the app serves under /webhooks/whatsapp/, with one of its methods."""

    provider: str
    name: str
    method: str
    path: str  # Starlette's template, e.g. /webhooks/whatsapp/wppconnect/{number_id}/{secret}
    params: tuple[str, ...]
    limit: int  # the body limit that route enforces

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, values: dict[str, str], query_string: str = "") -> str:
        path = self.path
        for name in self.params:
            path = path.replace("{" + name + "}", quote(values[name], safe=""))
        return f"{path}?{query_string}" if query_string else path


def webhook_endpoints(runtime: Runtime) -> list[FuzzedRoute]:
    """Read from the app's routing table, not from a list kept here."""
    found = []
    for route in create_app(runtime, run_workers=False).routes:
        if not (isinstance(route, Route) and route.path.startswith(WEBHOOK_PREFIX + "/")):
            continue
        endpoint = route.endpoint.__self__  # core.webhooks.WebhookEndpoint
        limit = max(runtime.settings.server.max_body_bytes, endpoint.route.max_body_bytes or 0)
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            found.append(FuzzedRoute(endpoint.provider.name, endpoint.route.name, method, route.path,
                                         tuple(route.param_convertors), limit))
    return found


STORED = ("SELECT (SELECT COUNT(*) FROM hookline_message) AS messages, (SELECT COUNT(*) FROM hookline_status_event) AS statuses,"
          " (SELECT COUNT(*) FROM hookline_job) AS jobs, (SELECT COUNT(*) FROM hookline_contact) AS contacts,"
          " (SELECT COUNT(*) FROM hookline_conversation) AS conversations")
MARKS = ("SELECT (SELECT COALESCE(MAX(id), 0) FROM hookline_message) AS messages,"
         " (SELECT COALESCE(MAX(id), 0) FROM hookline_status_event) AS statuses,"
         " (SELECT COALESCE(MAX(id), 0) FROM hookline_job) AS jobs")


async def stored_rows() -> dict[str, int]:
    from tortoise.connection import get_connection

    return dict((await query(get_connection("default"), STORED, []))[0])


async def marks() -> dict[str, int]:
    from tortoise.connection import get_connection

    return dict((await query(get_connection("default"), MARKS, []))[0])


async def send(client: CheckedClient, method: str, url: str, body: bytes | None, headers: dict[str, bytes], *,
               chunked: bool = False) -> int:
    content: bytes | AsyncIterator[bytes] | None = body
    if chunked and body is not None:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1024):
                yield body[start:start + 1024]
        content = chunks()
    response = await client.request(method, url, content=content, headers=headers)
    return response.status_code


# --------------------------------------------------------------------------- strategies

LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
header_text = st.text(LATIN1, max_size=80)
text = st.text(max_size=40)  # any code point but surrogates: NUL, RTL marks, emoji, …
long_text = st.text(min_size=250, max_size=300)  # around the columns' 255 characters
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)


json_values = st.recursive(leaves, containers, max_leaves=12)
identifier = st.text(min_size=1, max_size=24) | long_text | json_values
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
                 "text/plain", "multipart/form-data; boundary=x", "application/octet-stream", "application/json; charset=latin-1"]
BROKEN_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"]
PERCENT = ["%", "%zz", "%e2%82", "%00", "%ff", "%C3%28", "=", "&", "+", "a", "%2B", "%%", "&&=="]


def dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def json_bytes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.builds(dumps, values, st.booleans())


def form_bytes(forms: st.SearchStrategy[dict[str, list[str]]]) -> st.SearchStrategy[bytes]:
    return forms.map(lambda form: urlencode([(k, v) for k, vs in form.items() for v in vs]).encode())


def fixture_form(name: str) -> dict[str, list[str]]:
    return parse_qs((TWILIO_FIXTURES / name).read_text().strip(), keep_blank_values=True)


TWILIO_FORMS = [fixture_form(name) for name in ("inbound_text.form", "inbound_media.form", "status_delivered.form", "status_failed.form")]
TWILIO_KEYS = sorted({key for form in TWILIO_FORMS for key in form} | {"MediaUrl1", "MediaContentType0", "ErrorCode", "ErrorMessage",
                                                                         "ButtonPayload", "Latitude", "Longitude", "OriginalRepliedMessageSid"})
TWILIO_VALUES = st.sampled_from(["0", "1", "2", "-1", "99999999999999999999", "whatsapp:", "whatsapp:+1", f"whatsapp:{TWILIO_PHONE}",
                                 "https://api.twilio.com/x", *TWILIO_STATUSES]) | text | long_text


def twilio_forms(ours: str | None) -> st.SearchStrategy[dict[str, list[str]]]:
    """A fixture form with fields changed, added and removed; `ours` ("To", "From"): that field
    names our number, as Twilio's own requests do."""
    def build(base: dict[str, list[str]], sid: str | None, changes: dict[str, list[str]], removed: set[str],
              pin: bool) -> dict[str, list[str]]:
        form = {**base, **({"MessageSid": [sid], "SmsSid": [sid]} if sid is not None else {})}
        form = {key: value for key, value in {**form, **changes}.items() if key not in removed}
        if ours and pin:
            form[ours] = [f"whatsapp:{TWILIO_PHONE}"]
        return form

    keys = st.sampled_from(TWILIO_KEYS) | text
    sids = st.none() | st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda h: "SM" + h) | st.text(min_size=1, max_size=40) | long_text
    return st.builds(build, st.sampled_from(TWILIO_FORMS), sids,
                     st.dictionaries(keys, st.lists(TWILIO_VALUES, min_size=1, max_size=2), max_size=4),
                     st.sets(st.sampled_from(TWILIO_KEYS), max_size=3), st.booleans() if ours is None else st.just(True))


def recorder_payloads() -> st.SearchStrategy[Any]:
    media = st.fixed_dictionaries({}, optional={
        "url": text, "b64": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | text,
        "content_type": st.sampled_from(["image/png", "application/pdf", ""]) | text, "filename": text})
    message = st.fixed_dictionaries({"id": identifier, "from": st.sampled_from(["+15550100123"]) | text | long_text}, optional={
        "text": text | json_values, "name": text | long_text | st.none(), "media": st.lists(media, max_size=2) | json_values}) \
        | st.fixed_dictionaries({}, optional={"id": identifier, "from": text, "text": text})
    status = st.fixed_dictionaries({"id": identifier, "status": st.sampled_from(["sent", "read", "failed"]) | text},
                                   optional={"error_code": text | json_values, "error_text": text})
    return st.fixed_dictionaries({}, optional={"messages": st.lists(message, max_size=3), "statuses": st.lists(status, max_size=3)})


def meta_payloads() -> st.SearchStrategy[Any]:
    kinds = st.sampled_from(["text", "image", "audio", "video", "document", "sticker", "location", "contacts", "interactive",
                             "button", "reaction", "unsupported", "order", "system"]) | text
    message = st.fixed_dictionaries(
        {"from": st.sampled_from(["15550100123"]) | text, "id": identifier, "type": kinds},
        optional={"timestamp": st.sampled_from(["1767225600", "0", "-1", "99999999999999"]) | text | st.integers(),
                  "text": st.fixed_dictionaries({}, optional={"body": text | long_text | json_values}),
                  "image": st.fixed_dictionaries({}, optional={"id": text, "mime_type": text, "caption": text, "sha256": text}),
                  "context": st.fixed_dictionaries({}, optional={"id": identifier, "from": text}),
                  "interactive": json_values, "button": json_values, "reaction": json_values, "location": json_values,
                  "errors": json_values})
    error = st.fixed_dictionaries({}, optional={"code": st.integers() | text, "title": text, "message": text,
                                                "error_data": st.fixed_dictionaries({}, optional={"details": text})})
    status = st.fixed_dictionaries(
        {"id": identifier, "status": st.sampled_from(list(META_STATUSES)) | text},
        optional={"timestamp": st.sampled_from(["1767225700"]) | text | st.integers(), "recipient_id": text,
                  "errors": st.lists(error, max_size=2) | json_values, "conversation": json_values, "pricing": json_values})
    contact = st.fixed_dictionaries({}, optional={"wa_id": text, "profile": st.fixed_dictionaries({}, optional={"name": text | long_text})})
    value = st.fixed_dictionaries(
        {"messaging_product": st.just("whatsapp") | text,
         "metadata": st.fixed_dictionaries({"phone_number_id": st.just(KITS["meta"].number("")["settings"]["phone_number_id"]) | text},
                                           optional={"display_phone_number": text})},
        optional={"contacts": st.lists(contact, max_size=2) | json_values, "messages": st.lists(message, max_size=3) | json_values,
                  "statuses": st.lists(status, max_size=3) | json_values, "errors": json_values})
    change = st.fixed_dictionaries({"field": st.sampled_from(["messages", "account_update", "message_template_status_update"]) | text,
                                    "value": value | json_values})
    entry = st.fixed_dictionaries({}, optional={"id": text, "changes": st.lists(change, max_size=3) | json_values})
    return st.fixed_dictionaries({"object": st.just("whatsapp_business_account") | text, "entry": st.lists(entry, max_size=2)})


WPP_BASES = [json.loads((WPP_FIXTURES / name).read_text()) for name in ("onmessage_text.json", "onmessage_image.json", "onack.json")]
WPP_BASES += [{"event": "status-find", "session": "acme", "status": "inChat"}, {"event": "qrcode", "session": "acme", "qrcode": "x"}]
WPP_KEYS = sorted({key for base in WPP_BASES for key in base})
WPP_EVENTS = ["onmessage", "unreadmessages", "onack", "status-find", "qrcode", "phoneCode", "closesession", "logoutsession",
              "onpresencechanged", "onreactionmessage", "onrevokedmessage", "incomingcall"]


def wpp_payloads() -> st.SearchStrategy[Any]:
    def build(base: dict[str, Any], changes: dict[str, Any], removed: set[str]) -> dict[str, Any]:
        return {key: value for key, value in {**base, **changes}.items() if key not in removed}

    values = json_values | st.sampled_from(WPP_EVENTS) | st.sampled_from([True, False, 0, 1, -1, 4, "acme", "5511900000001@c.us",
                                                                          "5511900000001@lid", "123@g.us"])
    keys = st.sampled_from(WPP_KEYS) | text
    ids = st.builds(lambda chat, short: {"id": f"false_{chat}_{short}"}, st.sampled_from(["5511900000001@c.us", "5511900000002@c.us"]),
                    st.text(min_size=1, max_size=30)) | st.just({})
    events = st.builds(lambda base, fresh, changes, removed: build({**base, **fresh}, changes, removed), st.sampled_from(WPP_BASES), ids,
                       st.dictionaries(keys, values, max_size=3), st.sets(st.sampled_from(WPP_KEYS), max_size=2))
    return events


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes no provider sends: binary, broken UTF-8, percent debris, deep nesting."""
    broken = st.builds(lambda a, bad, b: a.encode() + bad + b.encode(), text, st.sampled_from(BROKEN_UTF8), text)
    percent = st.lists(st.sampled_from(PERCENT) | text, max_size=20).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))
    nested = st.builds(lambda depth, pair: (pair[0] * depth + pair[1] * depth).encode(), st.integers(1, 5000),
                       st.sampled_from([("[", "]"), ('{"a":[', "]}"), ('{"messages":[{"id":', "}]}")]))
    return st.binary(max_size=512) | broken | percent | nested


def shaped_body(endpoint: "FuzzedRoute") -> st.SearchStrategy[bytes]:
    """Bodies shaped like what the route's provider sends (a provider this file does not know
    gets the others' shapes)."""
    if endpoint.provider == "twilio":
        return form_bytes(twilio_forms("From" if endpoint.name == "status" else "To"))
    shapes = {"recorder": recorder_payloads, "meta": meta_payloads, "wppconnect": wpp_payloads}
    if endpoint.provider in shapes:
        return json_bytes(shapes[endpoint.provider]() | json_values)
    return any_body()


def any_body() -> st.SearchStrategy[bytes]:
    return (json_bytes(recorder_payloads() | meta_payloads() | wpp_payloads() | json_values) | form_bytes(twilio_forms("To"))
            | form_bytes(twilio_forms("From")) | form_bytes(twilio_forms(None)) | raw_bodies() | st.just(b""))


def headers_for(provider: str) -> st.SearchStrategy[dict[str, str]]:
    """Random headers, the signature headers among them with random (so wrong) values; the
    recorder's number header nearly always names a number, so most requests reach the proof."""
    number = st.one_of(st.just("n1"), st.sampled_from(NUMBER_IDS), header_text)
    optional = {
        "Content-Type": st.sampled_from(CONTENT_TYPES) | header_text,
        "X-Test-Signature": hex64 | header_text,
        "X-Twilio-Signature": st.binary(min_size=20, max_size=32).map(lambda b: base64.b64encode(b).decode()) | header_text,
        "X-Twilio-Webhooks-Signature-Settings": st.sampled_from(["algorithm=HMAC_SHA256", "key=k1,algorithm=HMAC_SHA1", "algorithm="]) | header_text,
        "X-Hub-Signature-256": hex64.map(lambda h: "sha256=" + h) | st.sampled_from(["sha256=", "sha1=abc"]) | header_text,
        "Content-Encoding": st.sampled_from(["gzip", "identity", "br"]),
        "Content-Length": st.sampled_from(["0", "-1", "abc", "1e3", "99999999999999999999", " 12", "\u00b2"]),
    }
    if provider == "recorder":
        return st.fixed_dictionaries({"X-Test-Number": number}, optional=optional)
    return st.fixed_dictionaries({}, optional={"X-Test-Number": number, **optional})


def path_values(endpoint: FuzzedRoute) -> st.SearchStrategy[dict[str, str]]:
    """Mostly the provider's own number id (so requests get as far as the proof), and secrets
    that are all wrong."""
    segment = st.text(st.characters(blacklist_characters="/", blacklist_categories=["Cs"]), min_size=1, max_size=60)
    wrong_secrets = st.sampled_from([WPP_SECRET[:-1], WPP_SECRET + "x", WPP_SECRET.upper(), "x", "a/b", ".."]) | segment
    own = KITS[endpoint.provider].number_id if endpoint.provider in KITS else "n1"
    number_ids = st.one_of(st.just(own), st.sampled_from(NUMBER_IDS), segment)
    choices = {"number_id": number_ids, "secret": wrong_secrets}
    return st.fixed_dictionaries({name: choices.get(name, st.text(min_size=1, max_size=30)) for name in endpoint.params})


def queries() -> st.SearchStrategy[str]:
    hub = st.fixed_dictionaries({}, optional={
        "hub.mode": st.sampled_from(["subscribe", "unsubscribe", ""]) | text,
        "hub.verify_token": st.sampled_from([META_VERIFY.upper(), META_VERIFY[:-1], META_VERIFY + " ", ""]) | text,
        "hub.challenge": text})
    return st.just("") | hub.map(urlencode) | st.lists(st.sampled_from(PERCENT) | text, max_size=8).map(
        lambda parts: quote("".join(parts), safe="%=&+"))


def latin1(headers: dict[str, str]) -> dict[str, bytes]:
    return {name: value.encode("latin-1") for name, value in headers.items()}


# --------------------------------------------------------------------------- unproven


def test_unproven_requests_to_every_webhook_route_never_fail_and_never_store(tmp_path, database_url):
    clock = Stopwatch()
    runtime = fuzz_runtime(fuzz_config(tmp_path, database_url))
    endpoints = webhook_endpoints(runtime)
    assert {endpoint.provider for endpoint in endpoints} == set(KITS), endpoints
    tallies: dict[str, Counter[int]] = {}
    with app_in_thread(runtime, run_workers=False) as (portal, client):
        for endpoint in endpoints:
            tally = tallies.setdefault(endpoint.label, Counter())

            @settings(FUZZ_SETTINGS, max_examples=UNPROVEN_EXAMPLES)
            @given(values=path_values(endpoint), query_string=queries(), body=shaped_body(endpoint) | any_body(),
                   headers=headers_for(endpoint.provider))
            def never_fails_never_stores(values: dict[str, str], query_string: str, body: bytes, headers: dict[str, str]) -> None:
                status = portal.call(send, client, endpoint.method, endpoint.url(values, query_string), body, latin1(headers))
                tally[status] += 1
                assert status < 500, (endpoint.label, status)
                assert portal.call(stored_rows) == dict.fromkeys(("messages", "statuses", "jobs", "contacts", "conversations"), 0)

            never_fails_never_stores()

            # Sizes around the route's limit, declared and chunked: signed by nobody.
            own = KITS[endpoint.provider].number_id if endpoint.provider in KITS else "n1"
            values = {name: {"number_id": own, "secret": "wrong"}.get(name, "x") for name in endpoint.params}
            headers = latin1({"X-Test-Number": "n1", "Content-Type": "application/json"})
            for size in (endpoint.limit - 1, endpoint.limit, endpoint.limit + 1):
                for chunked in (False, True):
                    status = portal.call(lambda: send(client, endpoint.method, endpoint.url(values), b"[" + b" " * (size - 2) + b"]",
                                                      headers, chunked=chunked))
                    tally[status] += 1
                    assert status == 413 if size > endpoint.limit else status in (400, 403, 404), (endpoint.label, size, status)
        assert portal.call(stored_rows) == dict.fromkeys(("messages", "statuses", "jobs", "contacts", "conversations"), 0)
    media = tmp_path / "data" / "media"
    assert not (media.exists() and any(media.iterdir())), "an unproven request wrote a media file"
    total = sum(sum(tally.values()) for tally in tallies.values())
    per_route = "; ".join(f"{label} {sum(t.values())} ({_statuses(t)})" for label, t in tallies.items())
    report(f"fuzz unproven/{backend_of(database_url)}: {total} requests over {len(tallies)} routes, 0 server errors, 0 rows, "
           f"0 media files — {per_route} ({clock})")


def _statuses(tally: Counter[int]) -> str:
    return " ".join(f"{status}×{count}" for status, count in sorted(tally.items()))


# --------------------------------------------------------------------------- proven


@dataclass(frozen=True)
class Proven:
    """How one provider proves a request: which route, what body, the proof."""

    provider: str
    route: str  # WebhookRoute name
    bodies: st.SearchStrategy[Any]
    prove: Callable[[FuzzedRoute, Any], tuple[str, bytes, dict[str, str]]]  # → (url, body, headers)


def _recorder(endpoint: FuzzedRoute, payload: Any) -> tuple[str, bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else dumps(payload, True)
    return endpoint.url({}), body, {"X-Test-Number": "n1", "X-Test-Signature": recorder_sign(SECRET, body),
                                    "Content-Type": "application/json"}


def _twilio(endpoint: FuzzedRoute, form: Any) -> tuple[str, bytes, dict[str, str]]:
    body = urlencode([(k, v) for k, vs in form.items() for v in vs]).encode()
    signed = parse_qs(body.decode(), keep_blank_values=True)  # the form exactly as the server reads it
    url = endpoint.url({})
    return url, body, {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": expected_signature(PUBLIC + url, signed, TWILIO_TOKEN)}


def _meta(endpoint: FuzzedRoute, payload: Any) -> tuple[str, bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else dumps(payload, True).replace(b"/", b"\\/")
    return endpoint.url({}), body, {"Content-Type": "application/json", "X-Hub-Signature-256": meta_sign(body, META_SECRET)}


def _meta_handshake(endpoint: FuzzedRoute, challenge: Any) -> tuple[str, bytes, dict[str, str]]:
    query_string = urlencode({"hub.mode": "subscribe", "hub.verify_token": META_VERIFY, "hub.challenge": challenge})
    return endpoint.url({}, query_string), b"", {}


def _wppconnect(endpoint: FuzzedRoute, payload: Any) -> tuple[str, bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else dumps(payload, False)
    return endpoint.url({"number_id": "wpp", "secret": WPP_SECRET}), body, {"Content-Type": "application/json"}


def strings_in(body: bytes) -> set[str]:
    """Every string a body carries (JSON keys and values, or form values): where ids come from."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                found.add(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    try:
        walk(json.loads(body))
    except (ValueError, RecursionError):
        pass
    try:
        for values in parse_qs(body.decode(), keep_blank_values=True).values():
            found.update(values)
    except UnicodeDecodeError:
        pass
    return found


def mostly(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three in five shaped like the provider's own bodies, the rest any JSON or raw bytes."""
    return st.one_of(shaped, shaped, shaped, json_values, raw_bodies())


PROVEN = [
    Proven("recorder", "inbound", mostly(recorder_payloads()), _recorder),
    Proven("recorder", "status", mostly(recorder_payloads()), _recorder),
    Proven("twilio", "inbound", twilio_forms("To"), _twilio),
    Proven("twilio", "status", twilio_forms("From"), _twilio),
    Proven("meta", "inbound", mostly(meta_payloads()), _meta),
    Proven("meta", "handshake", text | long_text, _meta_handshake),
    Proven("wppconnect", "inbound", mostly(wpp_payloads()), _wppconnect),
]


async def new_rows(before: dict[str, int]) -> tuple[list[tuple[str, str]], int, int]:
    """Messages (external id, number id), status events and jobs stored after `before`."""
    messages = await Message.filter(id__gt=before["messages"]).prefetch_related("conversation")
    after = await marks()
    return ([(m.external_id, m.conversation.number_id) for m in messages],
            after["statuses"] - before["statuses"], after["jobs"] - before["jobs"])


def test_proven_random_requests_are_200_or_400_and_store_only_what_they_carry(tmp_path, database_url):
    clock = Stopwatch()
    runtime = fuzz_runtime(fuzz_config(tmp_path, database_url))
    endpoints = {(endpoint.provider, endpoint.name): endpoint for endpoint in webhook_endpoints(runtime)}
    tallies: dict[str, Counter[int]] = {}
    kept = Counter()
    with app_in_thread(runtime, run_workers=False) as (portal, client):
        for proven in PROVEN:
            endpoint = endpoints[(proven.provider, proven.route)]
            tally = tallies.setdefault(endpoint.label, Counter())

            @settings(FUZZ_SETTINGS, max_examples=PROVEN_EXAMPLES)
            @given(payload=proven.bodies)
            def answered_and_stored_as_carried(payload: Any) -> None:
                url, body, headers = proven.prove(endpoint, payload)
                before = portal.call(marks)
                status = portal.call(send, client, endpoint.method, url, body, latin1(headers))
                tally[status] += 1
                allowed = (200, 400) if len(body) <= endpoint.limit else (413,)
                assert status in allowed, (endpoint.label, status, body[:300])
                messages, statuses, jobs = portal.call(new_rows, before)
                if status != 200:
                    assert (messages, statuses, jobs) == ([], 0, 0), (endpoint.label, status)
                    return
                carried = strings_in(body)
                number_id = KITS[proven.provider].number_id
                for external_id, number in messages:
                    assert number == number_id and any(external_id in value for value in carried), (external_id, body[:300])
                kept["messages"] += len(messages)
                kept["statuses"] += statuses

            answered_and_stored_as_carried()
    total = sum(sum(tally.values()) for tally in tallies.values())
    per_route = "; ".join(f"{label} {sum(t.values())} ({_statuses(t)})" for label, t in tallies.items())
    report(f"fuzz proven/{backend_of(database_url)}: {total} proven random requests over {len(tallies)} routes, 0 server errors; "
           f"kept {kept['messages']} messages and {kept['statuses']} status events, each carried by a 200 — {per_route} ({clock})")
