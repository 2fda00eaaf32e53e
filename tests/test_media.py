"""The media store: signed expiring URLs, media that arrives inside webhooks, and downloads."""

from __future__ import annotations

import base64
import json
import time

import pytest

from core import hookimpl
from core.keys import SecretKey
from core.media import MediaStore
from core.storage.models import Message
from tests.fake_api import running_fake_api
from tests.helpers import eventually, post_signed, runtime_for, started, write_config

PDF = b"%PDF-1.4\n% hookline test\n%%EOF\n"


def test_keys_are_content_hashes_and_urls_expire(tmp_path):
    store = MediaStore(tmp_path, SecretKey(tmp_path, {"HOOKLINE_SECRET_KEY": "k" * 32}), "https://hooks.example.com", 60)
    key = store.save(PDF, "application/pdf")
    assert key.endswith(".pdf") and store.save(PDF, "application/pdf") == key
    assert store.read(key) == PDF
    url = store.signed_url(key)
    assert url.startswith(f"https://hooks.example.com/media/{key}?expires=")
    query = dict(part.split("=") for part in url.split("?", 1)[1].split("&"))
    assert store.is_valid(key, query["expires"], query["signature"])
    assert not store.is_valid(key, query["expires"], "0" * 64)
    assert not store.is_valid(key, str(int(time.time()) - 1), store._sign(key, int(time.time()) - 1))
    assert store.path("../etc/passwd") is None


@pytest.mark.anyio
async def test_media_route_serves_only_signed_urls(tmp_path, database_url):
    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        media = runtime.host.media
        key = media.save(PDF, "application/pdf")
        path = media.signed_url(key).removeprefix(media.public_url)
        response = await client.get(path)
        assert response.status_code == 200
        assert response.content == PDF
        assert response.headers["content-type"] == "application/pdf"
        assert (await client.get(f"/media/{key}")).status_code == 404
        assert (await client.get(path.replace("signature=", "signature=0"))).status_code == 404
        # "²".isdigit() is true and int("²") fails: that was a 500 (found by the reliability fuzzers)
        assert (await client.get(f"/media/{key}", params={"expires": "\u00b2", "signature": "0"})).status_code == 404


class Seen:
    def __init__(self) -> None:
        self.media: list[list[dict]] = []

    @hookimpl
    async def on_inbound_message(self, message):
        self.media.append(message.media)


@pytest.mark.anyio
async def test_media_inside_the_webhook_is_stored_not_kept_in_the_row(tmp_path, database_url):
    seen = Seen()
    runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"]), seen)
    async with started(runtime) as client:
        item = {"b64": base64.b64encode(PDF).decode(), "content_type": "application/pdf", "filename": "deal.pdf"}
        body = json.dumps({"messages": [{"id": "b1", "from": "+1555", "media": [item]}]}).encode()
        assert (await post_signed(client, body)).status_code == 200
        message = await Message.get(external_id="b1")
        assert message.media[0]["key"].endswith(".pdf")
        assert runtime.host.media.read(message.media[0]["key"]) == PDF
        await eventually(lambda: len(seen.media) == 1)


@pytest.mark.anyio
async def test_media_urls_are_downloaded_before_workflows_run_with_retries(tmp_path, database_url):
    seen = Seen()
    with running_fake_api() as fake:
        fake.files["photo"] = (b"\x89PNG fake", "image/png")
        fake.file_failures = 2  # two 503s, then the file
        runtime = runtime_for(write_config(tmp_path, database_url, enabled=["recorder", "p0"], api_url=fake.url), seen)
        async with started(runtime) as client:
            media = [{"url": f"{fake.url}/files/photo", "content_type": "image/png"}, {"url": "http://169.254.169.254/latest"}]
            body = json.dumps({"messages": [{"id": "u1", "from": "+1555", "media": media}]}).encode()
            assert (await post_signed(client, body)).status_code == 200
            await eventually(lambda: len(seen.media) == 1)
            stored, foreign = seen.media[0]
            assert runtime.host.media.read(stored["key"]) == b"\x89PNG fake"
            assert "key" not in foreign or foreign["key"] is None
            assert "foreign host" in foreign["error"]
            assert (await Message.get(external_id="u1")).media == seen.media[0]
