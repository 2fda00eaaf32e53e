"""Seeded bodies for webhook routes: garbage that must never be stored, and mutants of a
provider's own samples that must never crash the app (a 500, or a 503 from a value storage
cannot hold). No dependency: `random.Random(seed)` makes every run repeatable."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

Body = tuple[str, bytes]  # (what it is, the bytes)


def garbage(rng: random.Random) -> Iterator[Body]:
    """Bodies that are no provider's message or status in any wire format."""
    yield "an empty", b""
    yield "a NUL-filled", b"\x00" * 64
    yield "an invalid UTF-8", b"\xff\xfe\xfd" + rng.randbytes(32)
    for _ in range(3):
        yield "a random-bytes", rng.randbytes(rng.randint(1, 400))
    for _ in range(2):
        yield "a random-text", _text(rng, rng.randint(1, 200)).encode()
    for scalar in (b"null", b"0", b'"hookline"', b"[]", b"{}", b"true"):
        yield "a JSON-scalar", scalar
    for _ in range(4):
        yield "a random-JSON", json.dumps(_value(rng, 3)).encode()
    yield "a deeply nested JSON", b"[" * 3000 + b"]" * 3000
    for _ in range(2):
        fields = [(_text(rng, rng.randint(1, 12)), _text(rng, rng.randint(0, 40))) for _ in range(rng.randint(1, 6))]
        yield "a random-form", urlencode(fields).encode()


def mutants(rng: random.Random, body: bytes, content_type: str | None, rounds: int) -> Iterator[Body]:
    """`rounds` variations of a real sample: fields dropped, retyped or blown up; then truncations."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    parsed_json = _json_or_none(body) if "json" in kind or not kind else None
    for _ in range(rounds):
        if parsed_json is not None:
            yield "a mutated-JSON sample", json.dumps(_mutate_json(rng, parsed_json)).encode()
        elif kind == "application/x-www-form-urlencoded":
            yield "a mutated-form sample", _mutate_form(rng, body)
        else:
            yield "a byte-flipped sample", _flip_bytes(rng, body)
    if body:
        yield "a truncated sample", body[: rng.randint(0, len(body) - 1)]
        yield "a half sample", body[: len(body) // 2]


def preview(body: bytes, limit: int = 80) -> str:
    text = repr(body[:limit])
    return text + (f"… ({len(body)} bytes)" if len(body) > limit else "")


def _text(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_letters + string.digits + string.punctuation + " ñüé漢😀"
    return "".join(rng.choice(alphabet) for _ in range(length))


def _value(rng: random.Random, depth: int) -> Any:
    """A random JSON value: scalars of every type, and nested lists and objects."""
    choice = rng.randrange(9 if depth > 0 else 7)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-(2**63), 2**63)
    if choice == 3:
        return rng.uniform(-1e12, 1e12)
    if choice == 4:
        return ""
    if choice == 5:
        return _text(rng, rng.randint(1, 30))
    if choice == 6:
        return "x" * rng.choice([256, 5000])  # longer than any id column
    if choice == 7:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {_text(rng, rng.randint(1, 10)): _value(rng, depth - 1) for _ in range(rng.randint(0, 4))}


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate_json(rng: random.Random, original: Any) -> Any:
    """A deep copy with one to three changes: a key removed, or a value replaced by another type."""
    value = json.loads(json.dumps(original))
    for _ in range(rng.randint(1, 3)):
        paths = [path for path in _paths(value) if path]
        if not paths:
            return _value(rng, 2)
        path = rng.choice(paths)
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and rng.random() < 0.35:
            del parent[path[-1]]
        else:
            parent[path[-1]] = _value(rng, 1)
    return value


def _mutate_form(rng: random.Random, body: bytes) -> bytes:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return _flip_bytes(rng, body)
    for _ in range(rng.randint(1, 3)):
        if not pairs:
            break
        index = rng.randrange(len(pairs))
        action = rng.randrange(4)
        if action == 0:
            del pairs[index]
        elif action == 1:
            pairs[index] = (pairs[index][0], rng.choice(["", "x" * 5000, _text(rng, 20), "-1", "null"]))
        elif action == 2:
            pairs.append((pairs[index][0], _text(rng, 10)))  # the same field twice
        else:
            pairs[index] = (_text(rng, 8), pairs[index][1])
    return urlencode(pairs).encode()


def _flip_bytes(rng: random.Random, body: bytes) -> bytes:
    if not body:
        return rng.randbytes(8)
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)
