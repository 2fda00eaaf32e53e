"""The directory where the hookline processes of one machine pool their counts.

prometheus-client's multiprocess mode: each process writes its counters and histograms to its
own memory-mapped files (`counter_<pid>.db`, …) in one directory, and a scrape of any process
reads and sums them all. Its rules, and how they are kept here:

* The directory must be emptied before the processes start, or a restart would report the
  previous run's counts on top. Nothing tells a process whether it is the first: so each live
  process holds a shared `flock` on `.alive`, and a starting process that can take it exclusively
  is alone, and empties the directory. Starters take `.start` exclusively first, so two processes
  starting at once cannot both decide they are alone (`serve --workers N` starts N together).
* Files of dead processes stay, on purpose: a counter must not go down because the process that
  counted died. Only the `live*` gauges (`hookline_processes`) describe processes that are
  alive; their files are removed when their process is gone (`mark_process_dead`), at start and
  at every scrape, so a process killed with SIGKILL disappears from the sum at the next scrape.
  (The other gauge modes would keep a dead process's value; hookline uses only `livesum`.)
* The directory must be local to the machine (flock, process ids): one per machine, never on a
  shared network volume between instances — each instance reports its own machine's processes.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import IO

from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger("hookline.metrics")

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


SHARED_MEMORY = Path("/dev/shm")


def default_directory(data_dir: Path) -> Path:
    """Where the counts go when `[metrics] directory` is not set: in shared memory, named after the
    user and the data directory, so the processes of one installation meet there and no other's
    do. Memory, not disk: the kernel writes memory-mapped files on a disk back every few seconds,
    and the next increment can then wait for the journal (measured up to 4 ms on ext4). Local to
    the machine, as the files must be, even when `data_dir` is a volume the instances share.
    Without a usable /dev/shm (not Linux), or if that name is taken by another user:
    `<data_dir>/metrics`."""
    fallback = data_dir / "metrics"
    if not (SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK)):
        return fallback
    name = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    candidate = SHARED_MEMORY / f"hookline-metrics-{os.geteuid()}-{name}"
    try:
        candidate.mkdir(mode=0o700, exist_ok=True)
        owner = candidate.stat()
    except OSError:
        return fallback
    if owner.st_uid != os.geteuid() or owner.st_mode & 0o022:  # someone else's, or writable by others
        log.warning("metrics: %s is not ours alone; counting in %s instead", candidate, fallback)
        return fallback
    return candidate


class SharedDirectory:
    """One process's hold on the metrics directory: opened at start, closed at stop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._alive_file: IO[bytes] | None = None

    def open(self) -> None:
        """Join the directory; empty it first if no other process is using it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".start", "ab") as start:
            fcntl.flock(start, fcntl.LOCK_EX)  # released when the file closes
            alive = open(self.path / ".alive", "ab")
            try:
                fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            if alone:
                removed = self._wipe()
                if removed:
                    log.info("metrics: emptied %s (%d file(s) of a previous run)", self.path, removed)
            else:
                self.remove_dead()
            fcntl.flock(alive, fcntl.LOCK_SH)  # still under `.start`: no starter sees the gap
        self._alive_file = alive

    def close(self) -> None:
        """Leave: this process's live gauges go; its counters stay in the sum."""
        mark_process_dead(os.getpid(), str(self.path))
        if self._alive_file is not None:
            self._alive_file.close()
            self._alive_file = None

    def remove_dead(self) -> None:
        """Remove the live-gauge files of processes that are gone (killed, crashed)."""
        for name in os.listdir(self.path):
            match = _LIVE_GAUGE_FILE.match(name)
            if match and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), str(self.path))

    def collector(self) -> MultiProcessCollector:
        """Reads every process's files (registered nowhere: the scrape builds its own registry)."""
        self.remove_dead()
        return MultiProcessCollector(None, path=str(self.path))

    def _wipe(self) -> int:
        files = glob.glob(str(self.path / "*.db"))
        for file in files:
            os.remove(file)
        return len(files)
