"""Bench 7, loop lag: the worst event-loop stall while heavy files are parsed, inline vs isolated.

Drops a PDF of many text operators and an HTML page of unclosed tags (seconds of parser CPU
each, tests/heavy_inputs.py) with ordinary documents into a running agentd, and measures
from outside by GETting /health every 10 ms (the worst answer time) and, where the daemon
has it, from inside with /metrics' agentd_event_loop_lag_seconds. Side by side:
- inline: agentd at BASELINE_COMMIT, the last one that extracted text on the event loop
  (exported with `git archive` into a temp folder and run from there);
- isolated: this checkout, where the parse runs in parser processes (agentd/sandbox.py).
The deadline is the shipped 60 s, so both parse the heavy files to the end.
"""
from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (ROOT, Agentd, bench_main, documents, drop_all, percentile, print_figures,
                          proc_status_kib, source_at, temp_home, terminal_count)
from tests.heavy_inputs import slow_html, slow_pdf
from tests.helpers import HealthPoller, metric

BASELINE_COMMIT = "0eacb58"
FULL = {"ordinary": 200, "pdf_operators": 100_000, "html_tags": 6_000}
QUICK = {"ordinary": 30, "pdf_operators": 20_000, "html_tags": 2_000}
TIMEOUT_S = 180.0
TARGET_S = 0.1


def parsers(pid: int) -> list[int]:
    """The daemon's child processes (its parser workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def one_run(source: Path, sizes: dict[str, int]) -> dict[str, Any]:
    docs = [("slow.pdf", slow_pdf(sizes["pdf_operators"])), ("slow.html", slow_html(sizes["html_tags"])),
            *documents(sizes["ordinary"])]
    with temp_home("looplag") as home, Agentd(home, notify=True, source=source) as daemon:
        daemon.start().wait_ready()
        with HealthPoller(daemon.health_url, interval_s=0.01) as poller:
            began = time.monotonic()
            drop_all(home / "incoming", docs)
            finished = daemon.wait_finished(len(docs), TIMEOUT_S)
            elapsed = time.monotonic() - began
        with urllib.request.urlopen(daemon.health_url.replace("/health", "/metrics"), timeout=10) as response:
            page = response.read().decode()
        workers = parsers(daemon.pid)
        parser_rss = sum(proc_status_kib(pid, "VmRSS") for pid in workers)
        counts = terminal_count(home)
        daemon.stop()
    if finished < len(docs):
        raise RuntimeError(f"finished {finished} of {len(docs)}: {counts}")
    ms = sorted(s * 1000 for s in poller.latencies_s)
    lag = metric(page, "agentd_event_loop_lag_seconds") if "agentd_event_loop_lag_seconds " in page else None
    return {"files": len(docs), **counts, "elapsed_s": round(elapsed, 2), "health_polls": len(ms),
            "health_failures": len(poller.failures), "health_worst_ms": round(ms[-1], 1),
            "health_p99_ms": round(percentile(ms, 99), 1), "health_p50_ms": round(percentile(ms, 50), 1),
            "loop_lag_gauge_ms": None if lag is None else round(lag * 1000, 1),
            "parsers": len(workers), "parser_rss_mib": round(parser_rss / 1024, 1)}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    heavy = {"slow.pdf_bytes": len(slow_pdf(sizes["pdf_operators"])),
             "slow.html_bytes": len(slow_html(sizes["html_tags"]))}
    with source_at(BASELINE_COMMIT) as old:
        inline = one_run(old, sizes)
    isolated = one_run(ROOT, sizes)
    result = {"baseline_commit": BASELINE_COMMIT, **heavy, "ordinary": sizes["ordinary"],
              "inline": inline, "isolated": isolated, "target_ms": TARGET_S * 1000,
              "holds": (isolated["loop_lag_gauge_ms"] or 0) <= TARGET_S * 1000}
    print_figures("loop lag", result)
    return result


def main() -> None:
    bench_main(__doc__, run, "smaller heavy files and fewer ordinary ones")


if __name__ == "__main__":
    main()
