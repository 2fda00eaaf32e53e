"""Webhook deliveries as a provider makes them, and the ways a forger would spoil their proof.

A `Delivery` is what a provider sends to hookline: a path below the server, a body, headers. A
provider's test builds one in the provider's wire format, proves it the way the provider does
(signs it, or puts a secret in its URL) and posts it to the app.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from core.types import SimulatedWebhook


@dataclass(frozen=True)
class Delivery:
    """One webhook request: `path` below the server (``/webhooks/whatsapp/<provider>…``)."""

    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"

    def replace(self, **changes: Any) -> Delivery:
        return dataclasses.replace(self, **changes)

    def with_headers(self, **headers: str) -> Delivery:
        """A copy with these headers added (or replaced, whatever their case)."""
        names = {name.lower() for name in headers}
        kept = {name: value for name, value in self.headers.items() if name.lower() not in names}
        return self.replace(headers={**kept, **headers})

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)

    @classmethod
    def from_simulated(cls, simulated: SimulatedWebhook) -> Delivery:
        return cls(simulated.path, simulated.body, dict(simulated.headers), simulated.method)


def json_delivery(path: str, payload: Any, **headers: str) -> Delivery:
    """A JSON body, compact, with its content type."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Delivery(path, body, {"Content-Type": "application/json", **headers})


def form_delivery(path: str, fields: Mapping[str, str] | list[tuple[str, str]], **headers: str) -> Delivery:
    """A url-encoded form body, with its content type."""
    items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    return Delivery(path, urlencode(items).encode(), {"Content-Type": "application/x-www-form-urlencoded", **headers})


async def post(client: httpx.AsyncClient, delivery: Delivery) -> httpx.Response:
    """Send `delivery` to the app behind `client` (in-process or over HTTP)."""
    headers = {name: value for name, value in delivery.headers.items() if name.lower() != "content-length"}
    return await client.request(delivery.method, delivery.path, content=delivery.body, headers=headers)


def corrupted(value: str) -> str:
    """`value` with one character in its middle changed to another of the same kind."""
    if not value:
        return "x"
    index = len(value) // 2
    char = value[index]
    if char.isdigit():
        replacement = str((int(char) + 1) % 10)
    elif "a" <= char <= "z":
        replacement = chr((ord(char) - ord("a") + 1) % 26 + ord("a"))
    elif "A" <= char <= "Z":
        replacement = chr((ord(char) - ord("A") + 1) % 26 + ord("A"))
    else:
        replacement = "A"
    return value[:index] + replacement + value[index + 1:]


def proof_of(unproven: Delivery, proven: Delivery) -> tuple[dict[str, str], tuple[str, str] | None]:
    """What proving added: the headers it set or changed, and the path (before, after) if it changed."""
    before = {name.lower(): value for name, value in unproven.headers.items()}
    headers = {name: value for name, value in proven.headers.items() if before.get(name.lower()) != value}
    path = (unproven.path, proven.path) if unproven.path != proven.path else None
    return headers, path


def tampered(unproven: Delivery, proven: Delivery) -> Delivery:
    """`proven` with its proof spoiled: one character changed in each header or path part that
    proving added. Raises ValueError when proving changed neither headers nor path."""
    headers, path = proof_of(unproven, proven)
    if not headers and path is None:
        raise ValueError("proving the delivery changed neither its headers nor its path: there is no proof to tamper with")
    result = proven.with_headers(**{name: corrupted(value) for name, value in headers.items()})
    if path is not None:
        before, after = path
        start = len(_common_prefix(before, after))
        end = len(after) - len(_common_prefix(before[start:][::-1], after[start:][::-1]))
        changed = after[start:end] or after[start:]
        result = result.replace(path=after[:start] + corrupted(changed) + after[start + len(changed):])
    return result


def with_proof_of(proven: Delivery, unproven_other: Delivery) -> Delivery:
    """Another body sent with `proven`'s proof (its headers and path): a body changed in transit."""
    return proven.replace(body=unproven_other.body)


def _common_prefix(first: str, second: str) -> str:
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    return first[:length]
