"""Human output of estimate, replay and eval: aligned tables on stdout."""
from __future__ import annotations

import json
from typing import Any, Sequence


def table(headers: Sequence[str], rows: list[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def estimate_lines(report: dict[str, Any]) -> list[str]:
    rows = [(f["path"], f["calls"], f["tokens"]["input"], f["tokens"]["output"], f"{f['first_try_usd']:.6f}",
             f"{f['max_cost_usd']:.6f}", "REFUSED" if f["refused_by_max_cost_per_run"] else "ok")
            for f in report["files"]]
    total = report["total"]
    rows.append(("total", total["calls"], sum(f["tokens"]["input"] for f in report["files"]),
                 sum(f["tokens"]["output"] for f in report["files"]), f"{total['first_try_usd']:.6f}",
                 f"{total['max_cost_usd']:.6f}", f"{total['refused']} refused"))
    lines = table(("file", "calls", "tokens in", "tokens out", "first try USD", "max USD", "MAX_COST_PER_RUN"),
                  rows, right=(1, 2, 3, 4, 5))
    lines.append(f"workflow {report['workflow']}, models {', '.join(report['models'])}, "
                 f"input tokens counted with {report['tokenizer']}")
    for f in report["files"]:
        if f["why"]:
            lines.append(f"  {f['path']}: {f['why']}")
    budget = report["budget"]
    if budget["daily_budget_usd"] is None:
        lines.append("no daily budget set (DAILY_BUDGET_USD=0)")
    else:
        verdict = "fits" if budget["fits"] else "does NOT fit"
        lines.append(f"total ${total['max_cost_usd']:.6f} {verdict} today's remaining ${budget['remaining_usd']:.6f} "
                     f"(spent ${budget['spent_today_usd']:.6f} of ${budget['daily_budget_usd']:g})")
    return lines


def replay_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"replay of {report['correlation_id']} ({report['workflow']}, {report['file']})"]
    before, after = report["outcome"]["before"], report["outcome"]["after"]
    lines.append(f"  outcome   {before} -> {after}" if before != after else f"  outcome   {after} (unchanged)")
    if report["changes"]:
        lines.append(f"  {len(report['changes'])} field(s) changed:")
        lines += ["    " + line for line in table(
            ("field", "before", "after"), [(c["field"], _short(c["before"]), _short(c["after"]))
                                           for c in report["changes"]])]
    else:
        lines.append("  result    no change")
    for miss in report["missing"]:
        how = "asked the model (--live)" if miss["asked_live"] else "not asked (use --live)"
        lines.append(f"  missing answer {miss['key']}: the request changed "
                     f"(hash {miss['request_hash'][:12]}); {how}")
    lines.append(f"  answers served from the record: {report['served']}")
    lines.append(f"  cost: ${report['cost_usd']:.6f} at today's prices (the run cost ${report['original_cost_usd']:.6f})"
                 + (f"; paid now ${report['live_cost_usd']:.6f}" if report["live"] else "; nothing paid now"))
    return lines


def eval_lines(report: dict[str, Any], missed: list[str], regressed: list[dict[str, Any]]) -> list[str]:
    lines = table(("field", "cases", "passed", "accuracy"),
                  [(r["field"], r["cases"], r["passed"], f"{r['accuracy']:.3f}") for r in report["fields"]],
                  right=(1, 2, 3))
    o, lat = report["outcomes"], report["latency_s"]
    lines += [(f"overall: {report['passed']}/{report['cases']} cases passed, accuracy {report['accuracy']:.3f} "
               f"(fields {report['field_accuracy']:.3f})"),
              (f"cost ${report['cost_usd']:.6f}, latency p50 {lat['p50']:.3f}s p95 {lat['p95']:.3f}s, "
               f"outcomes: {o.get('archived', 0)} archived, {o.get('review', 0)} review, {o.get('failed', 0)} failed")]
    if report["missing_answers"]:
        lines.append(f"{report['missing_answers']} recorded answer(s) missing: the requests changed (--live asks)")
    failing = [c for c in report["results"] if not c["passed"]]
    if failing:
        lines.append("failing cases:")
        for case in failing:
            lines.append(f"  {case['case']} ({case['outcome']}{', ' + str(case['reason']) if case['reason'] else ''})")
            for f in case["failures"]:
                lines.append(f"    {f['field']}: expected {_short(f['expected'])} ({f['match']}), "
                             f"got {_short(f['actual'])}")
    for r in regressed:
        lines.append(f"REGRESSION {r['field']}: accuracy {r['before']:.3f} -> {r['after']:.3f}"
                     + (f" ({', '.join(r['cases'])})" if r["cases"] else ""))
    lines += [f"GATE MISSED: {m}" for m in missed]
    return lines
