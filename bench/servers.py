"""Server processes under test: started on a free 127.0.0.1 port, always stopped.

Each server runs in its own session (process group), so stopping it also stops anything it
started, and nothing else: the harness signals only the groups it created.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Running:
    url: str  # http://127.0.0.1:PORT
    pid: int


class ServerFailed(Exception):
    """A server did not come up; the message carries the end of its log."""


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without hookline's own variables: the bench config says everything."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOOKLINE_") and key != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"exited {process.returncode} before answering {url}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ServerFailed(f"no answer from {url} within {READY_TIMEOUT:.0f} s:\n{log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful uvicorn stop), then SIGKILL if it lingers; the whole group either way."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"bench: pid {process.pid} still running {STOP_TIMEOUT:.0f} s after SIGTERM; killing it", flush=True)
        except ProcessLookupError:
            pass
    try:  # leftovers of the group (none expected from uvicorn with one worker)
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


@contextmanager
def serving(
    args: Sequence[str], port: int, log: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[Running]:
    """Run `args` until the block ends; yields once GET /healthz answers 200. `env` adds to the
    clean environment (what a ceiling app is configured with)."""
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(args), cwd=cwd, env={**clean_env(), **(env or {})}, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(process, base + "/healthz", log)
        yield Running(base, process.pid)
    finally:
        _stop(process)


def run_once(args: Sequence[str], cwd: Path, timeout: float = 120) -> None:
    """A command that must succeed (`hookline migrate`)."""
    completed = subprocess.run(list(args), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        raise ServerFailed(f"{' '.join(args)} exited {completed.returncode}:\n{completed.stderr.strip()}")


def uvicorn_command(app: str, port: int) -> list[str]:
    """A ceiling app (`bench.ceiling_app:app`) under the same uvicorn settings `hookline serve`
    uses (one worker, no access log, uvloop/httptools picked the same way)."""
    return [str(BIN / "python"), "-m", "uvicorn", app, "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning"]


def hookline_command(config: Path, port: int) -> list[str]:
    return [str(BIN / "hookline"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
