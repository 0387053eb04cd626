"""Side by side: this checkout's agentd against an earlier commit's, in one run, rounds alternating.

    .venv/bin/python bench/compare.py                      # against 0eacb58, two rounds
    .venv/bin/python bench/compare.py --base HEAD~5 --only backlog,idle --rounds 3

Each round runs every chosen bench on the base tree, then on this one (the next round the other
way round), so a shared machine's drift falls on both alike. The base is the `agentd` package of
that commit exported with `git archive`; the bench scripts, the documents and the Python are this
checkout's. Prints one row a figure: the base's values, this tree's, and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import backlog, concurrency, idle, latency, startup, throughput
from bench.common import ROOT, SOURCE, documents, exit_on_sigterm, source_at

BASE = "0eacb58"
# bench -> (its run with full or smaller sizes, the figures to compare: name -> how to read it, higher is better?)
Figures = dict[str, tuple[Callable[[dict[str, Any]], float], bool]]


def _throughput(files: int, fsync: bool) -> Callable[[], dict[str, Any]]:
    return lambda: throughput.run_agentd(documents(files), fsync=fsync)


BENCHES: dict[str, tuple[Callable[[bool], dict[str, Any]], Figures]] = {
    "throughput": (lambda quick: _throughput(60 if quick else 2000, True)(), {
        "files/s": (lambda r: r["files_per_s"], True),
        "daemon CPU ms/file": (lambda r: r["cpu_ms_per_file"], False),
        "parser CPU ms/file": (lambda r: r["parser_cpu_ms_per_file"], False)}),
    "throughput_nofsync": (lambda quick: _throughput(60 if quick else 2000, False)(), {
        "files/s": (lambda r: r["files_per_s"], True),
        "daemon CPU ms/file": (lambda r: r["cpu_ms_per_file"], False)}),
    "latency": (lambda quick: latency.run(quick, mode="write"), {
        "p50 s": (lambda r: r["p50_s"], False), "p99 s": (lambda r: r["p99_s"], False)}),
    "concurrency": (lambda quick: concurrency.run(quick, levels={16: 60 if quick else 480}), {
        "of ideal at 16": (lambda r: r["levels"][0]["efficiency"], True)}),
    "backlog": (lambda quick: backlog.run(quick), {
        "drain files/s": (lambda r: r["drain_files_per_s"], True),
        "first result s": (lambda r: r["first_result_s"], False),
        "peak RSS MiB": (lambda r: r["peak_rss_mib"], False),
        "daemon CPU ms/file": (lambda r: r["cpu_ms_per_file"], False),
        "parser CPU ms/file": (lambda r: r["parser_cpu_ms_per_file"], False)}),
    "idle": (lambda quick: idle.run(quick), {
        "RSS MiB": (lambda r: r["rss_mib"], False), "CPU %": (lambda r: r["cpu_percent"], False)}),
    "startup": (lambda quick: startup.run(quick), {"READY s": (lambda r: r["ready_s"], False)}),
}


def run_rounds(names: list[str], base: Path, rounds: int, quick: bool) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """bench -> {"base": [results], "this": [results]}, the trees alternating first and second."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"base": [], "this": []} for n in names}
    for round_no in range(rounds):
        order = [("base", base), ("this", ROOT)]
        if round_no % 2:
            order.reverse()
        for name in names:
            for label, tree in order:
                SOURCE["path"] = tree
                print(f"-- round {round_no + 1}, {name}, {label} ({tree})", flush=True)
                results[name][label].append(BENCHES[name][0](quick))
    SOURCE["path"] = ROOT
    return results


def table(results: dict[str, dict[str, list[dict[str, Any]]]], base_rev: str) -> str:
    lines = [f"| bench | figure | base {base_rev} | this tree | this / base (medians) | better |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        for figure, (read, higher_better) in BENCHES[name][1].items():
            old, new = [read(r) for r in runs["base"]], [read(r) for r in runs["this"]]
            m_old, m_new = statistics.median(old), statistics.median(new)
            ratio = m_new / m_old if m_old else float("nan")
            better = (m_new >= m_old) if higher_better else (m_new <= m_old)
            lines.append(f"| {name} | {figure} | {', '.join(f'{v:g}' for v in old)} | "
                         f"{', '.join(f'{v:g}' for v in new)} | {ratio:.3f} | {'yes' if better else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE, help=f"the commit to compare against (default {BASE})")
    parser.add_argument("--only", help=f"comma list of: {', '.join(BENCHES)} (default all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of the tool)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench: {', '.join(unknown)}")
    exit_on_sigterm()
    with source_at(args.base) as base:
        results = run_rounds(names, base, args.rounds, args.quick)
    print(table(results, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
