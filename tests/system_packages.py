"""Debian packages some tests drive as real programs (Chromium, poppler's pdftotext): installed
with apt-get when missing, as root with apt-get only, saying so with apt-get's output on the
terminal; otherwise the test fails with how to install them. Never a skip: a missing program is a
broken test machine, not a pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest


def ensure_program(
    program: Path, package: str, uncaptured: Callable[[], AbstractContextManager[object]] = nullcontext, hint: str = "",
) -> Path:
    """`program` (an absolute path), installing Debian's `package` first when it is missing."""
    if program.is_file():
        return program
    hint = hint or f"Install it with `apt-get install {package}` (Debian, Ubuntu)."
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(f"{program} is missing and cannot be installed here (apt-get: {apt or 'absent'}, uid {os.geteuid()}). {hint}",
                    pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with uncaptured():
        for command in ([apt, "update"], [apt, "install", "-y", "--no-install-recommends", package]):
            print(f"\ntests: {program} is missing; running: {' '.join(command)}", flush=True)
            code = subprocess.run(command, env=env, timeout=900).returncode
            if code != 0:
                pytest.fail(f"`{' '.join(command)}` failed with status {code} (its output is above). {hint}", pytrace=False)
    if not program.is_file():
        pytest.fail(f"apt-get installed {package} but {program} is still missing. {hint}", pytrace=False)
    return program
