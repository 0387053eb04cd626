"""`agentd estimate`: before any model call, the most each file's run could cost.

The workflow runs on a copy of each file in a scratch home with a dry-run provider (offline
answers, nothing sent), which records every request the workflow makes. Each request is then
priced at its worst: an upper bound on its input tokens (the model's own tokenizer where one
runs offline, else UTF-8 bytes) plus its max output tokens, at the dearest model of the chain.

`max_cost_usd` never falls below what the run really costs (SPEC section 11): besides each ask
answered at once, it counts what the gateway may also pay for: MAX_REASKS re-asks of an answer
that fails the schema, and before each answer the billed failed attempts (a timeout, a lost
connection, a 2xx without usage: charged at the call's reservation) of LLM_MAX_ATTEMPTS per
model of the chain; all of it limited by LLM_MAX_CALLS_PER_RUN and MAX_COST_PER_RUN, which the
gateway enforces. `first_try_usd` is the figure close to a normal run: every ask answered,
schema-valid, on its first attempt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from agentd.config import Config
from agentd.guards.budget import Budget
from agentd.evals import harness, tokens
from agentd.evals.providers import DryRunProvider, Sent
from agentd.llm.gateway import MAX_REASKS
from agentd.llm.prices import Price

REASK_NOTE = 200  # tokens of the "your answer was not valid" turn a re-ask adds, at most
# a re-ask resends the rejected answer, reserved by its bytes: counted at this many bytes a token (JSON
# and prose run 3-5; MAX_COST_PER_RUN holds whatever the answer was)
REASK_BYTES_PER_TOKEN = 8


@dataclass
class CallBound:
    key: str
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    reserved_usd: Decimal  # what the gateway reserves against MAX_COST_PER_RUN before sending it
    tools: bool
    reserved_in: int = 0  # the reservation's input tokens (the byte bound of the prompt as sent)


@dataclass
class FileEstimate:
    path: str
    workflow: str
    outcome: str
    calls: list[CallBound] = field(default_factory=list)
    bound_usd: Decimal = Decimal(0)  # with re-asks and billed retries: max_cost_usd
    refused: bool = False
    why: str = ""

    @property
    def first_try_usd(self) -> Decimal:
        return sum((c.cost_usd for c in self.calls), Decimal(0))

    @property
    def max_cost_usd(self) -> Decimal:
        return max(self.bound_usd, self.first_try_usd)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "workflow": self.workflow, "calls": len(self.calls),
                "tokens": {"input": sum(c.tokens_in for c in self.calls),
                           "output": sum(c.tokens_out for c in self.calls)},
                "max_cost_usd": float(self.max_cost_usd), "first_try_usd": float(self.first_try_usd),
                "worst_case_usd": float(self.max_cost_usd),  # the same bound (its name before max_cost_usd held it)
                "tool_loop": any(c.tools for c in self.calls), "dry_run_outcome": self.outcome,
                "refused_by_max_cost_per_run": self.refused, "why": self.why or None}


def dearest(config: Config, tokens_in: int, tokens_out: int) -> tuple[Decimal, Price]:
    """The cost of a call at the most expensive model it could be routed to (fallbacks too)."""
    priced = [(config.price(m).cost(tokens_in, tokens_out), config.price(m)) for m in config.models()]
    return max(priced, key=lambda pair: pair[0])


def prompt_overhead(config: Config) -> int:
    """Tokens the configured provider adds to every prompt (agentd.llm.gateway reserves them too)."""
    if config.llm_provider != "anthropic":
        return 0
    from agentd.llm.anthropic import AnthropicProvider
    return int(AnthropicProvider.prompt_overhead_tokens)


def bound_calls(config: Config, sent: list[Sent]) -> list[CallBound]:
    counter = tokens.counter_for(config.llm_provider, config.llm_model)
    overhead = prompt_overhead(config)
    calls = []
    for item in sent:
        request = item.request
        tokens_in = tokens.input_bound(request, counter) + overhead
        cost, _ = dearest(config, tokens_in, request.max_tokens)
        # the gateway's reservation: the byte bound of the prompt with the schema's name, and the overhead
        reserved_in = tokens.reserved_tokens(request) + len(request.schema_name.encode()) + overhead
        reserved, _ = dearest(config, reserved_in, request.max_tokens)
        calls.append(CallBound(item.key, tokens_in, request.max_tokens, cost, reserved, bool(request.tools),
                               reserved_in))
    return calls


def billed_attempts(config: Config, calls: list[CallBound]) -> Iterator[Decimal]:
    """The most each model request of a run may be billed, in the order the gateway could send them:
    per ask, per re-ask (each resends the prompt plus the rejected answer and a note), the failed
    attempts of every model of the chain (billed at most at their reservation) and the answer."""
    attempts = config.llm_max_attempts * len(config.models())
    for call in calls:
        for reask in range(MAX_REASKS + 1):
            extra_in = reask * (call.tokens_out + REASK_NOTE)
            charge = dearest(config, max(call.tokens_in, call.reserved_in) + REASK_BYTES_PER_TOKEN * extra_in,
                             call.tokens_out)[0]
            for _ in range(attempts):
                yield charge


def max_cost(config: Config, calls: list[CallBound]) -> Decimal:
    """The most the run can be billed: the first LLM_MAX_CALLS_PER_RUN requests of billed_attempts,
    and never over MAX_COST_PER_RUN (the gateway reserves each call's worst case against it)."""
    total = Decimal(0)
    for made, charge in enumerate(billed_attempts(config, calls)):
        if made >= config.llm_max_calls_per_run:
            break
        total += charge
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
    found.bound_usd = max_cost(config, found.calls)
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
                      "first_try_usd": float(sum((f.first_try_usd for f in found), Decimal(0))),
                      "worst_case_usd": float(total),
                      "refused": sum(1 for f in found if f.refused)},
            "budget": budget_view(config, total)}
