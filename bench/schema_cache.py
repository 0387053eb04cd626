"""Bench: 20,000 distinct inline schemas through agentd.schemas; the cache stays bounded.

Prints the peak cache size, the cost of a new and of a cached validator, and the memory the
cache holds at the end (tracemalloc). Usage: python bench/schema_cache.py [--quick]
"""
from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agentd import schemas

FULL = 20_000
QUICK = 1_000


def inline(n: int) -> dict[str, Any]:
    return {"type": "object", "required": ["label"], "properties": {"label": {"enum": [f"kind-{n}", "other"]}}}


def run(quick: bool = False) -> dict[str, Any]:
    count = QUICK if quick else FULL
    tracemalloc.start()
    peak_size = 0
    started = time.perf_counter()
    for n in range(count):
        schemas.check(inline(n), {"label": f"kind-{n}"})
        peak_size = max(peak_size, schemas.cache_size())
    new_us = (time.perf_counter() - started) / count * 1e6
    started = time.perf_counter()
    for _ in range(count):
        schemas.check(inline(count - 1), {"label": "other"})
    cached_us = (time.perf_counter() - started) / count * 1e6
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"schemas": count, "max_cached": schemas.MAX_CACHED, "peak_cache_size": peak_size,
            "new_validator_us": round(new_us, 1), "cached_check_us": round(cached_us, 1),
            "held_mib": round(held / 2**20, 2)}


if __name__ == "__main__":
    figures = run(quick="--quick" in sys.argv)
    for name, value in figures.items():
        print(f"{name}: {value}")
    sys.exit(0 if figures["peak_cache_size"] <= figures["max_cached"] else 1)
