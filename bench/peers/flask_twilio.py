"""The Twilio peer: a minimal Flask webhook that checks the signature the way Twilio's guides show.

`RequestValidator(auth_token).validate(request.url, request.form, signature)` from the twilio SDK,
403 when it fails, else the empty TwiML. Nothing is parsed or stored beyond that: it is what a
developer following the guide writes, and hookline (which also stores and enqueues) must still be
ahead of it on throughput.

Served by gunicorn with one worker (the bench is per worker), the sync worker class. Tried under
the bench load (wrk, 64 connections, 2 threads, the Twilio file, 5 s; 2 cores shared with wrk):
sync ~1,300-1,400 req/s (p50 ~45 ms), gthread --threads 8 ~1,060 and --threads 16 ~1,020 req/s
(p50 ~60 ms): the handler never waits on I/O, so threads only add GIL handoffs and switching.
So sync is Flask's best setup here. Run from this directory (it is imported as a top-level module,
not through the bench package, whose imports need hookline's venv):

    BENCH_AUTH_TOKEN=… gunicorn --chdir bench/peers -w 1 flask_twilio:app
"""

from __future__ import annotations

import os

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'

app = Flask(__name__)
validator = RequestValidator(os.environ.get("BENCH_AUTH_TOKEN", ""))


@app.post("/webhooks/whatsapp/twilio")
def twilio_webhook() -> Response:
    if not validator.validate(request.url, request.form, request.headers.get("X-Twilio-Signature", "")):
        abort(403)
    return Response(EMPTY_TWIML, mimetype="text/xml")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")
