"""Bench 7, traces: throughput with the OTLP trace exporter on vs off, and how soon after the
last file the collector has every span.

The same mixed documents go through agentd (fsync on, offline provider) twice: without an
endpoint, and exporting to a real OTLP/HTTP receiver on loopback (tests/traces/collector.py,
which decodes every request). Elapsed time runs from the first drop to the last rename into a
terminal folder (the file's ctime), as in bench/throughput.py. Off and on alternate for three
rounds; the figures are the median rounds, with every round's ratio beside them.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, bench_main, cpu_seconds, documents, drop_all, median, print_figures, temp_home,
                          wait_for)
from bench.throughput import elapsed_to_last
from tests.traces.collector import Collector

FULL_FILES = 1000
QUICK_FILES = 60
TIMEOUT_S = 240.0
SPANS_PER_FILE = 5
ROUNDS = 3  # the run, three steps, one model call


def run_agentd(docs: list[tuple[str, bytes]], collector: Collector | None) -> dict[str, Any]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"} if collector else {}
    with temp_home("traces") as home, Agentd(home, notify=True, **env) as daemon:
        daemon.start().wait_ready()
        cpu_before = cpu_seconds(daemon.pid)
        started = drop_all(home / "incoming", docs)
        finished = daemon.wait_finished(len(docs), TIMEOUT_S)
        done_at = time.time()
        expected = len(docs) * SPANS_PER_FILE
        exported = collector is None or wait_for(lambda: len(collector.spans()) >= expected, TIMEOUT_S, 0.02)
        export_s = time.time() - done_at
        cpu_used = cpu_seconds(daemon.pid) - cpu_before
        elapsed = elapsed_to_last(home, started)
        daemon.stop()
        if finished < len(docs) or not exported:
            raise RuntimeError(f"finished {finished} of {len(docs)}, spans {len(collector.spans()) if collector else 0}")
    figures = {"files": len(docs), "elapsed_s": round(elapsed, 3), "files_per_s": round(len(docs) / elapsed, 1),
               "cpu_ms_per_file": round(cpu_used * 1000 / len(docs), 2)}
    if collector is not None:
        figures.update(spans=len(collector.spans()), duplicates=len(collector.spans()) - len(collector.counts()),
                       batches=len(collector.acked), all_spans_in_s_after_last_file=round(export_s, 2))
    return figures


def run(quick: bool = False, files: int | None = None, rounds: int | None = None) -> dict[str, Any]:
    """Off and on in turn, `rounds` times (the machine is shared): the median rounds, the median of the
    rounds' on/off ratios, and every round's ratio."""
    docs = documents(files or (QUICK_FILES if quick else FULL_FILES))
    offs, ons = [], []
    for _ in range(rounds or (1 if quick else ROUNDS)):
        offs.append(run_agentd(docs, None))
        with Collector() as collector:
            ons.append(run_agentd(docs, collector))
    off, on = (min(runs, key=lambda r: abs(r["files_per_s"] - median([x["files_per_s"] for x in runs])))
               for runs in (offs, ons))
    ratios = [round(b["files_per_s"] / a["files_per_s"], 3) for a, b in zip(offs, ons)]  # a round: side by side
    result = {"files": len(docs), "rounds": len(offs), "exporter_off": off, "exporter_on": on,
              "ratio": median(ratios), "ratios": ratios,
              "cpu_ms_per_file_added": round(median([b["cpu_ms_per_file"] - a["cpu_ms_per_file"]
                                                     for a, b in zip(offs, ons)]), 2)}
    print_figures("traces", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_FILES} files instead of {FULL_FILES}, one round", files={"type": int},
               rounds={"type": int})


if __name__ == "__main__":
    main()
