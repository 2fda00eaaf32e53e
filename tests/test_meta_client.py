"""The Graph API client on its own: payload builders (pure), and media download against the fake
Graph API over real HTTP — bearer token on both hops, a fresh URL when one expired, Meta's hosts
only, size limits."""

from __future__ import annotations

import pytest

from core import Interactive, Media, Number, OutboundMessage, ProviderError, Template
from plugins.meta import client as graph
from plugins.meta.schema import MetaNumberSettings
from tests.fake_meta import StoredMedia, running_fake_meta

pytestmark = pytest.mark.anyio

TOKEN = "meta-test-access-token"
PNID = "109876543210987"


def meta_number(api: str, token: str = TOKEN) -> Number:
    settings = MetaNumberSettings(phone_number_id=PNID, access_token=token, app_secret="s", verify_token="v", api_base_url=api)
    return Number("m1", "meta", "+15550100001", None, settings)


def outbound(**fields) -> OutboundMessage:
    return OutboundMessage(id=7, to=fields.pop("to", "+15550100123"), **fields)


# --------------------------------------------------------------------------- payloads


def test_recipient_is_digits_for_phones_and_recipient_for_business_scoped_ids():
    assert graph.recipient("+1 (555) 010-0123") == {"to": "15550100123"}
    assert graph.recipient("whatsapp:+15550100123") == {"to": "15550100123"}
    assert graph.recipient("US.13491208655302741918") == {"recipient": "US.13491208655302741918"}


def test_text_preview_only_with_a_link_and_reply_context():
    plain = graph.text_payload(outbound(text="hola"))
    assert plain["text"] == {"body": "hola", "preview_url": False} and "context" not in plain
    assert plain["biz_opaque_callback_data"] == "hookline:7"
    reply = graph.text_payload(outbound(text="mire https://x.example", reply_to="wamid.A"))
    assert reply["text"]["preview_url"] is True and reply["context"] == {"message_id": "wamid.A"}


@pytest.mark.parametrize(("content_type", "kind", "caption"), [
    ("image/jpeg", "image", True), ("image/webp", "sticker", False), ("video/mp4", "video", True),
    ("audio/ogg; codecs=opus", "audio", False), ("application/pdf", "document", True), (None, "document", True),
])
def test_media_kinds_and_captions(content_type, kind, caption):
    payload = graph.media_payload(outbound(text="cap", media=Media(content_type=content_type, filename="f.bin")), media_id="99")
    assert payload["type"] == kind
    assert payload[kind]["id"] == "99"
    assert ("caption" in payload[kind]) is caption
    assert ("filename" in payload[kind]) is (kind == "document")


def test_template_named_parameters_and_given_components():
    named = graph.template_payload(outbound(template=Template("order_update", "en_US", variables={"order_id": "1234", "name": "Ana"})))
    assert named["template"]["components"] == [{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "order_id", "text": "1234"}, {"type": "text", "parameter_name": "name", "text": "Ana"}]}]
    ordered = graph.template_payload(outbound(template=Template("t", "en", variables={"10": "b", "2": "a"})))
    assert [p["text"] for p in ordered["template"]["components"][0]["parameters"]] == ["a", "b"]
    components = [{"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.example/i.png"}}]},
                  {"type": "body", "parameters": [{"type": "text", "text": "as given"}]}]
    given = graph.template_payload(outbound(template=Template("t", "en", variables={"1": "ignored"}, components=components)))
    assert given["template"]["components"] == components
    bare = graph.template_payload(outbound(template=Template("hello_world", "en_US")))
    assert bare["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    with pytest.raises(ProviderError) as missing:
        graph.template_payload(outbound(template=Template("hello_world")))
    assert not missing.value.retryable and "language" in missing.value.message


def test_interactive_without_options_is_refused():
    with pytest.raises(ProviderError):
        graph.interactive_payload(outbound(interactive=Interactive("nothing to tap")))
    listed = graph.interactive_payload(outbound(interactive=Interactive("b", sections=[{"rows": [{"id": "1", "title": "Uno"}]}])))
    assert listed["interactive"]["action"] == {"button": "Options", "sections": [{"rows": [{"id": "1", "title": "Uno"}]}]}


def test_send_result_reads_the_id_and_pacing_status():
    assert graph.send_result({"messages": [{"id": "wamid.1"}]}).raw_status == "accepted"
    held = graph.send_result({"messages": [{"id": "wamid.2", "message_status": "held_for_quality_assessment"}]})
    assert (held.external_id, held.raw_status) == ("wamid.2", "held_for_quality_assessment")
    with pytest.raises(ProviderError) as no_id:
        graph.send_result({"messaging_product": "whatsapp"})
    assert not no_id.value.retryable  # retrying could send it twice


def test_media_hosts():
    settings = meta_number("http://127.0.0.1:8081").settings
    assert graph.media_host_allowed("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", settings)
    assert graph.media_host_allowed("https://mmg.whatsapp.net/v/t62/abc", settings)
    assert graph.media_host_allowed("http://127.0.0.1:8081/whatsapp_business/attachments/", settings)
    assert not graph.media_host_allowed("http://lookaside.fbsbx.com/x", settings)  # https only
    assert not graph.media_host_allowed("https://fbsbx.com.evil.example/x", settings)
    assert not graph.media_host_allowed("https://evil-fbsbx.com/x", settings)
    assert not graph.media_host_allowed("http://169.254.169.254/latest/meta-data", settings)
    assert not graph.media_host_allowed("http://localhost:8081/x", settings)


# --------------------------------------------------------------------------- media download over HTTP


async def test_media_id_to_url_to_bytes_with_the_bearer_token():
    client = graph.GraphClient()
    with running_fake_meta({PNID: TOKEN}) as fake:
        fake.media["4455"] = StoredMedia(b"OggS voice", "audio/ogg")
        try:
            data, content_type = await client.download(meta_number(fake.url), Media(provider_media_id="4455"), 1024)
        finally:
            await client.close()
    assert data == b"OggS voice" and content_type.startswith("audio/ogg")
    info, download = fake.requests
    assert info.path == "/v23.0/4455" and info.phone_number_id == PNID and info.token == TOKEN
    assert download.path == "/whatsapp_business/attachments/" and download.token == TOKEN  # the URL needs the token too


async def test_an_expired_media_url_is_asked_for_again():
    client = graph.GraphClient()
    with running_fake_meta({PNID: TOKEN}, expired_urls=1) as fake:
        fake.media["4455"] = StoredMedia(b"\x89PNG", "image/png")
        try:
            data, _ = await client.download(meta_number(fake.url), Media(provider_media_id="4455"), 1024)
        finally:
            await client.close()
    assert data == b"\x89PNG"
    assert [r.path for r in fake.requests] == ["/v23.0/4455", "/whatsapp_business/attachments/", "/v23.0/4455", "/whatsapp_business/attachments/"]


async def test_expired_twice_is_retryable():
    client = graph.GraphClient()
    with running_fake_meta({PNID: TOKEN}, expired_urls=2) as fake:
        fake.media["4455"] = StoredMedia(b"x", "image/png")
        try:
            with pytest.raises(ProviderError) as failed:
                await client.download(meta_number(fake.url), Media(provider_media_id="4455"), 1024)
        finally:
            await client.close()
    assert failed.value.retryable


async def test_media_urls_off_metas_hosts_are_not_fetched():
    client = graph.GraphClient()
    with running_fake_meta({PNID: TOKEN}, media_url_host="localhost") as fake:
        fake.media["4455"] = StoredMedia(b"secret", "image/png")
        try:
            with pytest.raises(ProviderError) as refused:
                await client.download(meta_number(fake.url), Media(provider_media_id="4455"), 1024)
            with pytest.raises(ProviderError):
                await client.download(meta_number(fake.url), Media(url="http://169.254.169.254/latest/meta-data"), 1024)
        finally:
            await client.close()
    assert not refused.value.retryable and "not Meta's" in refused.value.message
    assert [r.path for r in fake.requests] == ["/v23.0/4455"]  # the foreign URL was never requested


async def test_media_over_the_limit_and_unknown_ids_fail_permanently():
    client = graph.GraphClient()
    with running_fake_meta({PNID: TOKEN}) as fake:
        fake.media["big"] = StoredMedia(b"x" * 2048, "video/mp4")
        number = meta_number(fake.url)
        try:
            with pytest.raises(ProviderError) as too_big:
                await client.download(number, Media(provider_media_id="big"), 1024)
            with pytest.raises(ProviderError) as unknown:
                await client.download(number, Media(provider_media_id="nope"), 1024)
            with pytest.raises(ProviderError) as bad_token:
                await client.download(meta_number(fake.url, token="revoked"), Media(provider_media_id="big"), 4096)
        finally:
            await client.close()
    assert not too_big.value.retryable and "limit" in too_big.value.message
    assert not unknown.value.retryable and unknown.value.code == "100"
    assert bad_token.value.code == "190" and not bad_token.value.retryable
    assert len([r for r in fake.requests if r.path == "/whatsapp_business/attachments/"]) == 0


async def test_an_unreachable_graph_api_is_retryable():
    client = graph.GraphClient()
    try:
        with pytest.raises(ProviderError) as unreachable:
            await client.send(meta_number("http://127.0.0.1:9"), {"messaging_product": "whatsapp"})
    finally:
        await client.close()
    assert unreachable.value.retryable and unreachable.value.code == "transport"
