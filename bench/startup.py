"""How long `hookline serve` takes to answer /healthz: on a fresh embedded default (a new SQLite
file, migrations and the secret key made on the way) and when restarted on it.

A start-up time is a benchmark number, not a test's: it moved here from a 2 s timed test that
failed whenever the machine was busy. The median of a few starts each, one at a time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench import hookline_config, servers
from bench.signed_requests import RequestBuilder

REPEATS = 3


def _time_to_ready(config: Path, port: int, home: Path) -> float:
    began = time.monotonic()
    with servers.serving(servers.hookline_command(config, port), port, home / "server.log", home):
        return time.monotonic() - began


def measure(workdir: Path, builder: RequestBuilder) -> dict[str, float]:
    """{"first_start_s", "restart_s"}: medians over REPEATS fresh homes, resp. restarts of one."""
    port = servers.free_port()
    first, again = [], []
    for attempt in range(REPEATS):
        home = workdir / f"startup-{attempt}"
        home.mkdir(parents=True)
        config = home / "hookline.toml"
        hookline_config.write(config, port, f"sqlite://{home / 'hookline.sqlite3'}", builder)
        first.append(_time_to_ready(config, port, home))
        again.append(_time_to_ready(config, port, home))
    return {"first_start_s": round(statistics.median(first), 3), "restart_s": round(statistics.median(again), 3),
            "repeats": REPEATS}
