"""What the browser tests share besides fixtures: Debian's Chromium (found, or installed with
apt-get), the server they drive, and the record of what went wrong inside a page.

Playwright only drives the browser; it never downloads one (`playwright install` needs the
internet). The executable is /usr/bin/chromium from Debian's `chromium` package.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from tests.fake_twilio import FakeTwilio
from tests.system_packages import ensure_program
from tests.test_process import HOOKLINE, Server, cli_env

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: nothing Chromium would fetch by itself (updates, sync, QUIC
# probes, first-run pages) may be tried. launch() gives each browser a fresh user-data dir.
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
INSTALL_HINT = (
    "tests/browser needs Debian's Chromium at /usr/bin/chromium; as root run "
    "`apt-get update && apt-get install -y --no-install-recommends chromium` "
    "(never `playwright install`: the tests drive the system's browser)."
)

ADMIN = "ada"
PASSWORD = "correct horse battery"


def ensure_chromium(uncaptured: Callable[[], AbstractContextManager[object]] = nullcontext) -> Path:
    """/usr/bin/chromium, installed first when missing (tests/system_packages.py)."""
    return ensure_program(CHROMIUM, "chromium", uncaptured, INSTALL_HINT)


@dataclass
class Console:
    """A running `hookline serve` with an admin, and the fake Twilio API its numbers send through."""

    server: Server
    twilio: FakeTwilio
    backend: str

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def serving_on(port: int, config: Path, cwd: Path) -> Iterator[Server]:
    """tests/test_process.py's `serving`, on a port chosen before the config was written (its
    `public_url` names the port). Stopped with SIGTERM (then killed) on the way out."""
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as out:
        spawned_at = time.monotonic()
        process = subprocess.Popen([str(HOOKLINE), "serve", "--config", str(config), "--port", str(port)],
                                   cwd=cwd, env=cli_env(), stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log, spawned_at)
    try:
        server.wait_healthy(15)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class BrowserPage:
    """A page and what went wrong inside it — uncaught errors, console errors (a Content-Security-
    Policy violation is one), responses of 400 or more — which must stay empty."""

    page: Any  # playwright.async_api.Page
    errors: list[str] = field(default_factory=list)

    def watch(self) -> BrowserPage:
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        return self

    def _console(self, message: Any) -> None:
        url = message.location.get("url", "")
        # Chromium asks for /favicon.ico by itself and the console has none: not a page's doing.
        if message.type == "error" and not url.endswith("/favicon.ico"):
            self.errors.append(f"console: {message.text} ({url})")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")
