"""`agentd eval DIR`: every input of a golden set through the workflow, scored field by field
against `<name>.expected.json`, with cost, latency and outcome counts, and the CI gates."""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from agentd.config import Config
from agentd.evals import harness, match
from agentd.evals.providers import ReplayProvider, recorded_answers
from agentd.llm.base import Provider

EXPECTED = ".expected.json"
ANSWERS = ".answers.jsonl"  # recorded model answers of a case (journal lines), for --replay


@dataclass
class Case:
    name: str
    input: Path
    expected: list[match.Expected]

    @property
    def answers_path(self) -> Path:
        return self.input.with_name(self.input.name + ANSWERS)


@dataclass
class Scored:
    case: Case
    run: harness.CaseRun
    fields: list[dict[str, Any]] = field(default_factory=list)
    missing_answers: int = 0

    @property
    def passed(self) -> bool:
        return all(f["ok"] for f in self.fields)


def _input_of(expected: Path) -> Path | None:
    """`report.pdf.expected.json` -> report.pdf; `report.expected.json` -> the one file report.<ext>."""
    named = expected.with_name(expected.name[: -len(EXPECTED)])
    if named.is_file():
        return named
    stems = [p for p in expected.parent.glob(glob.escape(named.name) + ".*")
             if p.is_file() and not p.name.endswith((EXPECTED, ANSWERS))]
    return stems[0] if len(stems) == 1 else None


def load_cases(folder: Path) -> list[Case]:
    """Inputs that have an expected.json beside them; an expected.json without input is an error."""
    cases = []
    for expected in sorted(folder.glob("*" + EXPECTED)):
        source = _input_of(expected)
        if source is None:
            raise match.CaseError(f"{expected}: no input file {expected.name[: -len(EXPECTED)]}[.ext] beside it")
        cases.append(Case(source.name, source, match.load(expected)))
    if not cases:
        raise match.CaseError(f"{folder}: no <name>{EXPECTED} files")
    return cases


def provider_for(config: Config, case: Case, mode: str) -> Provider:
    """--live: the configured provider. --replay: the case's recorded answers; a case without
    recordings runs the offline provider when that is the configured one (free and local)."""
    if mode == "live":
        return harness.configured_provider(config)
    if case.answers_path.is_file():
        return ReplayProvider(recorded_answers(harness.read_journal(case.answers_path)))
    if config.llm_provider == "offline":
        return harness.configured_provider(config)
    return ReplayProvider([])


async def run_one(config: Config, case: Case, workflow: str, mode: str, record: bool) -> Scored:
    provider = provider_for(config, case, mode)
    run = await harness.run_case(config, case.name, case.input, workflow, provider, caps=mode == "live",
                                 tools=False)  # no side effects from an eval: ALLOWED_SERVICES is empty
    scored = Scored(case, run, missing_answers=len(getattr(provider, "misses", [])))
    for expected in case.expected:
        ok, actual = expected.check(run.result)
        scored.fields.append({"field": expected.field, "ok": ok, "expected": expected.value,
                              "actual": actual, "match": expected.match})
    if record and mode == "live" and run.journal:
        lines = [harness.json_line(e) for e in run.journal if ":ask:" in str(e.get("key", ""))]
        case.answers_path.write_text("".join(lines), "utf-8")
    return scored


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(scored: list[Scored], workflow: str, mode: str) -> dict[str, Any]:
    per_field: dict[str, dict[str, Any]] = {}
    for item in scored:
        for f in item.fields:
            row = per_field.setdefault(f["field"], {"field": f["field"], "cases": 0, "passed": 0})
            row["cases"] += 1
            row["passed"] += f["ok"]
    for row in per_field.values():
        row["accuracy"] = row["passed"] / row["cases"]
    latencies = [s.run.latency_s for s in scored]
    outcomes = {"archived": 0, "review": 0, "failed": 0}
    for s in scored:
        outcomes[s.run.outcome] = outcomes.get(s.run.outcome, 0) + 1
    passed = sum(1 for s in scored if s.passed)
    fields_total = sum(len(s.fields) for s in scored)
    return {
        "workflow": workflow, "mode": mode, "cases": len(scored), "passed": passed,
        "accuracy": passed / len(scored) if scored else 0.0,
        "field_accuracy": sum(r["passed"] for r in per_field.values()) / fields_total if fields_total else 0.0,
        "fields": sorted(per_field.values(), key=lambda r: r["field"]),
        "cost_usd": float(sum((s.run.cost_usd for s in scored), Decimal(0))),
        "latency_s": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "outcomes": outcomes,
        "missing_answers": sum(s.missing_answers for s in scored),
        "results": [case_json(s) for s in scored],
    }


def case_json(s: Scored) -> dict[str, Any]:
    return {"case": s.case.name, "passed": s.passed, "outcome": s.run.outcome, "reason": s.run.meta.get("reason"),
            "cost_usd": float(s.run.cost_usd), "latency_s": s.run.latency_s, "missing_answers": s.missing_answers,
            "failures": [f for f in s.fields if not f["ok"]]}


def gates(report: dict[str, Any], min_accuracy: float | None, max_cost_usd: float | None,
          max_p95_s: float | None) -> list[str]:
    """The gates this report misses, each as a sentence."""
    missed = []
    if min_accuracy is not None and report["accuracy"] < min_accuracy:
        missed.append(f"accuracy {report['accuracy']:.3f} is under --min-accuracy {min_accuracy:g}")
    if max_cost_usd is not None and report["cost_usd"] > max_cost_usd:
        missed.append(f"cost ${report['cost_usd']:.6f} is over --max-cost-usd {max_cost_usd:g}")
    if max_p95_s is not None and report["latency_s"]["p95"] > max_p95_s:
        missed.append(f"latency p95 {report['latency_s']['p95']:.3f}s is over --max-p95-s {max_p95_s:g}")
    return missed


def regressions(report: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Fields whose accuracy fell since the baseline report, with the cases that newly fail them."""
    before = {r["field"]: r for r in baseline.get("fields", []) if isinstance(r, dict) and "field" in r}
    failed_before = {(c.get("case"), f.get("field")) for c in baseline.get("results", [])
                     for f in c.get("failures", [])}
    found = []
    for row in report["fields"]:
        old = before.get(row["field"])
        if old is None or row["accuracy"] >= float(old.get("accuracy", 0)) - 1e-9:
            continue
        cases = [c["case"] for c in report["results"] for f in c["failures"]
                 if f["field"] == row["field"] and (c["case"], row["field"]) not in failed_before]
        found.append({"field": row["field"], "before": float(old["accuracy"]), "after": row["accuracy"],
                      "cases": cases})
    return found


async def evaluate(config: Config, folder: Path, workflow: str, mode: str, jobs: int,
                   progress: Callable[[int], None] = lambda done: None, record: bool = False) -> dict[str, Any]:
    cases = load_cases(folder)
    runs = [lambda c=c: run_one(config, c, workflow, mode, record) for c in cases]
    scored = await harness.run_cases(jobs, runs, progress)
    return summarise(scored, workflow, mode)
