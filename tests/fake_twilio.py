"""A local fake of Twilio's REST API over real HTTP, following PROTOCOLS.md section 1.5.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form, HTTP Basic AccountSid:AuthToken)
answers 201 with a Message resource, or a scripted error `{"code", "message", "more_info",
"status"}`; `GET …/Messages/{Sid}.json` answers the resource with a settable status; media at
`GET …/Messages/{Sid}/Media/{MediaSid}` needs Basic auth and redirects to a CDN path, as Twilio
does.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from core.testing import FakeApi


@dataclass
class SentRequest:
    account_sid: str
    auth: tuple[str, str] | None
    form: dict[str, list[str]]

    def one(self, name: str) -> str | None:
        return self.form.get(name, [None])[0]


@dataclass
class FakeTwilio(FakeApi):
    credentials: dict[str, str]  # AccountSid → AuthToken
    url: str = ""
    sent: list[SentRequest] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # MediaSid → (bytes, type)
    media_requests: list[tuple[str, tuple[str, str] | None]] = field(default_factory=list)

    def answer(self, *responses: tuple[int, dict[str, Any]]) -> None:
        self.script.extend(responses)

    @staticmethod
    def error(code: int, message: str, status: int = 400) -> tuple[int, dict[str, Any]]:
        return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}

    def _auth(self, request: Request) -> tuple[str, str] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    def _authorized(self, request: Request, account_sid: str) -> bool:
        auth = self._auth(request)
        return auth is not None and auth[0] == account_sid and self.credentials.get(account_sid) == auth[1]

    async def create_message(self, request: Request) -> Response:
        account_sid = request.path_params["account_sid"]
        form = parse_qs((await request.body()).decode(), keep_blank_values=True)
        self.sent.append(SentRequest(account_sid, self._auth(request), form))
        if not self._authorized(request, account_sid):
            return JSONResponse(self.error(20003, "Authenticate", 401)[1], status_code=401)
        if self.script:
            status, body = self.script.pop(0)
            if status >= 300:
                return JSONResponse(body, status_code=status)
        sid = "SM" + secrets.token_hex(16)
        resource = {
            "sid": sid, "account_sid": account_sid, "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "to": form.get("To", [""])[0], "from": form.get("From", [None])[0], "body": form.get("Body", [""])[0],
            "messaging_service_sid": form.get("MessagingServiceSid", [None])[0], "num_media": str(len(form.get("MediaUrl", []))),
            "error_code": None, "error_message": None, "direction": "outbound-api", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }
        self.statuses[sid] = resource
        return JSONResponse(resource, status_code=201)

    async def fetch_message(self, request: Request) -> Response:
        if not self._authorized(request, request.path_params["account_sid"]):
            return JSONResponse(self.error(20003, "Authenticate", 401)[1], status_code=401)
        resource = self.statuses.get(request.path_params["sid"])
        if resource is None:
            return JSONResponse(self.error(20404, "The requested resource was not found", 404)[1], status_code=404)
        return JSONResponse(resource)

    async def fetch_media(self, request: Request) -> Response:
        self.media_requests.append((request.url.path, self._auth(request)))
        if not self._authorized(request, request.path_params["account_sid"]):
            return Response(status_code=401)
        # Another origin, as Twilio's CDN is: credentials must not follow the redirect.
        cdn = f"http://localhost:{request.url.port}/cdn/{request.path_params['media_sid']}"
        return RedirectResponse(cdn, status_code=307)

    async def cdn(self, request: Request) -> Response:
        self.media_requests.append((request.url.path, self._auth(request)))
        found = self.media.get(request.path_params["media_sid"])
        return Response(found[0], media_type=found[1]) if found else Response(status_code=404)

    def routes(self) -> list[Route]:
        base = "/2010-04-01/Accounts/{account_sid}/Messages"
        return [
            Route(base + ".json", self.create_message, methods=["POST"]),
            Route(base + "/{sid}.json", self.fetch_message, methods=["GET"]),
            Route(base + "/{sid}/Media/{media_sid}", self.fetch_media, methods=["GET"]),
            Route("/cdn/{media_sid}", self.cdn, methods=["GET"]),
        ]


@contextmanager
def running_fake_twilio(credentials: dict[str, str]) -> Iterator[FakeTwilio]:
    fake = FakeTwilio(credentials)
    with fake.running():
        yield fake
