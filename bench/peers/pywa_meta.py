"""The Meta peer: pywa's own webhook routes on FastAPI, with signature validation on.

pywa registers its webhook routes on the FastAPI app it is handed (`server=`) and, with
`validate_updates=True` and an `app_secret`, checks `X-Hub-Signature-256` before anything else
(without the header FastAPI answers 422 before pywa sees it). (Without an app secret it only warns and
turns validation off, so the secret is required here.) No `callback_url` is given, so pywa
registers nothing with Meta at start: no network call.

pywa 3.9 answers a wrong signature 200 ("Unmatching signature"), not 4xx (so Meta does not
retry), and drops the update; so a 2xx proves nothing here. The handler counts the updates it was
given and `GET /bench/handled` reports the count: the case checks it covers every 2xx answer, and
the test that a tampered request is not counted.

Its best setup here, tried under the bench load: `pywa_async` (handlers on the event loop),
~3,600 req/s, against ~1,900 for the sync `pywa` (each update goes through a threadpool).
pywa 3.9.0 is pinned, not 4.x: pywa 4 reads `contacts[].user_id` (Meta's business-scoped user
id) as required, and the bench's bodies (tests/fixtures/meta/inbound_text.json's shape) carry
only `wa_id`, so 4.x answers 200 but fails to build the message and logs a traceback per
request: it would not do the job being compared. 3.9.0 parses them and calls the handler.

    BENCH_APP_SECRET=… BENCH_PHONE_ID=… uvicorn --app-dir bench/peers pywa_meta:app
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pywa_async import WhatsApp, types

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/healthz")
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


handled = 0  # messages given to on_message: what a 2xx must have led to


@app.get("/bench/handled")
async def handled_count() -> JSONResponse:
    return JSONResponse({"handled": handled})


wa = WhatsApp(
    phone_id=os.environ["BENCH_PHONE_ID"],
    token="bench-no-token",
    server=app,
    webhook_endpoint="/webhooks/whatsapp/meta",
    verify_token="bench-verify",
    app_secret=os.environ["BENCH_APP_SECRET"],
    validate_updates=True,
)


@wa.on_message()
async def on_message(client: WhatsApp, message: types.Message) -> None:
    """Only counts: the peer's cost is pywa's receive path (verify, parse, dispatch), not a handler's."""
    global handled
    handled += 1
