"""Form fields generated from a provider's settings schema (the JSON Schema `GET /api/providers`
serves), and the settings read back from a submitted form.

A new provider gets its "Add number" form for free: strings become text inputs, secrets
(`"format": "password"`) password inputs, booleans checkboxes, enums selects; `description`
becomes the help text. Validation stays on the server, by the provider's own model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str  # text, password, url, number, checkbox, select, lines
    required: bool
    help: str | None
    default: Any
    choices: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        return self.kind == "password"


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` (an optional field) as X."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    return {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}} if len(options) == 1 else schema


def _kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "select"
    kind = schema.get("type")
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind == "array":
        return "lines"
    if schema.get("format") == "password" or schema.get("writeOnly"):
        return "password"
    if schema.get("format") == "uri" or (schema.get("pattern") or "").startswith("^https?"):
        return "url"
    return "text"


def fields_for(schema: dict[str, Any]) -> list[FormField]:
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop = _plain(raw)
        fields.append(FormField(
            name=name,
            label=prop.get("title") or name.replace("_", " ").capitalize(),
            kind=_kind(prop),
            required=name in required,
            help=prop.get("description"),
            default=prop.get("default"),
            choices=tuple(str(choice) for choice in prop.get("enum", ())),
        ))
    return fields


def settings_from(form: FormData, prefix: str, fields: list[FormField]) -> dict[str, Any]:
    """What the form says, as the provider's model takes it. Empty optional fields are left out
    (the model's default applies); so is an empty secret, which on an edit keeps the stored value."""
    data: dict[str, Any] = {}
    for field in fields:
        key = f"{prefix}.{field.name}"
        if field.kind == "checkbox":
            data[field.name] = form.get(key) == "on"
            continue
        value = form.get(key)
        if not isinstance(value, str) or value.strip() == "":
            continue
        value = value.strip()
        if field.kind == "lines":
            data[field.name] = [line.strip() for line in value.splitlines() if line.strip()]
        elif field.kind == "number":
            data[field.name] = _number(value)
        else:
            data[field.name] = value
    return data


def _number(value: str) -> int | float | str:
    """The number typed, or the text as it is (the model then says what is wrong with it)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
