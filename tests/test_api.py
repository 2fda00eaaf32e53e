"""The REST API: every endpoint for success, bad input (422 naming the field), no auth (401) and
the wrong role (403); secrets never in a response body or a log line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from core.storage.models import Message, NumberRow
from tests.api_helpers import api_app
from tests.helpers import SECRET, eventually, inbound_body, post_signed, runtime_for

pytestmark = [pytest.mark.anyio, pytest.mark.storage]

API_SECRET = "api-number-secret-0123456789"
TWILIO_TOKEN = "twilio-auth-token-feedface"


def _field(response) -> str | None:
    assert response.status_code == 422, response.text
    return response.json()["error"]["details"][0]["field"]


async def test_numbers_crud_with_encrypted_write_only_secrets(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with api_app(tmp_path, database_url) as api:
        client, admin, agent = api.client, api.admin, api.agent
        host = api.runtime.host

        async def call(method, url, **kwargs):
            response = await client.request(method, url, **kwargs)
            bodies.append(response.text)
            return response

        new = {"id": "api1", "provider": "recorder", "phone": "+15550000009", "display_name": "API",
               "settings": {"secret": API_SECRET, "api_url": "http://127.0.0.1:9"}}
        assert (await call("POST", "/api/whatsapp-numbers", json=new)).status_code == 401
        assert (await call("POST", "/api/whatsapp-numbers", json=new, headers=agent)).status_code == 403
        assert _field(await call("POST", "/api/whatsapp-numbers", json={**new, "settings": {}}, headers=admin)) == "settings.secret"
        assert _field(await call("POST", "/api/whatsapp-numbers", json={**new, "id": "bad id"}, headers=admin)) == "id"
        assert _field(await call("POST", "/api/whatsapp-numbers", json={**new, "provider": "nope"}, headers=admin)) == "provider"
        created = await call("POST", "/api/whatsapp-numbers", json=new, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["settings"]["secret"] == "********" and created.json()["active"] is True
        assert (await call("POST", "/api/whatsapp-numbers", json=new, headers=admin)).status_code == 409

        row = await NumberRow.get(id="api1")
        assert API_SECRET not in json.dumps(row.public_settings) + json.dumps(row.sealed_settings)
        assert set(row.sealed_settings) == {"secret"}
        # live at once: a webhook signed with the new number's secret is accepted
        assert host.number("api1").settings.secret.get_secret_value() == API_SECRET
        body = inbound_body(("api-in-1", "+15550100123", "hola"))
        from tests.recording_provider import signed_headers

        accepted = await client.post("/webhooks/whatsapp/recorder", content=body, headers=signed_headers("api1", API_SECRET, body))
        assert accepted.status_code == 200

        listed = await call("GET", "/api/whatsapp-numbers", headers=agent)
        assert [n["id"] for n in listed.json()["items"]] == ["api1", "n1"]
        config_number = next(n for n in listed.json()["items"] if n["id"] == "n1")
        assert config_number["managed_by_config"] and config_number["settings"]["secret"] == "********"
        assert (await call("GET", "/api/whatsapp-numbers/api1", headers=agent)).json()["phone"] == "+15550000009"
        assert (await call("GET", "/api/whatsapp-numbers/nope", headers=agent)).status_code == 404

        # PATCH: a masked secret keeps its value; config numbers are read-only
        patched = await call("PATCH", "/api/whatsapp-numbers/api1", headers=admin,
                             json={"display_name": "Renamed", "settings": {"secret": "********", "api_url": "http://127.0.0.1:8"}})
        assert patched.status_code == 200 and patched.json()["display_name"] == "Renamed"
        assert host.number("api1").settings.secret.get_secret_value() == API_SECRET
        assert host.number("api1").settings.api_url == "http://127.0.0.1:8"
        assert (await call("PATCH", "/api/whatsapp-numbers/api1", headers=agent, json={})).status_code == 403
        assert _field(await call("PATCH", "/api/whatsapp-numbers/api1", headers=admin, json={"phone": ""})) == "phone"
        read_only = await call("PATCH", "/api/whatsapp-numbers/n1", headers=admin, json={"display_name": "x"})
        assert read_only.status_code == 409 and read_only.json()["error"]["code"] == "managed_by_config"

        # configure: new credentials, validated by the provider's schema
        configure = "/api/whatsapp-numbers/api1/recorder/configure"
        assert _field(await call("POST", configure, headers=admin, json={"settings": {"api_url": 5}})) == "settings.api_url"
        assert (await call("POST", configure, headers=agent, json={"settings": {}})).status_code == 403
        assert (await call("POST", configure, json={"settings": {}})).status_code == 401
        assert (await call("POST", "/api/whatsapp-numbers/api1/nope/configure", headers=admin, json={"settings": {}})).status_code == 404
        configured = await call("POST", configure, headers=admin, json={"settings": {"secret": "rotated-" + API_SECRET}})
        assert configured.status_code == 200, configured.text
        assert host.number("api1").settings.secret.get_secret_value() == "rotated-" + API_SECRET
        assert (await call("POST", "/api/whatsapp-numbers/n1/recorder/configure", headers=admin, json={"settings": {}})).status_code == 409

        qr = await call("GET", "/api/whatsapp-numbers/api1/qrcode", headers=admin)
        assert qr.status_code == 404 and qr.json()["error"]["code"] == "no_qrcode"

        # delete: refused while it has conversations; allowed for a fresh one
        assert (await call("DELETE", "/api/whatsapp-numbers/api1", headers=admin)).status_code == 409
        await call("POST", "/api/whatsapp-numbers", json={**new, "id": "api2"}, headers=admin)
        assert (await call("DELETE", "/api/whatsapp-numbers/api2", headers=agent)).status_code == 403
        assert (await call("DELETE", "/api/whatsapp-numbers/api2", headers=admin)).status_code == 204
        assert "api2" not in host.numbers
        assert (await call("DELETE", "/api/whatsapp-numbers/n1", headers=admin)).status_code == 409

    text = "\n".join(bodies) + caplog.text
    for secret in (API_SECRET, SECRET):
        assert secret not in text


async def test_api_numbers_are_loaded_at_start(tmp_path, database_url):
    new = {"id": "api1", "provider": "recorder", "phone": "+15550000009", "settings": {"secret": API_SECRET, "api_url": "http://127.0.0.1:9"}}
    async with api_app(tmp_path, database_url) as api:
        assert (await api.client.post("/api/whatsapp-numbers", json=new, headers=api.admin)).status_code == 201
    from tests.helpers import runtime_for, started

    runtime = runtime_for(tmp_path / "hookline.toml")
    assert "api1" not in runtime.host.numbers
    async with started(runtime):
        assert runtime.host.number("api1").settings.secret.get_secret_value() == API_SECRET


async def test_providers_list_their_settings_schema(tmp_path, database_url):
    async with api_app(tmp_path, database_url) as api:
        assert (await api.client.get("/api/providers")).status_code == 401
        response = await api.client.get("/api/providers", headers=api.agent)
        [recorder] = response.json()["items"]
        assert recorder["name"] == "recorder"
        secret = recorder["settings_schema"]["properties"]["secret"]
        assert secret.get("writeOnly") is True and secret.get("format") == "password"


async def test_conversations_messages_transfer_and_status(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with api_app(tmp_path, database_url, queue={"concurrency": 1}) as api:
        client, admin, agent = api.client, api.admin, api.agent

        async def call(method, url, **kwargs):
            response = await client.request(method, url, **kwargs)
            bodies.append(response.text)
            return response

        assert (await call("GET", "/api/conversations")).status_code == 401
        assert (await call("POST", "/api/conversations", json={})).status_code == 401
        assert _field(await call("POST", "/api/conversations", headers=agent, json={"number_id": "n1"})) == "address"
        assert _field(await call("POST", "/api/conversations", headers=agent, json={"number_id": "zz", "address": "+1555"})) == "number_id"
        started = await call("POST", "/api/conversations", headers=agent, json={"number_id": "n1", "address": "+15550100123", "name": "Ana"})
        assert started.status_code == 201
        conversation = started.json()
        assert conversation["contact"]["address"] == "+15550100123" and conversation["owner"] == "human"
        cid = conversation["id"]

        assert (await post_signed(client, inbound_body(("in-1", "+15550100123", "hola"), ("in-2", "+15550100123", "otra")))).status_code == 200
        listed = await call("GET", "/api/conversations?q=ana", headers=agent)
        assert [c["id"] for c in listed.json()["items"]] == [cid]
        assert _field(await call("GET", "/api/conversations?limit=0", headers=agent)) == "limit"
        assert _field(await call("GET", "/api/conversations?owner=robot", headers=agent)) == "owner"
        # A single-valued parameter given twice is refused, not silently read as its last value.
        assert _field(await call("GET", "/api/conversations?q=ana&q=bob", headers=agent)) == "q"

        messages = f"/api/conversations/{cid}/messages"
        assert (await call("POST", messages, json={"text": "x"})).status_code == 401
        assert _field(await call("POST", messages, headers=agent, json={"text": ""})) == "text"
        sent = await call("POST", messages, headers=agent, json={"text": "respuesta"})
        assert sent.status_code == 201 and sent.json()["status"] == "pending" and sent.json()["sender"] == "human"
        upload = await call("POST", messages, headers=agent, files={"file": ("doc.pdf", b"%PDF-1.4 test", "application/pdf")},
                            data={"caption": "el documento"})
        assert upload.status_code == 201, upload.text
        assert upload.json()["kind"] == "document" and upload.json()["media"][0]["filename"] == "doc.pdf"
        assert _field(await call("POST", messages, headers=agent, files={"other": ("a.txt", b"x", "text/plain")})) == "file"

        page = await call("GET", f"{messages}?limit=2", headers=agent)
        assert len(page.json()["items"]) == 2 and page.json()["next_before"] is not None
        rest = await call("GET", f"{messages}?limit=2&before={page.json()['next_before']}", headers=agent)
        ids = [m["id"] for m in page.json()["items"] + rest.json()["items"]]
        assert ids == sorted(ids, reverse=True) and len(ids) == 4
        assert rest.json()["next_before"] is None
        assert _field(await call("GET", f"{messages}?limit=abc", headers=agent)) == "limit"
        assert (await call("GET", "/api/conversations/999/messages", headers=agent)).status_code == 404

        transfer = f"/api/conversations/{cid}/transfer"
        assert (await call("POST", transfer, json={"to": "bot"})).status_code == 401
        assert _field(await call("POST", transfer, headers=agent, json={"to": "robot"})) == "to"
        moved = await call("POST", transfer, headers=agent, json={"to": "bot", "reason": "test"})
        assert moved.json()["changed"] is True and moved.json()["conversation"]["owner"] == "bot"
        assert (await call("POST", transfer, headers=admin, json={"to": "bot"})).json()["changed"] is False

        message_id = sent.json()["id"]
        assert (await call("GET", f"/api/messages/{message_id}")).status_code == 401
        got = await call("GET", f"/api/messages/{message_id}", headers=agent)
        assert got.status_code == 200 and got.json()["text"] == "respuesta"
        assert _field(await call("GET", f"/api/messages/{message_id}?refresh=maybe", headers=agent)) == "refresh"
        assert (await call("GET", "/api/messages/999999", headers=agent)).status_code == 404
        await eventually(lambda: Message.filter(id=message_id).exclude(external_id=None).exists())
        refreshed = await call("GET", f"/api/messages/{message_id}?refresh=true", headers=agent)
        assert refreshed.status_code in (200, 409), refreshed.text
    text = "\n".join(bodies) + caplog.text
    assert SECRET not in text


async def test_unread_counts_inbound_messages_until_an_agent_reads_the_conversation(tmp_path, database_url):
    async with api_app(tmp_path, database_url) as api:
        client, agent = api.client, api.agent
        assert (await post_signed(client, inbound_body(("u-1", "+15550100777", "hola"), ("u-2", "+15550100777", "¿hay alguien?")))).status_code == 200

        async def listed() -> dict:
            (item,) = (await client.get("/api/conversations", headers=agent)).json()["items"]
            return item
        await eventually(lambda: Message.filter(external_id="u-2").exists())
        conversation = await listed()
        assert conversation["unread"] == 2

        url = f"/api/conversations/{conversation['id']}/read"
        assert (await client.post(url)).status_code == 401
        read = await client.post(url, headers=agent)
        assert read.status_code == 200 and read.json()["unread"] == 0
        assert (await listed())["unread"] == 0
        assert (await client.post("/api/conversations/999999/read", headers=agent)).status_code == 404

        # Our own replies are never unread; the next inbound message is.
        assert (await client.post(f"/api/conversations/{conversation['id']}/messages", json={"text": "sí"}, headers=agent)).status_code == 201
        assert (await post_signed(client, inbound_body(("u-3", "+15550100777", "gracias")))).status_code == 200
        assert (await listed())["unread"] == 1


async def test_numbers_another_process_creates_changes_or_deletes_reach_this_one(tmp_path, database_url, monkeypatch):
    """`serve --workers N` and several instances: each process keeps its own registry, in step
    with the database — at once for a webhook naming an unknown number, within seconds otherwise."""
    from core.api.numbers import NewNumber, add_number
    from core.numbers import ApiNumbers, split_settings
    from tests.recording_provider import RecorderSettings, signed_headers

    monkeypatch.setattr(ApiNumbers, "REFRESH_SECONDS", 0.1)
    async with api_app(tmp_path, database_url) as api:
        here = api.runtime.host
        elsewhere = runtime_for(api.runtime.settings.path).host  # another process's host, same database

        async def deliver(secret: str, message_id: str) -> int:
            payload = inbound_body((message_id, "+15550100123", "hola"))
            answer = await api.client.post("/webhooks/whatsapp/recorder", content=payload, headers=signed_headers("far", secret, payload))
            return answer.status_code

        assert await deliver("first-secret", "far-0") == 404
        await add_number(elsewhere, NewNumber(id="far", provider="recorder", phone="+15550000077",
                                              settings={"secret": "first-secret", "api_url": "http://127.0.0.1:9"}), "test")
        assert "far" not in here.numbers
        assert await deliver("first-secret", "far-1") == 200  # looked up at once, not after a restart
        assert "far" in here.numbers

        _, sealed = split_settings(RecorderSettings(secret="rotated-secret", api_url="http://127.0.0.1:9"), elsewhere.secret_key.value)
        await NumberRow.filter(id="far").update(sealed_settings=sealed, updated_at=datetime.now(UTC))
        await eventually(lambda: here.numbers["far"].settings.secret.get_secret_value() == "rotated-secret", timeout=5)
        assert await deliver("rotated-secret", "far-2") == 200 and await deliver("first-secret", "far-3") == 403

        # Created and deleted elsewhere, never written to: it comes and goes here by itself.
        await add_number(elsewhere, NewNumber(id="brief", provider="recorder", phone="+15550000078",
                                              settings={"secret": "brief-secret", "api_url": "http://127.0.0.1:9"}), "test")
        await eventually(lambda: "brief" in here.numbers, timeout=5)
        await NumberRow.filter(id="brief").delete()
        await eventually(lambda: "brief" not in here.numbers, timeout=5)
        payload = inbound_body(("brief-1", "+15550100123", "hola"))
        gone = await api.client.post("/webhooks/whatsapp/recorder", content=payload, headers=signed_headers("brief", "brief-secret", payload))
        assert gone.status_code == 404
        assert not await Message.filter(external_id__in=["far-0", "far-3", "brief-1"]).exists()


async def test_ids_no_row_can_have_are_404_and_bounds_past_the_columns_are_422(tmp_path, database_url):
    """Ids past the BIGINT columns (SQLite: OverflowError; PostgreSQL: out of int64 range), digits
    that are not ASCII ("²".isdigit() is true, int("²") fails) and number ids no number may have
    were 500s; they name no row: 404. Query bounds past the columns are bad input: 422. Found by
    schemathesis (tests/test_reliability_openapi.py)."""
    async with api_app(tmp_path, database_url) as api:
        client, agent = api.client, api.agent
        huge = "673427405555620773888"
        for path in (f"/api/conversations/{huge}/messages", f"/api/messages/{huge}", "/api/conversations/%C2%B2/messages",
                     f"/api/messages/{2**63}", "/api/whatsapp-numbers/a%00b", "/api/whatsapp-numbers/" + "x" * 65):
            response = await client.get(path, headers=agent)
            assert response.status_code == 404, (path, response.status_code)
            assert response.json()["error"]["code"] == "not_found"
        response = await client.post(f"/api/conversations/{huge}/messages", headers=agent, json={"text": "hola"})
        assert response.status_code == 404
        conversation = (await client.post("/api/conversations", headers=agent, json={"number_id": "n1", "address": "+15550100123"})).json()
        assert _field(await client.get(f"/api/conversations/{conversation['id']}/messages", headers=agent,
                                       params={"before": huge})) == "before"
        assert _field(await client.get("/api/conversations", headers=agent, params={"offset": huge})) == "offset"
        document = (await client.get("/api/openapi.json", headers=agent)).json()
        parameters = {p["name"]: p["schema"] for p in document["paths"]["/api/messages/{message_id}"]["get"]["parameters"]}
        assert parameters["message_id"]["maximum"] == 2**63 - 1


async def test_a_value_postgresql_cannot_hold_is_422_not_500(tmp_path, database_url):
    """A NUL character in a body or a query was a 500 on PostgreSQL (which keeps none in text or
    JSON); it is bad input: 422. SQLite keeps it. Found by schemathesis
    (tests/test_reliability_openapi.py)."""
    postgres = database_url.startswith("postgres")
    async with api_app(tmp_path, database_url) as api:
        client, agent = api.client, api.agent
        created = await client.post("/api/conversations", headers=agent, json={"number_id": "n1", "address": "+1555\x000100"})
        assert created.status_code == (422 if postgres else 201), created.text
        if postgres:
            assert created.json()["error"]["code"] == "invalid"
        searched = await client.get("/api/conversations", headers=agent, params={"q": "a\x00b"})
        assert searched.status_code == (422 if postgres else 200), searched.text
        conversation = (await client.post("/api/conversations", headers=agent, json={"number_id": "n1", "address": "+15550100123"})).json()
        sent = await client.post(f"/api/conversations/{conversation['id']}/messages", headers=agent, json={"text": "a\x00b"})
        assert sent.status_code == (422 if postgres else 201), sent.text
