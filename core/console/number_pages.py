"""Numbers: the table (provider chip, connection state, config badge), one number (with the live
pairing QR code for providers that pair by scanning), and "Add number" with fields generated from
the chosen provider's settings schema."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from core.api.access import ADMIN, host_of, require
from core.api.errors import ApiError, not_found, validate
from core.api.numbers import NewNumber, add_number
from core.api.views import masked_settings
from core.console.forms import FormField, fields_for, settings_from
from core.console.i18n import language_of, translator
from core.console.rendering import render
from core.console.security import done
from core.host import Host
from core.storage.models import NumberRow


async def _rows(host: Host) -> list[dict[str, Any]]:
    return [{"row": row, "active": row.id in host.numbers} for row in await NumberRow.all().order_by("id")]


async def numbers_page(request: Request) -> Response:
    return render(request, "numbers.html", {"numbers": await _rows(host_of(request))})


async def numbers_fragment(request: Request) -> Response:
    return render(request, "_numbers_table.html", {"numbers": await _rows(host_of(request))})


async def number_page(request: Request) -> Response:
    host = host_of(request)
    row = await NumberRow.get_or_none(id=request.path_params["number_id"])
    if row is None:
        raise not_found(f"number {request.path_params['number_id']!r}")
    provider = host.dispatch.providers.get(row.provider)
    inbound = next((route for route in provider.routes if route.name == "inbound"), None) if provider else None
    return render(request, "number.html", {
        "row": row,
        "active": row.id in host.numbers,
        "settings": masked_settings(host.numbers.get(row.id), row),
        # Routes with parameters (WPPConnect's secret URL) are set up by the provider plugin itself.
        "webhook_url": host.webhook_url(row.provider, inbound.path) if inbound and "{" not in inbound.path else None,
        "pairs_by_qr": provider is not None and provider.implements("provider_pairing_qr"),
    })


def _provider_forms(host: Host) -> dict[str, list[FormField]]:
    return {name: fields_for(provider.number_settings_model.model_json_schema())
            for name, provider in host.dispatch.providers.items()}


def _form_page(request: Request, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Response:
    host = host_of(request)
    forms = _provider_forms(host)
    chosen = values.get("provider") if values.get("provider") in forms else next(iter(forms), None)
    return render(request, "number_new.html", {"forms": forms, "chosen": chosen, "values": values, "errors": errors}, status)


async def new_number_page(request: Request) -> Response:
    return _form_page(request, {"provider": request.query_params.get("provider")}, {})


async def new_number_submit(request: Request, form: FormData) -> Response:
    """Validated by the same code as `POST /api/whatsapp-numbers`; errors shown beside their fields,
    with everything typed kept except secrets."""
    user = require(request, ADMIN)
    host = host_of(request)
    t = translator(language_of(request))
    forms = _provider_forms(host)
    values = {name: value for name, value in form.multi_items() if isinstance(value, str) and name != "csrf_token"}
    provider = values.get("provider", "")
    data = {"id": values.get("id", "").strip(), "provider": provider, "phone": values.get("phone", "").strip(),
            "display_name": values.get("display_name", "").strip() or None,
            "settings": settings_from(form, provider, forms[provider]) if provider in forms else {}}
    try:
        row = await add_number(host, validate(NewNumber, data), user.username)
    except ApiError as exc:
        errors = {item["field"]: item["message"] for item in exc.details or [] if item.get("field")}
        errors.setdefault("_form", exc.message if not errors else t("new.invalid"))
        secrets = {f"{provider}.{field.name}" for field in forms.get(provider, []) if field.secret}
        kept = {name: value for name, value in values.items() if name not in secrets}
        return _form_page(request, kept, errors, exc.status)
    return done(request, f"/console/numbers/{row.id}")
