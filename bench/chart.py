"""The PNG beside each run's table: throughput, p99 latency and memory, one bar per case.

Throughput and p99 are on log scales: the bare ceiling is tens of thousands of requests per
second and a storing path hundreds, an inbound p99 tens of milliseconds and a drain's seconds,
and all must stay readable. A soak adds its RSS curve. matplotlib (the
`bench` extra) draws it: a chart is not code worth writing by hand.
"""

from __future__ import annotations

from pathlib import Path

from bench.cases import CaseResult

COLOURS = {"ceiling": "#9e9e9e", "peer": "#f4a261", "outbound": "#2a9d8f", "soak": "#6d597a"}
HOOKLINE = "#264653"


def _colour(case: CaseResult) -> str:
    return COLOURS.get(case.key.split("-")[0], HOOKLINE)


def write(results: list[CaseResult], path: Path, title: str) -> Path:
    import matplotlib  # noqa: PLC0415 - only `make bench` needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    measured = [case for case in results if case.rate() is not None]
    soak = next((case for case in measured if case.key.startswith("soak-") and case.rss_series), None)
    panels = 4 if soak else 3
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 1.2 + 0.42 * max(len(measured), 4)))
    names = [case.name for case in measured]
    colours = [_colour(case) for case in measured]
    positions = range(len(measured))

    rate, p99, memory = axes[0], axes[1], axes[2]
    rate.barh(positions, [case.rate() or 0 for case in measured], color=colours)
    rate.set_xscale("log")
    rate.set_xlabel("req/s (outbound: msg/s), log scale")
    p99.barh(positions, [case.latency_ms("99") or 0 for case in measured], color=colours)
    p99.axvline(35, color="#e63946", linestyle="--", linewidth=1)
    p99.set_xscale("log")  # a drain's p99 is its backlog's wait, seconds; inbound's tens of ms
    p99.set_xlabel("p99 latency, ms, log scale (dashed: the 35 ms target)")
    memory.barh(positions, [case.peak_rss_mb or 0 for case in measured], color=colours)
    memory.axvline(150, color="#e63946", linestyle="--", linewidth=1)
    memory.set_xlabel("peak RSS of the server, MB (dashed: 150 MB)")
    for axis in (rate, p99, memory):
        axis.set_yticks(list(positions))
        axis.set_yticklabels(names if axis is rate else [""] * len(names), fontsize=8)
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
    if soak:
        curve = axes[3]
        curve.plot([at for at, _ in soak.rss_series], [mb for _, mb in soak.rss_series], color=COLOURS["soak"])
        curve.axhline(150, color="#e63946", linestyle="--", linewidth=1)
        curve.set_xlabel("seconds of load")
        curve.set_ylabel("RSS, MB")
        curve.set_title(soak.name, fontsize=9)
        curve.set_ylim(bottom=0)
        curve.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
