"""The peers' own virtualenv, bench/.venv-peers: pywa, Flask, twilio and gunicorn at pinned versions.

Kept apart from hookline's .venv so the peers' dependencies (pywa's FastAPI and pydantic, Flask's
Werkzeug) neither change what hookline runs with nor get changed by it. It is made once and reused
while bench/peers/requirements.txt is unchanged: a stamp in the venv holds that file's hash, and a
different hash (or no stamp: a build that did not finish) rebuilds it from scratch. A lock file
keeps a test run and a bench run from building it at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
VENV = HERE.parent / ".venv-peers"
STAMP = VENV / ".requirements-sha256"
LOCK = HERE.parent / ".venv-peers.lock"
INSTALL_TIMEOUT = 900.0


class PeersEnvironmentFailed(Exception):
    """The peers' virtualenv could not be made; the message says which step and how it ended."""


def _wanted() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _ready(wanted: str) -> bool:
    try:
        return STAMP.read_text(encoding="ascii").strip() == wanted and (VENV / "bin" / "python").exists()
    except OSError:
        return False


def _run(step: str, args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeersEnvironmentFailed(f"{step} failed: {' '.join(args)}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise PeersEnvironmentFailed(f"{step} failed (exit {done.returncode}): {' '.join(args)}\n{tail}")


def ensure() -> Path:
    """The peers' venv's bin directory, building the venv first when it is missing or stale."""
    wanted = _wanted()
    if _ready(wanted):
        return VENV / "bin"
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then look again
        if not _ready(wanted):
            print(f"bench: installing the peers' environment (pywa, Flask, twilio) into {VENV.relative_to(HERE.parent.parent)}",
                  flush=True)
            _run("creating the virtualenv", [sys.executable, "-m", "venv", "--clear", str(VENV)])
            python = str(VENV / "bin" / "python")
            _run("installing the peers' packages",
                 [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)])
            STAMP.write_text(wanted + "\n", encoding="ascii")
    return VENV / "bin"


if __name__ == "__main__":
    print(ensure())
