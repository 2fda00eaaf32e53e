"""Running wrk and reading what it printed.

wrk's own report gives throughput, the latency distribution (``--latency``) and its error counts;
bench/post.lua adds the status codes it saw, how many requests it built and whether it had to
repeat any. Everything here is parsed from one run's output: no number is assumed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent / "post.lua"
CONNECTIONS = 64
THREADS = 2
#: Twilio gives up on a webhook after 15 s; wrk's default of 2 s would drop slow answers from the
#: latency percentiles instead of showing them.
TIMEOUT = "15s"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class WrkMissing(Exception):
    """wrk is not installed and could not be installed."""


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk not found; installing it: apt-get update && apt-get install -y wrk", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        raise WrkMissing("wrk is not installed and apt-get needs root; run: sudo apt-get install -y wrk")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        try:
            subprocess.run([*sudo, *command], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise WrkMissing(f"could not install wrk ({' '.join(command)}: {exc}); install it by hand: apt-get install -y wrk") from exc
    found = shutil.which("wrk")
    if not found:
        raise WrkMissing("apt-get reported success but wrk is still not on PATH")
    return found


@dataclass(frozen=True)
class Stream:
    """What post.lua sends: lines [first, end) of a signed request file, with the content type
    and the signature header of the provider that file was built for."""

    requests_file: Path
    first: int
    end: int
    content_type: str
    signature_header: str | None


def command(binary: str, url: str, seconds: float, stream: Stream) -> list[str]:
    """One bounded wrk run posting `stream` to `url`."""
    return [
        binary, f"--threads={THREADS}", f"--connections={CONNECTIONS}", f"--duration={max(1, round(seconds))}s",
        f"--timeout={TIMEOUT}", "--latency", f"--script={LUA_SCRIPT}", url,
        "--", str(stream.requests_file), str(stream.first), str(stream.end), str(THREADS),
        stream.content_type, stream.signature_header or "",
    ]


@dataclass
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99"
    non_2xx: int  # wrk's "Non-2xx or 3xx responses" (it counts status >= 400)
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout
    statuses: dict[int, int] = field(default_factory=dict)  # from post.lua's response()
    sent: int = 0  # requests post.lua built (includes the one wrk builds to check the script)
    wraps: int = 0  # times a thread ran out of lines and repeated its share
    output: str = ""


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Read one wrk run's stdout. Raises ValueError when the report is not there."""
    summary = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output, flags=re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, flags=re.MULTILINE)
    if not summary or not rate:
        raise ValueError("no wrk summary in the output:\n" + output[-2000:])
    latency = {
        percent: _ms(value, unit)
        for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, flags=re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    statuses_line = re.search(r"^bench-statuses:(.*)$", output, flags=re.MULTILINE)
    statuses = {int(code): int(n) for code, n in re.findall(r"(\d+)=(\d+)", statuses_line.group(1))} if statuses_line else {}
    sent = re.search(r"^bench-sent: (\d+)", output, flags=re.MULTILINE)
    wraps = re.search(r"^bench-wraps: (\d+)", output, flags=re.MULTILINE)
    return WrkResult(
        requests=int(summary.group(1)),
        seconds=_ms(summary.group(2), summary.group(3)) / 1000,
        requests_per_second=float(rate.group(1)),
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()))) if errors else {},
        statuses=statuses,
        sent=int(sent.group(1)) if sent else 0,
        wraps=int(wraps.group(1)) if wraps else 0,
        output=output,
    )


def run(binary: str, url: str, seconds: float, stream: Stream) -> WrkResult:
    """Load `url` for `seconds`; bounded by a hard timeout well past the run's own end."""
    completed = subprocess.run(
        command(binary, url, seconds, stream),
        capture_output=True, text=True, timeout=seconds + 60,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited {completed.returncode}: {completed.stderr.strip() or completed.stdout[-2000:]}")
    return parse(completed.stdout)
