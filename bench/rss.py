"""Resident memory of a server under load: its peak, and over a soak its curve.

Read from /proc in a background thread while wrk runs, for the server's whole process tree (a
server that forks workers counts them all). VmRSS is what the kernel holds for it; the issue's
budget ("RSS ≤ 150 MB after 5 minutes, growing < 5 % over its last 4") is stated in it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

INTERVAL = 0.25


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's), from /proc."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def tree_rss_mb(pid: int) -> float:
    """VmRSS of `pid` and all its descendants, in MB (10^6 bytes); 0 when it is gone."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
        pending += children(current)
    return total_kb * 1024 / 1e6


class Sampler:
    """`with Sampler(pid) as sampler:` … then `sampler.peak_mb` and `sampler.series`."""

    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid, self.interval = pid, interval
        self.series: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb in self.series), default=0.0)

    def _run(self) -> None:
        began = time.monotonic()
        while True:
            self.series.append((round(time.monotonic() - began, 2), round(tree_rss_mb(self.pid), 1)))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.series.append((self.series[-1][0] if self.series else 0.0, round(tree_rss_mb(self.pid), 1)))
