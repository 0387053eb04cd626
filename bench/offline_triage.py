"""Bench 7, the offline triage rules: milliseconds per page of text, new rules vs the old (baseline).

The text is the golden set's (examples/evals/triage/), read by agentd.run.extract as the daemon reads
it; a PDF counts its pages, any other file one page per CHARS_PER_PAGE characters. Each round runs
every document once through the new rules (agentd.workflows.triage_rules) and once through the
old ones (bench/baseline_offline_rules.py), timed in this thread's CPU time (time.thread_time: the
other processes on a shared machine do not inflate it, and the rules do no I/O that wall time would
add); the figure is the median round's time over the pages,
beside the slowest document's (median) time per page and each rule set's score per field on the same set.
It also times the new rules on hostile texts of MAX_DOCUMENT_CHARS (one long run of digits, of letters,
of labels, of legal forms, of dates, ...): the worst of them, in ms for the whole text.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import baseline_offline_rules
from bench.common import ROOT, bench_main, print_figures

from agentd.run.extract import extract
from agentd.workflows import triage_rules
from agentd.workflows.triage import MAX_DOCUMENT_CHARS
from tests.workflows.golden import cases, field, matches
from tests.workflows.test_triage_golden import FIELDS, GOLDEN

CHARS_PER_PAGE = 3000
FULL_ROUNDS = 30
QUICK_ROUNDS = 3
TARGET_MS_PER_PAGE = 5.0
Rules = Callable[[str], dict[str, Any]]


def corpus() -> list[tuple[str, str, int, dict[str, Any]]]:
    """(name, text, pages, expectations) for each golden document."""
    found = []
    for case in cases(GOLDEN):
        document = extract(case.document, case.document.read_bytes())
        pages = int(document.meta.get("pages") or math.ceil(len(document.text) / CHARS_PER_PAGE))
        found.append((case.document.name, document.text, max(pages, 1), case.expected))
    return found


def timing(rules: Rules, docs: list[tuple[str, str, int, dict[str, Any]]], rounds: int) -> dict[str, Any]:
    """The median round's ms per page over all pages, and the slowest document's median ms per page."""
    pages = sum(d[2] for d in docs)
    per_round: list[float] = []
    per_doc: dict[str, list[float]] = {name: [] for name, *_ in docs}
    for _ in range(rounds):
        began = time.thread_time()
        for name, text, doc_pages, _ in docs:
            one = time.thread_time()
            rules(text)
            per_doc[name].append((time.thread_time() - one) * 1000 / doc_pages)
        per_round.append((time.thread_time() - began) * 1000 / pages)
    slowest = max(per_doc, key=lambda name: statistics.median(per_doc[name]))
    return {"ms_per_page": round(statistics.median(per_round), 3),
            "slowest_doc_ms_per_page": round(statistics.median(per_doc[slowest]), 3), "slowest_doc": slowest}


def accuracy(rules: Rules, docs: list[tuple[str, str, int, dict[str, Any]]]) -> dict[str, str]:
    tally = {name: [0, 0] for name in FIELDS}
    for _, text, _, expected in docs:
        answer = rules(text)
        for name, path in FIELDS.items():
            if path in expected:
                tally[name][1] += 1
                tally[name][0] += matches(field(answer, path), expected[path])
    return {name: f"{right}/{scored} ({right / scored:.0%})" for name, (right, scored) in tally.items()}


HOSTILE = {"digits": "1", "letters": "a", "dots": "1.", "at signs": "a@", "labels": "Total ", "legal forms": "GmbH ",
           "dates": "03.08.2014 ", "months": "3 Aug ", "separators": " | ", "blank lines": "\n"}


def hostile() -> dict[str, Any]:
    """The new rules' CPU time on texts built to make patterns backtrack: the worst one."""
    times = {}
    for name, unit in HOSTILE.items():
        text = (unit * (MAX_DOCUMENT_CHARS // len(unit) + 1))[:MAX_DOCUMENT_CHARS]
        began = time.thread_time()
        triage_rules.triage(text)
        times[name] = (time.thread_time() - began) * 1000
    worst = max(times, key=lambda name: times[name])
    return {"chars": MAX_DOCUMENT_CHARS, "worst_ms": round(times[worst], 1), "worst_text": worst}


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    docs = corpus()
    rounds = rounds or (QUICK_ROUNDS if quick else FULL_ROUNDS)
    new, old = timing(triage_rules.triage, docs, rounds), timing(baseline_offline_rules.triage, docs, rounds)
    result = {
        "documents": len(docs), "pages": sum(d[2] for d in docs), "chars": sum(len(d[1]) for d in docs),
        "rounds": rounds, "target_ms_per_page": TARGET_MS_PER_PAGE,
        "new": {**new, **accuracy(triage_rules.triage, docs)},
        "old": {**old, **accuracy(baseline_offline_rules.triage, docs)},
        "hostile": hostile(),
        "golden_set": str(GOLDEN.relative_to(ROOT)),
    }
    print_figures("offline triage (new rules vs old rules)", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_ROUNDS} rounds instead of {FULL_ROUNDS}", rounds={"type": int})


if __name__ == "__main__":
    main()
