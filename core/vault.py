"""Encryption of secrets at rest, with a key derived from hookline's secret key (core.keys).

Fernet (AES-128-CBC + HMAC-SHA256, from the `cryptography` package): authenticated, so a tampered
or foreign value fails loudly instead of decrypting to garbage.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SealedValueError(Exception):
    """A stored secret cannot be opened: another secret key, or the value was altered."""


def _fernet(secret_key: bytes) -> Fernet:
    derived = hashlib.sha256(b"hookline-vault-v1:" + secret_key).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(secret_key: bytes, value: str) -> str:
    return _fernet(secret_key).encrypt(value.encode()).decode()


def unseal(secret_key: bytes, sealed: str) -> str:
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise SealedValueError("a stored secret cannot be decrypted with this HOOKLINE_SECRET_KEY") from None
