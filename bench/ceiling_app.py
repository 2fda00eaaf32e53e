"""The ceiling: the least a POST webhook handler on this stack (uvicorn + Starlette) can do.

It receives the same requests as hookline's Twilio route (same path, same bodies), reads the body
and answers the same empty TwiML, with no verification, parsing or storage. Everything hookline
does beyond that is what its ratio to this case measures; the Meta cases are compared with it too
(their bodies, posted here, give the same rate within the noise).

    uvicorn bench.ceiling_app:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response />'


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(EMPTY_TWIML, media_type="text/xml")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/webhooks/whatsapp/twilio", webhook, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
