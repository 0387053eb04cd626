"""`agentd estimate`: before any model call, the most each file's run could cost.

The workflow runs on a copy of each file in a scratch home with a dry-run provider (offline
answers, nothing sent), which records every request the workflow makes. Each request is then
priced at its worst: an upper bound on its input tokens (the model's own tokenizer where one
runs offline, else UTF-8 bytes) plus its max output tokens, at the dearest model of the chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentd.config import Config
from agentd.guards.budget import Budget
from agentd.evals import harness, tokens
from agentd.evals.providers import DryRunProvider, Sent
from agentd.llm.gateway import MAX_REASKS
from agentd.llm.prices import Price

REASK_NOTE = 200  # tokens of the "your answer was not valid" turn a re-ask adds, at most


@dataclass
class CallBound:
    key: str
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    reserved_usd: Decimal  # what the gateway reserves against MAX_COST_PER_RUN before sending it
    tools: bool


@dataclass
class FileEstimate:
    path: str
    workflow: str
    outcome: str
    calls: list[CallBound] = field(default_factory=list)
    worst_case_usd: Decimal = Decimal(0)
    refused: bool = False
    why: str = ""

    @property
    def max_cost_usd(self) -> Decimal:
        return sum((c.cost_usd for c in self.calls), Decimal(0))

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "workflow": self.workflow, "calls": len(self.calls),
                "tokens": {"input": sum(c.tokens_in for c in self.calls),
                           "output": sum(c.tokens_out for c in self.calls)},
                "max_cost_usd": float(self.max_cost_usd), "worst_case_usd": float(self.worst_case_usd),
                "tool_loop": any(c.tools for c in self.calls), "dry_run_outcome": self.outcome,
                "refused_by_max_cost_per_run": self.refused, "why": self.why or None}


def dearest(config: Config, tokens_in: int, tokens_out: int) -> tuple[Decimal, Price]:
    """The cost of a call at the most expensive model it could be routed to (fallbacks too)."""
    priced = [(config.price(m).cost(tokens_in, tokens_out), config.price(m)) for m in config.models()]
    return max(priced, key=lambda pair: pair[0])


def bound_calls(config: Config, sent: list[Sent]) -> list[CallBound]:
    counter = tokens.counter_for(config.llm_provider, config.llm_model)
    calls = []
    for item in sent:
        request = item.request
        tokens_in = tokens.input_bound(request, counter)
        cost, _ = dearest(config, tokens_in, request.max_tokens)
        reserved, _ = dearest(config, tokens.reserved_tokens(request), request.max_tokens)
        calls.append(CallBound(item.key, tokens_in, request.max_tokens, cost, reserved, bool(request.tools)))
    return calls


def worst_case(config: Config, calls: list[CallBound]) -> Decimal:
    """Every ask re-asked MAX_REASKS times (each re-ask resends the prompt plus the rejected
    answers), limited by LLM_MAX_CALLS_PER_RUN and by MAX_COST_PER_RUN, which the gateway enforces."""
    total, made = Decimal(0), 0
    for call in calls:
        for reask in range(MAX_REASKS + 1):
            if made >= config.llm_max_calls_per_run:
                break
            extra_in = reask * (call.tokens_out + REASK_NOTE)
            total += dearest(config, call.tokens_in + extra_in, call.tokens_out)[0]
            made += 1
    return min(total, config.max_cost_per_run)


def refusal(config: Config, calls: list[CallBound]) -> str:
    """Why MAX_COST_PER_RUN would refuse a call of this run (spend so far at its bound), or ""."""
    spent = Decimal(0)
    for call in calls:
        if spent + call.reserved_usd > config.max_cost_per_run:
            return (f"{call.key} reserves up to ${call.reserved_usd:.6f} with ${spent:.6f} spent: over "
                    f"MAX_COST_PER_RUN=${config.max_cost_per_run}")
        spent += call.cost_usd
    return ""


async def estimate_file(config: Config, path: Path, workflow: str) -> FileEstimate:
    provider = DryRunProvider(harness.offline_rules(config))
    run = await harness.run_case(config, path.name, path, workflow, provider, tools=False)
    found = FileEstimate(str(path), workflow, run.outcome, bound_calls(config, provider.sent))
    found.worst_case_usd = max(worst_case(config, found.calls), found.max_cost_usd)
    found.why = refusal(config, found.calls)
    found.refused = bool(found.why)
    if run.outcome == "failed" and not found.calls:
        found.why = f"no model call: the run fails first ({run.meta.get('reason')})"
    return found


def expand(paths: list[Path]) -> list[Path]:
    """Files named, and the files inside folders named (not hidden, not sidecars or expectations)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not _skipped(p))
        else:
            found.append(path)
    return found


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name.endswith((".meta.json", ".expected.json", ".answers.jsonl", ".source.json"))


def budget_view(config: Config, total_usd: Decimal) -> dict[str, Any]:
    """Today's spend as agentd.guards.budget keeps it, and whether `total_usd` fits what is left."""
    budget = Budget(config.max_cost_per_run, config.daily_budget_usd, config.state_dir)
    budget.load(config.logs_dir if config.logs_dir.is_dir() else None)
    if config.daily_budget_usd <= 0:
        return {"daily_budget_usd": None, "spent_today_usd": float(budget.spent_today),
                "remaining_usd": None, "fits": True}
    remaining = max(Decimal(0), config.daily_budget_usd - budget.spent_today)
    return {"daily_budget_usd": float(config.daily_budget_usd), "spent_today_usd": float(budget.spent_today),
            "remaining_usd": float(remaining), "fits": total_usd <= remaining}


async def estimate(config: Config, paths: list[Path], workflow: str, jobs: int = 4,
                   progress: Any = None) -> dict[str, Any]:
    files = expand(paths)
    cases = [lambda p=p: estimate_file(config, p, workflow) for p in files]
    found = await harness.run_cases(jobs, cases, progress or (lambda done: None))
    total = sum((f.max_cost_usd for f in found), Decimal(0))
    counter = tokens.counter_for(config.llm_provider, config.llm_model)
    return {"workflow": workflow, "provider": config.llm_provider, "models": list(config.models()),
            "tokenizer": counter.name, "max_cost_per_run_usd": float(config.max_cost_per_run),
            "files": [f.as_json() for f in found],
            "total": {"files": len(found), "calls": sum(len(f.calls) for f in found),
                      "max_cost_usd": float(total),
                      "worst_case_usd": float(sum((f.worst_case_usd for f in found), Decimal(0))),
                      "refused": sum(1 for f in found if f.refused)},
            "budget": budget_view(config, total)}
