"""Bench 2, drop-to-terminal latency at a steady rate (default 20 files/s), settle time included.

Each file is written into incoming/ (open, write, close) on a fixed schedule; its latency runs
from the end of that write to its rename into a terminal folder (the file's ctime). The daemon
runs with its shipped defaults (AGENTD_SETTLE_S=1, AGENTD_RESCAN_S=10). With --mode mv the
files are written elsewhere first and renamed into incoming/, the atomic way to drop a file.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, arrival_times, bench_main, document, percentile, print_figures, temp_home,
                          terminal_count, write_file)

RATE_PER_S = 20.0
FULL_S = 30.0
QUICK_S = 1.0
SETTLE_AFTER_S = 30.0


def drop_steadily(home: Path, count: int, rate_per_s: float, mode: str) -> dict[str, float]:
    """Drop `count` files at `rate_per_s` on an absolute schedule; name -> when it was complete."""
    incoming, stage = home / "incoming", home.parent / "stage"
    stage.mkdir(exist_ok=True)
    dropped: dict[str, float] = {}
    start = time.monotonic() + 0.1
    for i in range(count):
        delay = start + i / rate_per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name, data = document(i)
        if mode == "mv":
            write_file(stage / name, data)
            os.rename(stage / name, incoming / name)
        else:
            write_file(incoming / name, data)
        dropped[name] = time.time()
    return dropped


def run(quick: bool = False, seconds: float | None = None, rate: float = RATE_PER_S,
        mode: str = "write") -> dict[str, Any]:
    count = max(1, int((seconds or (QUICK_S if quick else FULL_S)) * rate))
    with temp_home("latency") as home, Agentd(home, notify=True) as daemon:
        daemon.start().wait_ready()
        began = time.monotonic()
        dropped = drop_steadily(home, count, rate, mode)
        achieved_rate = count / max(time.monotonic() - began - 0.1, 1e-9)
        daemon.wait_finished(count, SETTLE_AFTER_S)
        arrived = arrival_times(home)
        counts = terminal_count(home)
        daemon.stop()
    latencies = [arrived[name] - at for name, at in dropped.items() if name in arrived]
    if len(latencies) < count:
        raise RuntimeError(f"only {len(latencies)} of {count} files reached a terminal folder: {counts}")
    result = {"mode": mode, "files": count, "rate_per_s": round(achieved_rate, 1), **counts,
              "p50_s": round(percentile(latencies, 50), 3), "p95_s": round(percentile(latencies, 95), 3),
              "p99_s": round(percentile(latencies, 99), 3), "max_s": round(max(latencies), 3)}
    print_figures(f"latency ({mode})", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_S:g} s of drops instead of {FULL_S:g} s", seconds={"type": float},
               rate={"type": float, "default": RATE_PER_S, "help": "files per second"},
               mode={"choices": ("write", "mv"), "default": "write"})


if __name__ == "__main__":
    main()
