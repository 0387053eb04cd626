"""Bench 11, /health latency with a full archive: p50/p99/max of GET /health on a real daemon with
100,000 files (and their sidecars) already in archive/, side by side with an empty home.

The files are made with os.open/os.close in a loop under /tmp (removed afterwards). Requests go
one after another over one keep-alive connection, paced so the window spans the daemon's
background recount of the folders (agentd/spool/counts.py RECOUNT_EVERY_S): a scan of the
terminal folders on the event loop would show in p99 and max.
"""
from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Agentd, bench_main, percentile, print_figures, temp_home

FULL_FILES, QUICK_FILES = 100_000, 200
FULL_REQUESTS, QUICK_REQUESTS = 600, 40
FULL_RATE_PER_S, QUICK_RATE_PER_S = 25.0, 200.0
SIDECAR_BYTES = b'{"outcome": "archived", "workflow": "triage"}'


def fill_archive(home: Path, files: int) -> float:
    """`files` archived files with their sidecars; returns the seconds it took."""
    began = time.monotonic()
    archive = home / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for i in range(files):
        name = os.path.join(archive, f"doc-{i:06d}.txt")
        os.close(os.open(name, flags, 0o640))
        fd = os.open(name + ".meta.json", flags, 0o640)
        os.write(fd, SIDECAR_BYTES)
        os.close(fd)
    return time.monotonic() - began


def time_requests(port: int, requests: int, rate_per_s: float) -> tuple[list[float], dict[str, Any]]:
    """Per-request latency in ms of `requests` GET /health, and the last body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    body: dict[str, Any] = {}
    interval_s = 1.0 / rate_per_s
    try:
        for i in range(requests + 5):  # 5 warm-up requests, not counted
            began = time.perf_counter()
            conn.request("GET", "/health")
            response = conn.getresponse()
            raw = response.read()
            elapsed_ms = (time.perf_counter() - began) * 1000
            if response.status != 200:
                raise RuntimeError(f"/health answered {response.status}: {raw[:200]!r}")
            if i >= 5:
                latencies.append(elapsed_ms)
            body = json.loads(raw)
            time.sleep(max(0.0, interval_s - elapsed_ms / 1000))
    finally:
        conn.close()
    return latencies, body


def one_home(files: int, requests: int, rate_per_s: float) -> dict[str, Any]:
    with temp_home(f"health-{files}") as home:
        fill_s = fill_archive(home, files)
        with Agentd(home) as daemon:
            daemon.start()
            health_s = daemon.wait_health(timeout_s=120)
            latencies, body = time_requests(int(daemon.env["HEALTH_PORT"]), requests, rate_per_s)
            daemon.check_alive()
    return {"archived_files": files, "archive_count_on_health": body["queue"]["archive"],
            "fill_s": round(fill_s, 2), "exec_to_health_s": round(health_s, 2), "requests": len(latencies),
            "window_s": round(requests / rate_per_s, 1),
            "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(max(latencies), 2)}


def run(quick: bool = False, files: int | None = None, requests: int | None = None) -> dict[str, Any]:
    files = files if files is not None else (QUICK_FILES if quick else FULL_FILES)
    requests = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    rate = QUICK_RATE_PER_S if quick else FULL_RATE_PER_S
    result = {"empty": one_home(0, requests, rate), "full": one_home(files, requests, rate)}
    print_figures("health_latency: empty home", result["empty"])
    print_figures(f"health_latency: {files:,} files in archive/", result["full"])
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_FILES} files, {QUICK_REQUESTS} requests",
               files={"type": int}, requests={"type": int})


if __name__ == "__main__":
    main()
