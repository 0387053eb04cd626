"""Bench 6, start-up: time from exec to READY=1 (sd_notify) and to the first /health 200.

The bench binds its own AF_UNIX datagram socket and passes it as NOTIFY_SOCKET, as systemd
does; each start is on a fresh AGENTD_HOME. Reports the median and the slowest of the runs.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Agentd, bench_main, median, print_figures, temp_home

FULL_RUNS = 5
QUICK_RUNS = 1


def one_start() -> tuple[float, float]:
    """(exec to READY=1, exec to /health 200), each watched on its own from the exec on."""
    health: list[float] = []
    with temp_home("startup") as home, Agentd(home, notify=True) as daemon:
        daemon.start()
        poller = threading.Thread(target=lambda: health.append(daemon.wait_health()), daemon=True)
        poller.start()
        ready_s = daemon.wait_ready()
        poller.join(timeout=35)
        daemon.stop()
    if not health:
        raise RuntimeError("/health never answered 200")
    return ready_s, health[0]


def run(quick: bool = False, runs: int | None = None) -> dict[str, Any]:
    times = [one_start() for _ in range(runs or (QUICK_RUNS if quick else FULL_RUNS))]
    ready, health = [t[0] for t in times], [t[1] for t in times]
    result = {"runs": len(times), "ready_s": round(median(ready), 3), "ready_max_s": round(max(ready), 3),
              "health_s": round(median(health), 3), "health_max_s": round(max(health), 3)}
    print_figures("startup", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_RUNS} start instead of {FULL_RUNS}", runs={"type": int})


if __name__ == "__main__":
    main()
