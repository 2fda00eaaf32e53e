"""Who used the CPU during a measured run: the processes under test, or something else.

On a shared 2-core machine a test suite running beside the bench halves its numbers without any
error. This reads /proc around each measured run and reports the cores used by the machine, by
the bench's own processes (server, wrk, the PostgreSQL backends of the bench database) and by
everything else, so a run disturbed by other work says so instead of passing as a result.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
#: Other processes using more than this many cores make a case "disturbed".
DISTURBED_CORES = 0.25


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def _process_seconds(pid: int) -> float:
    """utime + stime of one process, 0 if it is gone."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / _TICKS


def postgres_backends(database: str) -> list[int]:
    """Backends serving `database` (their title is `postgres: … user database host …`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def idle_check(seconds: float = 1.0) -> float:
    """Cores busy over `seconds` while the bench itself does nothing."""
    busy, total = _machine_jiffies()
    time.sleep(seconds)
    busy2, total2 = _machine_jiffies()
    return (busy2 - busy) / max(1, total2 - total) * (os.cpu_count() or 1)


@dataclass
class Usage:
    seconds: float
    machine_cores: float  # cores busy on the whole machine, on average
    ours_cores: float  # server + wrk + PostgreSQL backends of the bench database
    others_cores: float  # everything else
    server_cores: float  # the server process alone: near 1.0 means one worker is CPU-bound

    @property
    def disturbed(self) -> bool:
        return self.others_cores > DISTURBED_CORES


class Window:
    """Measure CPU use between `start()` and `stop()`; wrk's share comes from the children
    rusage (wrk is a waited child), the server's and PostgreSQL's from /proc. The first pid is
    the server."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self._wall = time.monotonic()
        self._machine = _machine_jiffies()
        self._children = self._children_seconds()
        self._processes = {pid: _process_seconds(pid) for pid in self.pids}

    def stop(self) -> Usage:
        wall = time.monotonic() - self._wall
        busy, total = _machine_jiffies()
        cores = os.cpu_count() or 1
        machine = (busy - self._machine[0]) / max(1, total - self._machine[1]) * cores
        spent = {pid: max(0.0, _process_seconds(pid) - before) for pid, before in self._processes.items()}
        ours_cores = (self._children_seconds() - self._children + sum(spent.values())) / wall
        server_cores = spent.get(self.pids[0], 0.0) / wall if self.pids else 0.0
        return Usage(
            round(wall, 2), round(machine, 2), round(ours_cores, 2), round(max(0.0, machine - ours_cores), 2),
            round(server_cores, 2),
        )

    @staticmethod
    def _children_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
