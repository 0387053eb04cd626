"""Bench 4, backlog: 20,000 files already in incoming/ when agentd starts (offline provider).

Time to the first result (exec to the first rename into a terminal folder), drain rate (files
per second between the first and the last result), peak RSS (VmHWM of the daemon) and the CPU
a file cost the daemon and its parser processes (start-up included).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, arrival_times, bench_main, children_cpu_seconds, cpu_seconds, documents, drop_all,
                          mib, print_figures, temp_home, terminal_count)

FULL_FILES = 20_000
QUICK_FILES = 300
TIMEOUT_S = 420.0
SETTLE_S = 1.0  # the daemon's default: files younger than this at start-up wait for it


def run(quick: bool = False, files: int | None = None) -> dict[str, Any]:
    count = files or (QUICK_FILES if quick else FULL_FILES)
    with temp_home("backlog") as home, Agentd(home, notify=True) as daemon:
        (home / "incoming").mkdir()
        drop_all(home / "incoming", documents(count))
        time.sleep(SETTLE_S)  # a backlog is old: every file has settled before the daemon starts
        daemon.start()
        ready_s = daemon.wait_ready()
        peak_rss_seen = 0
        deadline = time.monotonic() + TIMEOUT_S
        while daemon.count_finished() < count and time.monotonic() < deadline:
            daemon.check_alive()
            peak_rss_seen = max(peak_rss_seen, daemon.rss_kib())
            time.sleep(0.25)
        peak_kib = daemon.peak_rss_kib()
        cpu_s, parser_cpu_s = cpu_seconds(daemon.pid), children_cpu_seconds(daemon.pid)
        counts = terminal_count(home)
        arrivals = sorted(arrival_times(home).values())
        daemon.stop()
        exec_wall = daemon.exec_wall
    if len(arrivals) < count:
        raise RuntimeError(f"backlog: {len(arrivals)} of {count} drained in {TIMEOUT_S:g}s: {counts}")
    drain_s = arrivals[-1] - arrivals[0]
    result = {"files": count, **counts, "ready_s": round(ready_s, 3),
              "first_result_s": round(arrivals[0] - exec_wall, 3),
              "drain_files_per_s": round((count - 1) / drain_s, 1) if drain_s > 0 else float("inf"),
              "total_s": round(arrivals[-1] - exec_wall, 1),
              "peak_rss_mib": mib(max(peak_kib, peak_rss_seen)),
              "cpu_ms_per_file": round(cpu_s * 1000 / count, 2), "parser_cpu_ms_per_file": round(parser_cpu_s * 1000 / count, 2)}
    print_figures("backlog", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_FILES} files instead of {FULL_FILES}", files={"type": int})


if __name__ == "__main__":
    main()
