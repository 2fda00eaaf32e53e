"""What every console page handler shares: the role check and error pages in HTML, not JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from core.api.access import ANYONE
from core.api.errors import ApiError
from core.console.i18n import language_of, translator
from core.console.rendering import render

Page = Callable[[Request], Awaitable[Response]]


def page(handler: Page, roles: tuple[str, ...] = ANYONE) -> Page:
    """`handler` for users of `roles`; API errors it raises (404, 409…) become an error page."""

    async def endpoint(request: Request) -> Response:
        t = translator(language_of(request))
        if request.scope["user"].role not in roles:
            return render(request, "error.html", {"message": t("error.forbidden")}, 403)
        try:
            return await handler(request)
        except ApiError as exc:
            message = t("error.not_found") if exc.status == 404 else exc.message
            return render(request, "error.html", {"message": message}, exc.status)

    return endpoint

