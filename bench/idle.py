"""Bench 5, idle footprint: RSS and CPU of a daemon with nothing to do, over 60 s.

The daemon first processes a few documents (so the code paths a working daemon has loaded are
loaded), then sits idle; CPU is utime + stime from /proc/<pid>/stat over the window.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, bench_main, cpu_seconds, documents, drop_all, mib, print_figures, temp_home)

FULL_S = 60.0
QUICK_S = 2.0
WARM_FILES = 12


def run(quick: bool = False, seconds: float | None = None) -> dict[str, Any]:
    window_s = seconds or (QUICK_S if quick else FULL_S)
    with temp_home("idle") as home, Agentd(home, notify=True) as daemon:
        daemon.start().wait_ready()
        drop_all(home / "incoming", documents(WARM_FILES))
        if daemon.wait_finished(WARM_FILES, 60) < WARM_FILES:
            raise RuntimeError("idle: the warm-up documents were not processed")
        time.sleep(1.0)
        cpu_before, began = cpu_seconds(daemon.pid), time.monotonic()
        rss_samples = []
        while time.monotonic() - began < window_s:
            time.sleep(min(1.0, window_s / 4))
            daemon.check_alive()
            rss_samples.append(daemon.rss_kib())
        cpu_used = cpu_seconds(daemon.pid) - cpu_before
        elapsed = time.monotonic() - began
        daemon.stop()
    result = {"window_s": round(elapsed, 1), "rss_mib": mib(rss_samples[-1]), "rss_max_mib": mib(max(rss_samples)),
              "cpu_s": round(cpu_used, 3), "cpu_percent": round(100 * cpu_used / elapsed, 2)}
    print_figures("idle", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_S:g} s instead of {FULL_S:g} s", seconds={"type": float})


if __name__ == "__main__":
    main()
