"""Authentication: passwords, tokens, sessions with CSRF, login rate limit, and no anonymous route."""

from __future__ import annotations

import logging

import pytest
from starlette.routing import Mount, Route

from core.app import create_app
from core.auth.passwords import hash_password, verify_password
from core.auth.sessions import COOKIE_NAME, LoginLimiter
from core.storage.models import ApiToken
from tests.api_helpers import PASSWORD, api_app
from tests.helpers import runtime_for, write_config

pytestmark = pytest.mark.anyio


def test_passwords_are_hashed_with_argon2():
    hashed = hash_password("s3cret-password")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert verify_password(hashed, "s3cret-password")
    assert not verify_password(hashed, "wrong")
    assert not verify_password("not a hash", "wrong")


def test_login_limiter_counts_per_username_and_ip():
    limiter = LoginLimiter(attempts=2, window=60)
    limiter.failed("ada", "1.1.1.1")
    assert limiter.retry_after("ada", "1.1.1.1") == 0
    limiter.failed("ADA", "1.1.1.1")
    assert limiter.retry_after("ada", "1.1.1.1") > 0
    assert limiter.retry_after("ada", "2.2.2.2") == 0
    assert limiter.retry_after("bob", "1.1.1.1") == 0
    limiter.succeeded("ada", "1.1.1.1")
    assert limiter.retry_after("ada", "1.1.1.1") == 0


@pytest.mark.storage
async def test_tokens_are_stored_only_as_digests(tmp_path, database_url):
    async with api_app(tmp_path, database_url) as api:
        token = api.admin["Authorization"].split()[1]
        assert token.startswith("hl_")
        rows = await ApiToken.all()
        assert rows and all(token not in row.token_hash for row in rows)
        assert (await api.client.get("/api/auth/me", headers=api.admin)).json()["user"]["role"] == "admin"
        bad = await api.client.get("/api/auth/me", headers={"Authorization": "Bearer hl_nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"


@pytest.mark.storage
async def test_session_cookie_login_csrf_and_logout(tmp_path, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    async with api_app(tmp_path, database_url) as api:
        client = api.client
        response = await client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD})
        assert response.status_code == 200
        cookie = response.headers["set-cookie"]
        assert f"{COOKIE_NAME}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" in cookie  # public_url is https in the test config
        csrf = response.json()["csrf_token"]
        value = cookie.split(";")[0].split("=", 1)[1]
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, value)  # httpx keeps Secure cookies for https only
        assert (await client.get("/api/whatsapp-numbers")).status_code == 200  # the cookie is enough to read
        refused = await client.post("/api/conversations", json={"number_id": "n1", "address": "+15550100123"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        wrong = await client.post("/api/conversations", json={"number_id": "n1", "address": "+15550100123"},
                                  headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        ok = await client.post("/api/conversations", json={"number_id": "n1", "address": "+15550100123"},
                               headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201
        assert (await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, value)
        assert (await client.get("/api/whatsapp-numbers")).status_code == 401  # the session is gone
    assert PASSWORD not in caplog.text


async def test_the_session_cookie_is_not_secure_on_plain_http(tmp_path):
    database_url = f"sqlite://{tmp_path}/h.sqlite3"
    path = write_config(tmp_path, database_url)
    path.write_text(path.read_text().replace("https://hookline.example.com", "http://127.0.0.1:8000"))
    from tests.helpers import started
    from core.auth.tokens import create_user

    async with started(runtime_for(path)) as client:
        await create_user("ada", PASSWORD, "admin")
        response = await client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD})
        assert response.status_code == 200 and "Secure" not in response.headers["set-cookie"]


@pytest.mark.storage
async def test_login_failures_are_rate_limited(tmp_path, database_url):
    async with api_app(tmp_path, database_url) as api:
        for _ in range(5):
            response = await api.client.post("/api/auth/login", json={"username": "ada", "password": "wrong-password"})
            assert response.status_code == 401 and response.json()["error"]["code"] == "bad_credentials"
        limited = await api.client.post("/api/auth/login", json={"username": "ada", "password": PASSWORD})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        other = await api.client.post("/api/auth/login", json={"username": "alan", "password": PASSWORD})
        assert other.status_code == 200
        unknown = await api.client.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD})
        assert unknown.status_code == 401
        missing = await api.client.post("/api/auth/login", json={"username": "ada"})
        assert missing.status_code == 422 and missing.json()["error"]["details"][0]["field"] == "password"


def _paths(routes, prefix=""):
    for route in routes:
        if isinstance(route, Mount):
            yield from _paths(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                yield method, prefix + route.path


PUBLIC = {("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/readyz"), ("HEAD", "/readyz"),
          ("GET", "/media/{key}"), ("HEAD", "/media/{key}"), ("POST", "/api/auth/login"),
          ("GET", "/console/login"), ("HEAD", "/console/login"), ("POST", "/console/login")}


def _console_page(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in ("/", "/console") or path.startswith("/console/"))


async def test_every_route_but_health_media_webhooks_and_login_needs_auth(tmp_path):
    database_url = f"sqlite://{tmp_path}/h.sqlite3"
    from tests.helpers import started

    runtime = runtime_for(write_config(tmp_path, database_url))
    app = create_app(runtime)
    routes = list(_paths(app.routes))
    assert ("GET", "/api/events") in routes and ("POST", "/api/whatsapp-numbers") in routes
    async with started(runtime) as client:
        for method, path in routes:
            url = path.format(key="x", number_id="n1", provider="recorder", conversation_id="1", message_id="1")
            response = await client.request(method, url)
            if (method, path) in PUBLIC or path.startswith("/webhooks/whatsapp/"):
                assert response.status_code != 401, (method, path)
            elif path == "/metrics":  # its own rules (tests/test_metrics.py): this client is 127.0.0.1, allowed by default
                assert response.status_code == 200, (method, path, response.status_code)
            elif _console_page(method, path):  # a browser is sent to the login page, and back after it
                assert response.status_code == 303, (method, path, response.status_code)
                assert response.headers["location"].startswith("/console/login?next=%2F"), (method, path)
            else:
                assert response.status_code == 401, (method, path, response.status_code)
                if method != "HEAD":
                    assert response.json()["error"]["code"] == "unauthenticated"
        assert (await client.get("/console/static/console.css")).status_code == 200  # no secrets in there
        assert (await client.get("/no/such/path")).status_code == 401  # fail closed
        assert (await client.get("/api/no-such")).status_code == 401
