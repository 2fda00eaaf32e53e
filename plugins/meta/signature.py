"""Meta's webhook proofs: ``X-Hub-Signature-256`` on POSTs and the ``hub.*`` GET handshake.

``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>`` (PROTOCOLS.md 2.2). The
HMAC is over the **raw bytes** as received: Meta escapes ``/`` as ``\\/`` and non-ASCII as
``\\uXXXX``, so hashing a re-serialised body would fail. One app secret per Meta app; several apps
on one hookline means several secrets, and each distinct one is tried.

Pure functions, no I/O; every comparison is ``hmac.compare_digest``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence

SIGNATURE_HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def sign(body: bytes, app_secret: bytes | str) -> str:
    """The header value Meta sends for ``body``: ``sha256=`` + lower-case hex."""
    key = app_secret.encode("utf-8") if isinstance(app_secret, str) else app_secret
    return PREFIX + hmac.digest(key, body, "sha256").hex()


def signing_secrets(body: bytes, header: str | None, secrets: Iterable[bytes | str]) -> list[bytes | str]:
    """Those of ``secrets`` whose signature of ``body`` is ``header`` (normally one, or none).

    Every distinct secret is checked (no early exit), each in constant time. Never raises: a
    missing or garbled header is simply no proof.
    """
    if not header or not isinstance(header, str):
        return []
    provided = header.strip()
    if provided[: len(PREFIX)].lower() != PREFIX:
        return []
    try:
        provided_bytes = provided[len(PREFIX):].lower().encode("ascii")
    except UnicodeEncodeError:
        return []
    matched: list[bytes | str] = []
    seen: set[bytes] = set()
    for secret in secrets:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if not key or key in seen:
            continue
        seen.add(key)
        expected = hmac.digest(key, body, "sha256").hex().encode("ascii")
        if hmac.compare_digest(expected, provided_bytes):
            matched.append(secret)
    return matched


def is_valid(body: bytes, header: str | None, secrets: Iterable[bytes | str]) -> bool:
    """True if ``header`` proves that one of the apps (``secrets``) signed exactly ``body``."""
    return bool(signing_secrets(body, header, secrets))


def handshake_challenge(query: Mapping[str, Sequence[str]], verify_tokens: Iterable[str]) -> str | None:
    """The ``hub.challenge`` to echo if this GET is Meta's verification handshake for one of
    ``verify_tokens``; None (answer 403) otherwise.

    ``query`` is the query string as ``parse_qs`` gives it. ``hub.mode`` must be ``subscribe`` and
    ``hub.verify_token`` must equal a configured token (each compared in constant time).
    """
    mode = _one(query, "hub.mode")
    token = _one(query, "hub.verify_token")
    challenge = _one(query, "hub.challenge")
    if mode != "subscribe" or token is None or challenge is None:
        return None
    provided = token.encode("utf-8")
    matched = False
    for candidate in verify_tokens:
        if candidate and hmac.compare_digest(candidate.encode("utf-8"), provided):
            matched = True
    return challenge if matched else None


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    if not values or len(values) != 1:  # absent, or repeated: not what Meta sends
        return None
    return values[0]
