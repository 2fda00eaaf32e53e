"""The API against its own OpenAPI document, with schemathesis (docs/reliability.md), on SQLite and
PostgreSQL.

hookline is served by uvicorn on a real port (in an event loop of its own, tests/reliability.py);
schemathesis loads `/api/openapi.json` from it with an admin's bearer token and, for every
operation, generates requests that fit the document (positive) and requests that break it
(negative), each sent with that token. Every answer is held to these checks:

* `not_a_server_error` — no 5xx;
* `status_code_conformance` — the status is one the operation documents;
* `content_type_conformance` — the content type is the documented one for that status;
* `response_schema_conformance`, `response_headers_conformance` — the body and headers fit;
* `negative_data_rejection` — a request that breaks the document is refused with a 4xx.

Operations with ids in their path run a second time with the ids of rows that exist (the seeded
conversation, its message, the configured number), so generated bodies reach the handlers and
not only their 404. `GET /api/events` is an endless stream, which schemathesis cannot read to its
end: its generated requests are sent here with a streaming client and checked the same way —
status and content type always, the body when the answer ends (an error).

Bounded: 20 examples per operation and mode (10 more with real ids; 5 for login, where every
attempt costs an Argon2id hash by design), derandomized, no example database, 10 s per request. The test reports one line with its counts (tests/reliability.py: the
terminal summary's "reliability suite" section).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)

from core.auth.tokens import create_token, create_user
from tests.helpers import inbound_body, post_signed, runtime_for, served, write_config
from tests.reliability import Stopwatch, backend_of, report

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
EXAMPLES = 20
WITH_REAL_IDS = 10
#: Fewer where each request is slow by design: every login attempt costs an Argon2id hash.
EXAMPLES_OF = {"POST /api/auth/login": 5}
STREAM = "/api/events"
SETTINGS = settings(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


async def seed(base: str) -> tuple[dict[str, str], dict[str, Any]]:
    """An admin's token, and the ids of rows that exist: a conversation with one inbound message."""
    token = await create_token(await create_user("ada", "correct horse battery", "admin"))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await post_signed(client, inbound_body(("seed-1", "+15550100123", "hola")))).status_code == 200
        conversation = (await client.get("/api/conversations", headers=auth)).json()["items"][0]
        message = (await client.get(f"/api/conversations/{conversation['id']}/messages", headers=auth)).json()["items"][0]
    return auth, {"conversation_id": conversation["id"], "message_id": message["id"], "number_id": "n1", "provider": "recorder"}


def check_stream(case: Any, client: httpx.Client, auth: dict[str, str], tally: Counter[int]) -> None:
    """One generated request to the event stream: a 200 must be an event stream; an error, ended,
    is held to the document like any other answer."""
    documented = case.operation.definition.raw["responses"]
    headers = {**dict(case.headers or {}), **auth}
    with client.stream("GET", STREAM, params=case.query or {}, headers=headers) as response:
        tally[response.status_code] += 1
        assert str(response.status_code) in documented, (response.status_code, case.query, case.headers)
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert next(response.iter_text()).startswith("retry:")
            return
        response.read()
    case.validate_response(response, checks=CHECKS, headers=headers)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # schemathesis's own strategies
def test_every_api_operation_answers_as_its_openapi_document_says(tmp_path, database_url):
    clock = Stopwatch()
    runtime = runtime_for(write_config(tmp_path, database_url))
    tallies: dict[str, Counter[int]] = {}
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(served(runtime)) as base:
        auth, existing = portal.call(seed, base)
        schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json", headers=auth)
        operations = [result.ok() for result in schema.get_all_operations()]
        document = httpx.get(f"{base}/api/openapi.json", headers=auth, timeout=10).json()
        listed = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
        # Every operation but the document itself, which schemathesis leaves out as the one it was
        # loaded from (no inputs; tests/test_api_contract.py validates it).
        assert {(op.method.upper(), op.path) for op in operations} == listed - {("GET", "/api/openapi.json")}
        stream_client = httpx.Client(base_url=base, timeout=10)  # kept: a new one costs ~50 ms of SSL set-up
        for operation in operations:
            tally = tallies.setdefault(operation.label, Counter())
            params = [name for name in existing if "{" + name + "}" in operation.path]
            examples = EXAMPLES_OF.get(operation.label, EXAMPLES)
            passes = [(mode, None, examples) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
            if params:
                passes.append((GenerationMode.POSITIVE, {name: existing[name] for name in params}, WITH_REAL_IDS))
            for mode, path_parameters, count in passes:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

                @settings(SETTINGS, max_examples=count)
                @given(case=strategy)
                def conforms(case: Any) -> None:
                    if operation.path == STREAM:
                        check_stream(case, stream_client, auth, tally)
                        return
                    response = case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=10)
                    tally[response.status_code] += 1

                conforms()
    total = sum(sum(tally.values()) for tally in tallies.values())
    statuses = Counter()
    for tally in tallies.values():
        statuses.update(tally)
    spread = " ".join(f"{status}×{count}" for status, count in sorted(statuses.items()))
    report(f"schemathesis /api/openapi.json {backend_of(database_url)}: {total} requests over {len(tallies)} operations "
           f"(positive, negative and with real ids), 0 server errors, 0 undocumented statuses, content types or bodies, "
           f"0 invalid requests accepted — {spread} ({clock})")
