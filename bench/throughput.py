"""Bench 1, throughput: mixed documents dropped into a running incoming/, files/s side by side.

agentd (fsync on, offline provider) vs. the bare watchdog renamer (bench/baseline_watchdog.py)
vs. agentd with AGENTD_FSYNC=0 vs. agentd answering with the offline rules as they were before
agentd/workflows/triage_rules/ (bench/old_rules_workflow.py: what the rest of agentd costs).
Elapsed time runs from the first drop to the last rename into a terminal folder (the file's
ctime), so polling adds nothing to it. CPU is the daemon's and, apart, its parser processes'.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, arrival_times, bench_main, children_cpu_seconds, cpu_seconds, documents,
                          drop_all, helper_process, print_figures, temp_home, terminal_count, wait_for)

FULL_FILES = 2000
QUICK_FILES = 60
TIMEOUT_S = 240.0
BASELINE = Path(__file__).resolve().parent / "baseline_watchdog.py"
OLD_RULES = Path(__file__).resolve().parent / "old_rules_workflow.py"


def elapsed_to_last(home: Path, started: float) -> float:
    arrivals = arrival_times(home)
    return max(arrivals.values()) - started if arrivals else float("nan")


def run_baseline(docs: list[tuple[str, bytes]]) -> dict[str, Any]:
    with temp_home("baseline") as home:
        with helper_process([str(BASELINE), str(home), "--seconds", str(TIMEOUT_S)]) as (proc, _):
            cpu_before = cpu_seconds(proc.pid)
            started = drop_all(home / "incoming", docs)
            done = wait_for(lambda: terminal_count(home)["archive"] >= len(docs), TIMEOUT_S, 0.02)
            cpu_used = cpu_seconds(proc.pid) - cpu_before
            archived = terminal_count(home)["archive"]
            elapsed = elapsed_to_last(home, started)
        if not done:
            raise RuntimeError(f"baseline archived {archived} of {len(docs)}")
    return {"files": len(docs), "archived": archived, "elapsed_s": round(elapsed, 3),
            "files_per_s": round(len(docs) / elapsed, 1), "cpu_ms_per_file": round(cpu_used * 1000 / len(docs), 2)}


def run_agentd(docs: list[tuple[str, bytes]], fsync: bool, **env: Any) -> dict[str, Any]:
    with temp_home("throughput") as home, Agentd(home, notify=True, AGENTD_FSYNC=int(fsync), **env) as daemon:
        daemon.start().wait_ready()
        cpu_before, children_before = cpu_seconds(daemon.pid), children_cpu_seconds(daemon.pid)
        started = drop_all(home / "incoming", docs)
        finished = daemon.wait_finished(len(docs), TIMEOUT_S)
        cpu_used = cpu_seconds(daemon.pid) - cpu_before
        children_used = children_cpu_seconds(daemon.pid) - children_before
        counts = terminal_count(home)
        elapsed = elapsed_to_last(home, started)
        daemon.stop()
        if finished < len(docs) or sum(counts.values()) < len(docs):
            raise RuntimeError(f"agentd finished {finished} of {len(docs)}: {counts}")
    return {"files": len(docs), **counts, "elapsed_s": round(elapsed, 3),
            "files_per_s": round(len(docs) / elapsed, 1),
            "cpu_ms_per_file": round(cpu_used * 1000 / len(docs), 2),
            "parser_cpu_ms_per_file": round(children_used * 1000 / len(docs), 2)}


def run(quick: bool = False, files: int | None = None) -> dict[str, Any]:
    docs = documents(files or (QUICK_FILES if quick else FULL_FILES))
    baseline = run_baseline(docs)
    agentd = run_agentd(docs, fsync=True)
    nofsync = run_agentd(docs, fsync=False)
    old_rules = run_agentd(docs, fsync=True, AGENTD_WORKFLOWS=str(OLD_RULES))
    result = {"files": len(docs), "baseline": baseline, "agentd": agentd, "agentd_fsync_off": nofsync,
              "agentd_old_rules": old_rules, "ratio_old_rules": round(old_rules["files_per_s"] / baseline["files_per_s"], 3),
              "ratio": round(agentd["files_per_s"] / baseline["files_per_s"], 3),
              "ratio_fsync_off": round(nofsync["files_per_s"] / baseline["files_per_s"], 3)}
    print_figures("throughput", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_FILES} files instead of {FULL_FILES}", files={"type": int})


if __name__ == "__main__":
    main()
