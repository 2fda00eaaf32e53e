"""A lean fake of the Graph API's send endpoint for the outbound drain (bench/outbound.py).

    uvicorn bench.fake_graph:app

* ``POST /{version}/{phone_number_id}/messages`` answers as Meta does for a text
  (``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid…"}]}``)
  and records, per send, when it answered (``time.monotonic()``: CLOCK_MONOTONIC, the same clock
  in every process on the machine) and the sender's message id, read from
  ``biz_opaque_callback_data`` (``hookline:<id>``, what hookline's Meta client puts on every send).
* **The gate.** Until ``POST /open``, sends are held (not answered): the process under test
  fills its concurrency with requests in flight while the bench waits for it to be up, so the
  measured drain starts at a known moment, after start-up and imports, with nothing measured
  half-started. ``GET /state`` says how many sends are held and answered.
* ``GET /arrivals`` gives back ``{"opened_at", "ids", "times"}`` after the run.

Deliberately no token check, no validation beyond reading the id: its CPU per send must stay
well below the sender's (the bench reports it), or the drain would measure the fake.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_gate = asyncio.Event()
_opened_at: list[float] = []
_ids: list[int] = []  # the sender's message id per answered send, in answer order
_times: list[float] = []  # when each was answered
_held = 0
_counter = 0


async def send(request: Request) -> Response:
    global _held, _counter
    payload = json.loads(await request.body())
    if not _gate.is_set():
        _held += 1
        try:
            await _gate.wait()
        finally:
            _held -= 1
    opaque = str(payload.get("biz_opaque_callback_data", ""))
    _ids.append(int(opaque.rsplit(":", 1)[-1]) if opaque.startswith("hookline:") else -1)
    _times.append(time.monotonic())
    _counter += 1
    to = str(payload.get("to", ""))
    return Response(
        '{"messaging_product":"whatsapp","contacts":[{"input":"%s","wa_id":"%s"}],"messages":[{"id":"wamid.bench%016x"}]}'
        % (to, to, _counter),
        media_type="application/json",
    )


async def open_gate(request: Request) -> JSONResponse:
    if not _gate.is_set():
        _opened_at.append(time.monotonic())
        _gate.set()
    return JSONResponse({"opened_at": _opened_at[0]})


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"held": _held, "answered": len(_ids), "open": _gate.is_set()})


async def arrivals(request: Request) -> JSONResponse:
    return JSONResponse({"opened_at": _opened_at[0] if _opened_at else None, "ids": _ids, "times": _times})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/{version}/{phone_number_id}/messages", send, methods=["POST"]),
        Route("/open", open_gate, methods=["POST"]),
        Route("/state", state),
        Route("/arrivals", arrivals),
        Route("/healthz", healthz),
    ]
)
