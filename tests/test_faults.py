"""Faults in scale mode, with real `hookline serve` processes on PostgreSQL: the database goes
away (every connection dropped, new ones refused, as a restart does) and comes back.

While it is down, webhooks answer 503 so the provider retries, and nothing half-written remains;
when it is back, hookline carries on without a restart: the retried webhooks are stored once,
and every message gets its workflow's answer. The outage is a TCP proxy cut
(tests/tcp_proxy.py), so the machine's PostgreSQL, shared with other tests, keeps running.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import clean_postgres
from tests.fake_api import running_fake_api
from tests.helpers import SECRET, inbound_body, write_config
from tests.reliability import Stopwatch, report
from tests.recording_provider import signed_headers
from tests.tcp_proxy import proxied
from tests.test_process import RECORDER, messages_json, serving, wait_until

pytestmark = pytest.mark.slow

ECHO = "tests.echo_workflow"


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


CLIENT = httpx.Client(timeout=20)  # one, kept: a new client per request costs ~50 ms of SSL set-up


def post(base: str, external_id: str, sender: str, text: str) -> httpx.Response:
    body = inbound_body((external_id, sender, text))
    return CLIENT.post(f"{base}/webhooks/whatsapp/recorder", content=body, headers=signed_headers("n1", SECRET, body))


def test_database_outage_answers_503_then_recovers_without_a_restart_and_loses_nothing(tmp_path, postgres_url):
    clock = Stopwatch()
    url = clean_postgres(postgres_url)
    target = urlsplit(url)
    with running_fake_api() as fake, proxied(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        config = write_config(tmp_path, through(url, proxy.port), api_url=fake.url, enabled=["recorder", "echo"],
                              modules=[RECORDER, ECHO], queue={"lease_seconds": 2})
        with serving(config, tmp_path) as server:
            accepted: list[str] = []
            for n in range(10):
                assert post(server.url, f"before-{n}", f"+1555020{n % 3:04d}", f"before {n}").status_code == 200
                accepted.append(f"before-{n}")

            proxy.cut()
            refused: list[str] = []
            started = time.monotonic()
            for n in range(10):
                answer = post(server.url, f"during-{n}", f"+1555020{n % 3:04d}", f"during {n}")
                if answer.status_code == 200:  # answered from a connection that had not noticed yet
                    accepted.append(f"during-{n}")
                else:
                    assert answer.status_code == 503, (answer.status_code, answer.text)
                    assert answer.headers.get("retry-after")
                    refused.append(f"during-{n}")
            assert len(refused) >= 8, f"only {len(refused)} of 10 refused while the database was away"
            refused_while_down = len(refused)
            assert time.monotonic() - started < 30, "refusing took too long (a provider would time out)"
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 503
            time.sleep(2)  # down for a while: the workers and listeners notice too
            proxy.restore()

            # The provider retries what was refused; hookline answers again, without a restart.
            deadline = time.monotonic() + 30
            while refused and time.monotonic() < deadline:
                external_id = refused[0]
                n = int(external_id.split("-")[1])
                if post(server.url, external_id, f"+1555020{n % 3:04d}", f"during {n}").status_code == 200:
                    accepted.append(refused.pop(0))
                else:
                    time.sleep(0.5)
            assert not refused, f"still refused 30 s after the database came back: {refused}"
            assert post(server.url, "before-0", "+15550200000", "before 0").status_code == 200  # a redelivery

            expected = {f"echo before {n}" for n in range(10)} | {f"echo during {n}" for n in range(10)}

            def echoed() -> set[str]:
                return {body["text"] for body in list(fake.received)}

            wait_until(lambda: echoed() >= expected, timeout=40, what="an answer to every message")
            assert server.stop() == 0
        texts = [body["text"] for body in list(fake.received)]
        # At-least-once: a send whose answer was lost in the cut may go twice; never more than the few in flight.
        assert len(texts) - len(set(texts)) <= 4, sorted(texts)
        rows = messages_json(_direct(config, url), tmp_path)
        inbound = sorted(row["external_id"] for row in rows if row["direction"] == "in")
        assert inbound == sorted(accepted)  # each stored once: the redelivery and the retries included
    report(f"database outage postgres: 10 webhooks before the cut, 10 during it ({refused_while_down} refused 503 with "
           f"Retry-After), retried after it and one redelivered; kept {len(inbound)} messages once each, "
           f"{len(set(texts))} answers sent, {len(texts) - len(set(texts))} twice (at-least-once), no restart ({clock})")


def _direct(config: Path, url: str) -> Path:
    """The same config, straight to the database (the proxy is gone by now)."""
    direct = config.with_name("direct.toml")
    text = config.read_text()
    start = text.index('url = "', text.index("[database]")) + len('url = "')
    end = text.index('"', start)
    direct.write_text(text[:start] + url + text[end:])
    return direct
