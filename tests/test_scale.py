"""Scale mode end to end: three `hookline serve` instances on different ports, one PostgreSQL,
webhooks posted round-robin with duplicates and bursts inside conversations.

What must hold, whichever instance a webhook reached and whichever ran its jobs: exactly one
row per provider message id; each conversation's workflows ran in stored order, each message
once; every answer the workflow queued reached the fake provider, once. Bounded in time.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import clean_postgres
from tests.echo_workflow import LOG_ENV_VAR
from tests.fake_api import running_fake_api
from tests.helpers import SECRET, inbound_body, write_config
from tests.recording_provider import signed_headers
from tests.test_process import RECORDER, serving, wait_until

pytestmark = pytest.mark.slow

INSTANCES = 3
CONVERSATIONS = 40
PER_CONVERSATION = 8  # a burst: posted at once, to different instances
DUPLICATES = 0.10


def webhooks() -> list[tuple[str, str, str]]:
    """(external id, sender, text) for every message, and a redelivery of one in ten."""
    random.seed(8)
    originals = [(f"scale-{c}-{n}", f"+1555030{c:04d}", f"c{c} m{n}") for c in range(CONVERSATIONS) for n in range(PER_CONVERSATION)]
    redelivered = random.sample(originals, int(len(originals) * DUPLICATES))
    return originals + redelivered


async def stored_inbound(url: str) -> list[tuple[int, int, str]]:
    """(conversation id, message id, external id) of every inbound row."""
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await connection.fetch("SELECT conversation_id, id, external_id FROM hookline_message WHERE direction = 'in'")
    finally:
        await connection.close()
    return [(row["conversation_id"], row["id"], row["external_id"]) for row in rows]


def test_three_instances_on_one_database_store_once_keep_order_and_deliver_everything(tmp_path, postgres_url):
    url = clean_postgres(postgres_url)
    workflow_log = tmp_path / "workflows.log"
    with running_fake_api() as fake, ExitStack() as stack:
        config = write_config(tmp_path, url, api_url=fake.url, enabled=["recorder", "echo"], modules=[RECORDER, "tests.echo_workflow"])
        servers = [stack.enter_context(serving(config, tmp_path, env={LOG_ENV_VAR: str(workflow_log)})) for _ in range(INSTANCES)]
        bases = itertools.cycle([server.url for server in servers])
        deliveries = webhooks()
        # Bursts: a conversation's messages go out together, each to the next instance.
        by_conversation = defaultdict(list)
        for delivery in deliveries:
            by_conversation[delivery[1]].append((next(bases), delivery))

        def post(target: tuple[str, tuple[str, str, str]]) -> int:
            base, (external_id, sender, text) = target
            body = inbound_body((external_id, sender, text))
            headers = signed_headers("n1", SECRET, body)
            return httpx.post(f"{base}/webhooks/whatsapp/recorder", content=body, headers=headers, timeout=30).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = [status for burst in by_conversation.values() for status in pool.map(post, burst)]
        assert statuses == [200] * len(deliveries)

        originals = CONVERSATIONS * PER_CONVERSATION
        wait_until(lambda: len({body["text"] for body in list(fake.received)}) >= originals, timeout=90,
                   what=f"{originals} answers at the fake provider")
        elapsed = time.monotonic() - started
        for server in servers:
            assert server.stop() == 0, server.output()[-2000:]

    rows = asyncio.run(stored_inbound(url))
    assert sorted(external_id for _, _, external_id in rows) == sorted({d[0] for d in deliveries})  # one row each

    ran: dict[int, list[int]] = defaultdict(list)
    processes: set[str] = set()
    for line in workflow_log.read_text().splitlines():
        conversation_id, message_id, pid = line.split()
        ran[int(conversation_id)].append(int(message_id))
        processes.add(pid)
    stored: dict[int, list[int]] = defaultdict(list)
    for conversation_id, message_id, _ in rows:
        stored[conversation_id].append(message_id)
    assert len(ran) == CONVERSATIONS
    for conversation_id, message_ids in stored.items():
        assert ran[conversation_id] == sorted(message_ids), f"conversation {conversation_id}: ran {ran[conversation_id]}"
    assert len(processes) == INSTANCES, f"the work was not shared: {len(processes)} process(es) ran workflows"

    texts = [body["text"] for body in list(fake.received)]
    assert sorted(texts) == sorted(f"echo c{c} m{n}" for c in range(CONVERSATIONS) for n in range(PER_CONVERSATION))
    print(f"{len(deliveries)} webhooks ({len(deliveries) - originals} redelivered) over {INSTANCES} instances: "
          f"{originals} rows, {originals} workflows in order, {len(texts)} answers in {elapsed:.1f} s")
