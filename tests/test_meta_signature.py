"""X-Hub-Signature-256 with known vectors (the shared research's sign.py), raw bytes only,
several app secrets, and the hub.* verification handshake."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from plugins.meta.signature import handshake_challenge, is_valid, sign, signing_secrets

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "0123456789abcdef0123456789abcdef"  # sign.py's EXAMPLE_META_SECRET
# `python sign.py example` → the worked example over the exact bytes of meta/inbound_text.json
VECTOR = "sha256=b0f892ed3e45d704ba9d049282e409ee7a45053abbd03de2e48a9f2a6066bd43"


def raw(name: str) -> bytes:
    return (FIXTURES / "meta" / name).read_bytes()


def test_known_vector_from_the_research_signer():
    body = raw("inbound_text.json")
    assert len(body) == 990
    assert sign(body, SECRET) == VECTOR
    assert is_valid(body, VECTOR, [SECRET])


def test_agrees_with_the_reference_signer_on_every_fixture():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sign", FIXTURES / "sign.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    for path in sorted((FIXTURES / "meta").glob("*.json")):
        body = path.read_bytes()
        assert sign(body, "app-secret") == reference.meta_signature(body, "app-secret"), path.name
        assert is_valid(body, reference.meta_signature(body, "app-secret"), ["app-secret"])


@pytest.mark.parametrize("position", [0, 100, 500, 989])
def test_any_tampered_byte_fails(position):
    body = bytearray(raw("inbound_text.json"))
    body[position] ^= 0x01
    assert not is_valid(bytes(body), VECTOR, [SECRET])


def test_escaped_slashes_verify_and_a_reserialised_body_does_not():
    body = raw("inbound_image.json")
    assert b'"image\\/jpeg"' in body  # Meta escapes "/" as "\/"
    header = sign(body, SECRET)
    assert is_valid(body, header, [SECRET])
    reserialised = json.dumps(json.loads(body), indent=2).encode()
    assert json.loads(reserialised) == json.loads(body)
    assert not is_valid(reserialised, header, [SECRET])
    unicode_escaped = raw("inbound_text.json")
    assert b"Jos\\u00e9" in unicode_escaped and is_valid(unicode_escaped, VECTOR, [SECRET])


def test_several_apps_each_secret_is_tried():
    body = raw("status_read.json")
    header = sign(body, "second-app-secret")
    assert is_valid(body, header, ["first-app-secret", "second-app-secret", "third"])
    assert signing_secrets(body, header, ["first-app-secret", "second-app-secret", "second-app-secret"]) == ["second-app-secret"]
    assert not is_valid(body, header, ["first-app-secret", "third"])
    assert not is_valid(body, header, [])


@pytest.mark.parametrize("header", [
    None, "", "sha256=", "sha1=" + hashlib.sha1(b"x").hexdigest(), "b0f892ed3e45d704ba9d049282e409ee7a45053abbd03de2e48a9f2a6066bd43",
    "sha256=zzz", "sha256=b0f892ed3e45d704ba9d049282e409ee7a45053abbd03de2e48a9f2a6066bd4", "sha256=ünïcode",
])
def test_missing_or_garbled_headers_are_no_proof(header):
    assert not is_valid(raw("inbound_text.json"), header, [SECRET])


def test_header_prefix_and_hex_case_are_tolerated():
    body = raw("inbound_text.json")
    assert is_valid(body, "SHA256=" + VECTOR[len("sha256="):].upper(), [SECRET])
    assert is_valid(body, f"  {VECTOR} ", [SECRET])


def test_sign_is_hmac_sha256_hex():
    assert sign(b"{}", b"k") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- handshake


def query(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True)


def test_handshake_returns_the_challenge_for_a_configured_token():
    q = query("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=second")
    assert handshake_challenge(q, ["first", "second"]) == "1158201444"


@pytest.mark.parametrize("text", [
    "hub.mode=subscribe&hub.challenge=1&hub.verify_token=wrong",
    "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=first",
    "hub.challenge=1&hub.verify_token=first",
    "hub.mode=subscribe&hub.verify_token=first",
    "hub.mode=subscribe&hub.challenge=1",
    "hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
    "hub.mode=subscribe&hub.challenge=1&hub.verify_token=first&hub.verify_token=wrong",
    "hub.mode=subscribe&hub.challenge=1&hub.verify_token=firs",
])
def test_handshake_refuses_anything_else(text):
    assert handshake_challenge(query(text), ["first", ""]) is None
