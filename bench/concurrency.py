"""Bench 3, concurrency against a slow model: a loopback OpenAI-compatible server answering after
100 ms (bench/slow_llm.py), AGENTD_CONCURRENCY 1, 4, 16, 64: achieved time vs. the ideal
calls x latency / concurrency. Elapsed runs from the first drop to the last file's rename into
a terminal folder; efficiency = ideal / elapsed (1.0 is perfect overlap).
"""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (Agentd, arrival_times, bench_main, documents, drop_all, helper_process, print_figures,
                          temp_home, terminal_count)

LATENCY_S = 0.1
# concurrency -> files: about 3 s of ideal time each (64 is bounded by the daemon's CPU instead)
FULL_LEVELS = {1: 30, 4: 120, 16: 480, 64: 1280}
QUICK_LEVELS = {1: 3, 4: 8}
TIMEOUT_S = 300.0
SLOW_LLM = Path(__file__).resolve().parent / "slow_llm.py"


def model_env(port: int) -> dict[str, str]:
    return {"LLM_PROVIDER": "openai", "LLM_BASE_URL": f"http://127.0.0.1:{port}/v1", "LLM_MODEL": "bench-model",
            "LLM_API_KEY": "x", "LLM_PRICE_INPUT_PER_MTOK": "0.1", "LLM_PRICE_OUTPUT_PER_MTOK": "0.1",
            "MAX_COST_PER_RUN": "1", "LLM_TIMEOUT_S": "30"}


def server_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return json.loads(response.read())


def run_level(port: int, concurrency: int, files: int, seed: int) -> dict[str, Any]:
    docs = documents(files, seed=seed)  # a new seed per level: no run is a duplicate of another
    before = server_stats(port)["requests"]
    with temp_home(f"concurrency{concurrency}") as home, \
            Agentd(home, notify=True, AGENTD_CONCURRENCY=concurrency, **model_env(port)) as daemon:
        daemon.start().wait_ready()
        started = drop_all(home / "incoming", docs)
        finished = daemon.wait_finished(files, TIMEOUT_S)
        counts = terminal_count(home)
        arrivals = arrival_times(home)
        daemon.stop()
    calls = server_stats(port)["requests"] - before
    if finished < files or not arrivals:
        raise RuntimeError(f"concurrency {concurrency}: {finished} of {files} finished: {counts}")
    elapsed = max(arrivals.values()) - started
    ideal = calls * LATENCY_S / concurrency
    return {"concurrency": concurrency, "files": files, "calls": calls, **counts,
            "elapsed_s": round(elapsed, 3), "ideal_s": round(ideal, 3), "efficiency": round(ideal / elapsed, 3)}


def run(quick: bool = False, levels: dict[int, int] | None = None) -> dict[str, Any]:
    levels = levels or (QUICK_LEVELS if quick else FULL_LEVELS)
    rows = []
    with helper_process([str(SLOW_LLM), "--latency-ms", str(LATENCY_S * 1000), "--seconds", "1200"]) as (_, line):
        port = int(line.split()[1])
        for seed, (concurrency, files) in enumerate(levels.items(), start=100):
            rows.append(run_level(port, concurrency, files, seed))
        max_in_flight = server_stats(port)["max_in_flight"]
    result = {"latency_ms": LATENCY_S * 1000, "levels": rows, "max_in_flight_seen": max_in_flight}
    print_figures("concurrency", result)
    return result


def parse_levels(text: str) -> dict[int, int]:
    """"1:30,16:480" -> {1: 30, 16: 480} (concurrency: files)."""
    return {int(c): int(n) for c, n in (part.split(":") for part in text.split(","))}


def main() -> None:
    bench_main(__doc__, run, "concurrency 1 and 4 with a few files",
               levels={"type": parse_levels, "help": "e.g. 1:30,16:480 (concurrency:files)"})


if __name__ == "__main__":
    main()
