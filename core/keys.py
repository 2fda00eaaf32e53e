"""hookline's own secret key: signs media URLs (and, later, encrypts stored secrets).

Taken from HOOKLINE_SECRET_KEY; on the embedded default, generated once into the data folder
(mode 0600) with a warning, so a fresh checkout runs without setup. Several instances must share
one key: set the variable in scale mode.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("hookline")

SECRET_KEY_ENV_VAR = "HOOKLINE_SECRET_KEY"


class SecretKey:
    """The key, read (or generated) on first use: commands that sign nothing create no key file."""

    def __init__(self, data_dir: Path, env: Mapping[str, str]) -> None:
        self._data_dir = data_dir
        self._env = env
        self._value: bytes | None = None

    @property
    def value(self) -> bytes:
        if self._value is None:
            self._value = secret_key(self._data_dir, self._env)
        return self._value


def secret_key(data_dir: Path, env: Mapping[str, str]) -> bytes:
    if env.get(SECRET_KEY_ENV_VAR):
        return env[SECRET_KEY_ENV_VAR].encode()
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    log.warning("generated a secret key in %s; set %s to share one key between instances", path, SECRET_KEY_ENV_VAR)
    return key
