"""The kit itself: core.testing's pieces, and proof that the conformance suite fails a provider
that gets a hard part wrong, saying what is wrong (run by pytest in a subprocess, as an author's
run would be)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from starlette.responses import PlainTextResponse

from core.testing import Delivery, FakeApi, corrupted, tampered
from core.testing.webhooks import proof_of

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

# The suite against one broken provider: a conftest naming the kit's plugin (the same plugin as
# the pytest11 entry point's, and there even where a checkout's install predates it), a test class.
CONFTEST = 'pytest_plugins = ["core.testing.plugin"]\n'
SUITE = """
from tests.conformance_recorder import RecorderConformance
from tests import kit_broken_providers


class TestBroken(RecorderConformance):
    plugin = kit_broken_providers.{name}
"""


def run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, broken: str, selection: str) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("HOOKLINE_TEST_POSTGRES", raising=False)  # SQLite is enough to see it fail
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_broken=SUITE.format(name=broken))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", selection, "-W", "ignore::DeprecationWarning")


def test_a_provider_that_skips_proof_fails_the_suite_saying_so(pytester, monkeypatch):
    result = run_suite(pytester, monkeypatch, "skips_proof", "proof or proving or proven")
    result.assert_outcomes(passed=1, failed=3)  # the proven webhook is still accepted
    output = result.stdout.str()
    assert "a webhook with a tampered proof (header X-Test-Signature changed) was accepted (200); provider_verify must reject it" in output
    assert "a webhook without any proof was accepted (200); provider_verify must return False when the proof is absent" in output
    assert "a webhook whose body was changed after it was proven was accepted (200)" in output


def test_a_provider_whose_statuses_go_backwards_fails_the_suite_saying_so(pytester, monkeypatch):
    result = run_suite(pytester, monkeypatch, "statuses_go_backwards", "test_statuses")
    result.assert_outcomes(failed=2)
    output = " ".join(result.stdout.str().split())  # pytest wraps long lines
    assert (
        "status webhooks sent in the order they happen (sent → delivered → read) should take the message through "
        "sent → delivered → read, but it went sent → read → read: after the 'delivered' webhook the message is 'read'"
    ) in output
    assert "check what provider_status_map (and provider_parse) make of 'delivered'" in output
    assert "must leave the message at the furthest status, 'read', at every step; it went delivered → read" in output


def test_the_pytest_plugin_is_registered_through_the_pytest11_entry_point():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"core.testing.plugin": "core.testing.plugin"}


def test_the_kit_fixtures_give_a_migrated_database(pytester, monkeypatch):
    """An author's test module, with nothing but the plugin: the fixture is there and usable."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("HOOKLINE_TEST_POSTGRES", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_author="""
import asyncio
from core.storage.database import close_storage, open_storage, pending_migrations

def test_migrated(hookline_database_url):
    assert hookline_database_url.startswith("sqlite://")
    async def pending():
        await open_storage(hookline_database_url)
        try:
            return await pending_migrations(hookline_database_url)
        finally:
            await close_storage()
    assert asyncio.run(pending()) == []
""")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


# --------------------------------------------------------------------------- the pieces


def test_tampering_changes_exactly_what_proving_added():
    unproven = Delivery("/webhooks/whatsapp/acme/n1", b"{}", {"Content-Type": "application/json"})
    signed = unproven.with_headers(**{"X-Acme-Signature": "sha256=00ff"})
    forged = tampered(unproven, signed)
    assert forged.header("X-Acme-Signature") not in (None, "sha256=00ff") and forged.body == signed.body
    secret_path = unproven.replace(path="/webhooks/whatsapp/acme/n1/s3cr3tpath")
    forged = tampered(unproven, secret_path)
    assert forged.path.startswith("/webhooks/whatsapp/acme/n1/") and forged.path != secret_path.path
    assert proof_of(unproven, forged) == ({}, (unproven.path, forged.path))
    with pytest.raises(ValueError, match="no proof"):
        tampered(unproven, unproven)


@pytest.mark.parametrize("value", ["abc", "ABZ", "0129", "sha256=+/=", "x"])
def test_corrupted_changes_one_character(value):
    changed = corrupted(value)
    assert len(changed) == len(value) and sum(a != b for a, b in zip(value, changed)) == 1


class _Echo(FakeApi):
    def routes(self):
        from starlette.routing import Route

        async def echo(request):
            return PlainTextResponse((await request.body()).decode())

        return [Route("/echo", echo, methods=["POST"])]


def test_a_fake_records_every_request_and_answers_from_its_script():
    import httpx

    with _Echo().running() as fake:
        fake.answer_next(PlainTextResponse("refused", 503), when=lambda request: request.carries("second"))
        first = httpx.post(f"{fake.url}/echo", content=b"first")
        second = httpx.post(f"{fake.url}/echo", content=b"second")
        third = httpx.post(f"{fake.url}/echo", content=b"second again")
    assert (first.status_code, first.text) == (200, "first")
    assert (second.status_code, second.text) == (503, "refused")
    assert (third.status_code, third.text) == (200, "second again")  # a script answers once
    assert [request.body for request in fake.recorded] == [b"first", b"second", b"second again"]
    assert len(fake.carrying("second")) == 2
