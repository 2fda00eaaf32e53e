"""The bench's peers accept what the bench signs and refuse what it did not: validation is really on.

Each peer app runs as the bench runs it (its own venv, made by bench/peers/environment.py when
missing: about 30 s once), on a free port, fed by the bench's own request builders. A peer that
accepted tampered requests would be measured on a cheaper path than hookline's; one that refused
good ones would fail every bench run.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import servers, signed_requests
from bench.peers import cases, environment


def _post(url: str, builder: signed_requests.RequestBuilder, body: str, signature: str | None) -> tuple[int, str]:
    headers = {"Content-Type": builder.content_type}
    if signature is not None and builder.signature_header:
        headers[builder.signature_header] = signature
    request = urllib.request.Request(url + builder.path, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


@pytest.fixture(scope="module")
def peers_bin() -> Path:
    return environment.ensure()


@pytest.fixture
def port_and_builders() -> Iterator[tuple[int, dict[str, signed_requests.RequestBuilder]]]:
    port = servers.free_port()
    settings = dict(secret=secrets.token_hex(16), nonce=signed_requests.new_nonce(), senders=10,
                    public_url=f"http://127.0.0.1:{port}")
    yield port, {"twilio": signed_requests.TwilioInbound(batch=1, **settings),
                 "meta": signed_requests.MetaInbound(batch=1, **settings)}


def test_flask_twilio_accepts_signed_and_refuses_tampered(peers_bin: Path, port_and_builders, tmp_path: Path) -> None:
    port, builders = port_and_builders
    twilio = builders["twilio"]
    env = {"BENCH_AUTH_TOKEN": twilio.secret}
    with servers.serving(cases.gunicorn_command(peers_bin, port), port, tmp_path / "flask.log", cases.HERE, env) as server:
        for index in range(3):
            signature, body = twilio.request(index)
            assert _post(server.url, twilio, body, signature) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response />')
        signature, body = twilio.request(3)
        assert _post(server.url, twilio, body.replace("Body=", "Body=x", 1), signature)[0] == 403
        assert _post(server.url, twilio, body, twilio.request(4)[0])[0] == 403  # another request's signature
        assert _post(server.url, twilio, body, None)[0] == 403


def _handled(url: str) -> int:
    with urllib.request.urlopen(url + "/bench/handled", timeout=10) as answer:
        return int(json.load(answer)["handled"])


def test_pywa_meta_handles_signed_and_drops_tampered(peers_bin: Path, port_and_builders, tmp_path: Path) -> None:
    port, builders = port_and_builders
    meta = builders["meta"]
    assert isinstance(meta, signed_requests.MetaInbound)
    log = tmp_path / "pywa.log"
    with servers.serving(cases.uvicorn_command(peers_bin, port), port, log, cases.HERE, cases.pywa_env(meta)) as server:
        for index in range(3):
            signature, body = meta.request(index)
            assert _post(server.url, meta, body, signature) == (200, "ok")
        assert _handled(server.url) == 3  # each signed update reached the handler: pywa parsed the bench's bodies
        signature, body = meta.request(3)
        # pywa 3.9 answers a bad signature 200 and drops the update: what it handled is the proof.
        assert _post(server.url, meta, body.replace("wamid.", "wamid.x", 1), signature) == (200, "Unmatching signature")
        assert _post(server.url, meta, body, "sha256=" + "0" * 64) == (200, "Unmatching signature")
        assert _post(server.url, meta, body, None)[0] == 422  # FastAPI: the required header is missing
        assert _handled(server.url) == 3
    assert "Traceback" not in log.read_text(encoding="utf-8", errors="replace")
