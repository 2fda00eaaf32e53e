"""Every route of the console (docs/console.md). Pages are GET; every POST is a `form_route`."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.requests import Request
from starlette.staticfiles import StaticFiles

from core.api.access import ADMIN
from core.auth.sessions import LoginLimiter
from core.console import auth_pages, inbox_pages, number_pages
from core.console.pages import page
from core.console.rendering import STATIC
from core.console.security import form_route


async def home(request: Request) -> Response:
    return RedirectResponse("/console/inbox", status_code=303)


def console_routes(limiter: LoginLimiter) -> list[BaseRoute]:
    """Mounted at the server root: `/` leads to the inbox."""
    return [
        Route("/", home),
        Route("/console", home),
        Route("/console/", home),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
        Route("/console/login", auth_pages.login_form, methods=["GET"]),
        Route("/console/login", auth_pages.login_submit(limiter), methods=["POST"]),
        form_route("/console/logout", auth_pages.logout),
        Route("/console/inbox", page(inbox_pages.inbox_page)),
        Route("/console/inbox/{conversation_id}", page(inbox_pages.inbox_page)),
        form_route("/console/inbox/{conversation_id}/send", inbox_pages.send),
        form_route("/console/inbox/{conversation_id}/transfer", inbox_pages.transfer),
        Route("/console/numbers", page(number_pages.numbers_page)),
        Route("/console/numbers/new", page(number_pages.new_number_page, ADMIN)),
        form_route("/console/numbers/new", number_pages.new_number_submit),
        Route("/console/numbers/{number_id}", page(number_pages.number_page)),
        Route("/console/fragments/conversations", page(inbox_pages.conversations_fragment)),
        Route("/console/fragments/thread/{conversation_id}", page(inbox_pages.thread_fragment)),
        Route("/console/fragments/numbers", page(number_pages.numbers_fragment)),
    ]
