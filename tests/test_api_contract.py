"""The OpenAPI document, and every endpoint it lists called four ways: without credentials (401),
with the wrong role (403), with bad input (422 naming the field) and as it should be (its 2xx).

The endpoints come from the document, so a new endpoint is in this test before anyone writes a
case for it — and the coverage check at the end fails until someone does. Every answer is also
held to the document by tests.openapi_contract (the client's response hook). The server is real
uvicorn on a port: the event stream never ends, and the WPPConnect fake calls hookline back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import plugins.wppconnect as wppconnect
import pytest
from openapi_spec_validator import validate as validate_openapi

from core.app import create_app
from core.auth.sessions import COOKIE_NAME
from core.auth.tokens import create_token, create_user
from tests.fake_wppconnect import running_fake_wppconnect
from tests.helpers import SECRET, CheckedClient, eventually, inbound_body, post_signed, runtime_for, served, write_config
from tests.openapi_contract import Contract

pytestmark = [pytest.mark.anyio, pytest.mark.storage]

PASSWORD = "correct horse battery"
API_SECRET = "contract-api-secret-5eed"
WPP_KEY = "THISISMYSECURETOKEN"


@dataclass
class Ids:
    conversation_id: int
    message_id: int

    def path(self, template: str, **overrides: Any) -> str:
        values = {"number_id": "api1", "provider": "recorder", "conversation_id": self.conversation_id,
                  "message_id": self.message_id, **overrides}
        return template.format(**values)


NEW_NUMBER = {"id": "api2", "provider": "recorder", "phone": "+15550000010",
              "settings": {"secret": API_SECRET, "api_url": "http://127.0.0.1:9"}}

# operationId → the request that should succeed: (path overrides, httpx keyword arguments).
GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "login": ({}, {"json": {"username": "ada", "password": PASSWORD}}),
    "logout": ({}, {}),
    "me": ({}, {}),
    "list_numbers": ({}, {}),
    "create_number": ({}, {"json": NEW_NUMBER}),
    "get_number": ({}, {}),
    "update_number": ({}, {"json": {"display_name": "Renamed", "settings": {"secret": "********"}}}),
    "delete_number": ({"number_id": "api2"}, {}),
    "number_qrcode": ({"number_id": "wpp"}, {}),
    "configure_number": ({}, {"json": {"settings": {"secret": "rotated-" + API_SECRET, "api_url": "http://127.0.0.1:8"}}}),
    "list_providers": ({}, {}),
    "list_conversations": ({}, {"params": {"q": "ana", "limit": 10}}),
    "create_conversation": ({}, {"json": {"number_id": "n1", "address": "+15550100999", "name": "Bea"}}),
    "list_messages": ({}, {"params": {"limit": 1}}),
    "send_message": ({}, {"json": {"text": "respuesta"}}),
    "transfer_conversation": ({}, {"json": {"to": "bot", "reason": "contract"}}),
    "read_conversation": ({}, {}),
    "get_message": ({}, {"params": {"refresh": "false"}}),
    "events": ({}, {"headers": {"Last-Event-ID": "0"}}),
    "openapi": ({}, {}),
}

# operationId → bad input and the field the 422 must name.
BAD: dict[str, list[tuple[dict[str, Any], str]]] = {
    "login": [({"json": {"username": "", "password": "x"}}, "username")],
    "create_number": [({"json": {**NEW_NUMBER, "id": "bad id"}}, "id"),
                      ({"json": {**NEW_NUMBER, "settings": {"api_url": "x"}}}, "settings.secret"),
                      ({"json": {**NEW_NUMBER, "rate_limit": {"messages": 0}}}, "rate_limit.messages")],
    "update_number": [({"json": {"phone": ""}}, "phone"),
                      ({"json": {"recipient_rate_limit": {"messages": 1, "burst": 0}}}, "recipient_rate_limit.burst")],
    "configure_number": [({"json": {"settings": {"api_url": 5}}}, "settings.api_url")],
    "list_conversations": [({"params": {"limit": 0}}, "limit"), ({"params": {"owner": "robot"}}, "owner")],
    "create_conversation": [({"json": {"number_id": "n1"}}, "address")],
    "list_messages": [({"params": {"limit": "abc"}}, "limit")],
    "send_message": [({"json": {"text": ""}}, "text"),
                     ({"files": {"other": ("a.txt", b"x", "text/plain")}}, "file")],
    "transfer_conversation": [({"json": {"to": "robot"}}, "to")],
    "get_message": [({"params": {"refresh": "maybe"}}, "refresh")],
    "events": [({"headers": {"Last-Event-ID": "abc"}}, "Last-Event-ID"), ({"params": {"last_event_id": -1}}, "last_event_id")],
}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, methods in document["paths"].items()
            for method, operation in methods.items()]


async def call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    if url.endswith("/events") and method == "GET":  # an endless stream: its status and first bytes
        async with client.stream(method, url, **kwargs) as response:
            if response.status_code == 200:
                async for chunk in response.aiter_text():
                    assert chunk.startswith("retry:")
                    break
            else:
                await response.aread()
            return response
    return await client.request(method, url, **kwargs)


async def test_every_endpoint_without_auth_with_the_wrong_role_with_bad_input_and_as_it_should_be(tmp_path, database_url):
    with running_fake_wppconnect(secret_key=WPP_KEY) as fake:
        numbers = [
            {"id": "n1", "provider": "recorder", "phone": "+15550000001", "settings": {"secret": SECRET, "api_url": "http://127.0.0.1:9"}},
            {"id": "wpp", "provider": "wppconnect", "phone": "+5511900000009",
             "settings": {"server_url": fake.url, "session": "acme", "secret_key": WPP_KEY}},
        ]
        config = write_config(tmp_path, database_url, enabled=["recorder", "wppconnect"], numbers=numbers,
                              extra="[plugins.wppconnect]\nstatus_interval_seconds = 0\nstart_sessions = false\n")
        runtime = runtime_for(config, wppconnect=wppconnect)
        async with served(runtime, proxy=fake.proxy) as base:
            document = create_app(runtime).state.openapi
            contract = Contract(document)
            bodies: list[str] = []

            async def record(response: httpx.Response) -> None:
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()
                    bodies.append(response.text)

            async with CheckedClient(contract, base_url=base, timeout=15) as client:
                client.event_hooks["response"].append(record)
                admin = {"Authorization": f"Bearer {await create_token(await create_user('ada', PASSWORD, 'admin'))}"}
                agent = {"Authorization": f"Bearer {await create_token(await create_user('alan', PASSWORD, 'agent'))}"}
                assert (await client.post("/api/whatsapp-numbers", headers=admin, json={**NEW_NUMBER, "id": "api1"})).status_code == 201
                assert (await post_signed(client, inbound_body(("c-1", "+15550100123", "hola")))).status_code == 200
                conversation = (await client.post("/api/conversations", headers=agent, json={"number_id": "n1", "address": "+15550100123", "name": "Ana"})).json()
                message = (await client.get(f"/api/conversations/{conversation['id']}/messages", headers=agent)).json()["items"][0]
                ids = Ids(conversation["id"], message["id"])
                login = await client.post("/api/auth/login", json={"username": "alan", "password": PASSWORD})
                cookie = {"Cookie": f"{COOKIE_NAME}={_cookie(login)}"}

                table = operations(document)
                for method, path, operation in table:
                    name = operation["operationId"]
                    overrides, good = GOOD[name]
                    url = ids.path(path, **overrides)
                    if operation.get("security") != []:
                        response = await call(client, method, url, **good)
                        assert response.status_code == 401, (name, response.status_code)
                    if operation.get("x-roles") == ["admin"]:
                        response = await call(client, method, url, **{**good, "headers": {**good.get("headers", {}), **agent}})
                        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden", name
                    if operation.get("security") != [] and method in ("POST", "PATCH", "PUT", "DELETE"):
                        response = await call(client, method, url, **{**good, "headers": {**good.get("headers", {}), **cookie}})
                        assert response.status_code == 403 and response.json()["error"]["code"] == "csrf", name
                    for bad, field in BAD.get(name, []):
                        response = await call(client, method, url, **{**bad, "headers": {**bad.get("headers", {}), **admin}})
                        assert response.status_code == 422, (name, response.status_code, response.text)
                        assert field in [d["field"] for d in response.json()["error"]["details"]], (name, response.text)

                for method, path, operation in table:
                    name = operation["operationId"]
                    overrides, good = GOOD[name]
                    url = ids.path(path, **overrides)
                    headers = {**good.get("headers", {}), **({} if operation.get("security") == [] else admin)}
                    if name == "number_qrcode":  # the session starts on the first call; the code follows
                        async def on_offer() -> bool:
                            return (await call(client, method, url, headers=headers)).status_code == 200
                        await eventually(on_offer)
                        continue
                    response = await call(client, method, url, **{**good, "headers": headers})
                    assert 200 <= response.status_code < 300, (name, response.status_code, response.text)

        missing = []
        for method, path, operation in table:
            name, documented = operation["operationId"], set(map(int, operation["responses"]))
            success = [status for status in documented if status < 300]
            expected = {("a success", any((name, status) in contract.seen for status in success))}
            if operation.get("security") != []:
                expected.add(("401", (name, 401) in contract.seen))
            if operation.get("x-roles") == ["admin"]:
                expected.add(("403", (name, 403) in contract.seen))
            if 422 in documented:
                expected.add(("422", (name, 422) in contract.seen))
            missing += [f"{method} {path}: {what}" for what, seen in expected if not seen]
        assert not missing, "untested: " + "; ".join(missing)
        assert set(GOOD) == {operation["operationId"] for _, _, operation in table}, "GOOD names a removed endpoint"
        text = "\n".join(bodies)
        for secret in (API_SECRET, SECRET, WPP_KEY):
            assert secret not in text


def _cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


async def test_the_document_is_valid_openapi_served_to_signed_in_users_and_lists_every_api_route(tmp_path, database_url):
    from tests.helpers import started

    runtime = runtime_for(write_config(tmp_path, database_url))
    async with started(runtime) as client:
        assert (await client.get("/api/openapi.json")).status_code == 401
        token = await create_token(await create_user("alan", PASSWORD, "agent"))
        served_document = (await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"})).json()
    validate_openapi(served_document)  # the OpenAPI 3.1 schema itself

    app = create_app(runtime)
    [mount] = [route for route in app.routes if getattr(route, "path", "") == "/api"]
    routed = {(method, "/api" + route.path) for route in mount.routes for method in route.methods if method != "HEAD"}
    documented = {(method, path) for method, path, _ in operations(served_document)}
    assert routed == documented
    assert served_document["servers"] == [{"url": "https://hookline.example.com"}]
    assert len({operation["operationId"] for _, _, operation in operations(served_document)}) == len(documented)


async def test_api_bodies_over_the_limit_are_refused_with_413_before_they_are_read(tmp_path, database_url):
    from tests.helpers import started

    config = write_config(tmp_path, database_url, extra="[media]\nmax_bytes = 100000\n")
    config.write_text(config.read_text().replace("[server]\n", "[server]\nmax_body_bytes = 2048\n", 1))
    runtime = runtime_for(config)
    async with started(runtime) as client:
        agent = {"Authorization": f"Bearer {await create_token(await create_user('alan', PASSWORD, 'agent'))}"}
        conversation = (await client.post("/api/conversations", headers=agent, json={"number_id": "n1", "address": "+15550100123"})).json()
        messages = f"/api/conversations/{conversation['id']}/messages"
        big = await client.post(messages, headers=agent, json={"text": "x" * 4000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"

        async def chunks():
            for _ in range(10):
                yield b" " * 1024

        chunked = await client.post(messages, headers={**agent, "Content-Type": "application/json"}, content=chunks())
        assert chunked.status_code == 413
        upload = await client.post(messages, headers=agent, files={"file": ("a.bin", b"x" * 50000, "application/octet-stream")})
        assert upload.status_code == 201, upload.text  # uploads may be as large as [media] max_bytes
        too_big = await client.post(messages, headers=agent, files={"file": ("a.bin", b"x" * 200000, "application/octet-stream")})
        assert too_big.status_code == 413
        assert await _messages(conversation["id"]) == 1  # only the upload that fit


async def _messages(conversation_id: int) -> int:
    from core.storage.models import Message

    return await Message.filter(conversation_id=conversation_id).count()
