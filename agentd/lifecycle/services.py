"""The wiring: every component built from one Config, in one place (the daemon, the tests and the
evaluation commands all build their parts here)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from agentd import workflows as workflows_mod
from agentd.audit import AuditLog, open_for
from agentd.config import Config, ConfigError
from agentd.durable.crash import crash_point
from agentd.durable.group import GroupSync
from agentd.durable.journal import unanswered_in
from agentd.guards import AuditTrailGuard, Budget, Guards, KillSwitch, MeteringGuard, default_guards
from agentd.llm.base import Provider
from agentd.llm.breaker import Breakers
from agentd.llm.gateway import Gateway, make_provider
from agentd.metrics import Metrics
from agentd.audit.redact import Redactor
from agentd.run.isolated import POOL as EXTRACT_POOL, UNRESOLVABLE
from agentd.run.pipeline import Pipeline
from agentd.spool.counts import Counts
from agentd.spool.dedupe import DedupeIndex
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ALL_FOLDERS
from agentd.spool.store import Store
from agentd.tools import ToolBox, builtin_tools
from agentd.workflows import Workflow


@dataclass
class Services:
    config: Config
    sync: GroupSync
    redactor: Redactor
    audit: AuditLog
    counts: Counts
    deferrals: Deferrals
    store: Store
    metrics: Metrics
    budget: Budget
    breakers: Breakers
    kill: KillSwitch
    workflows: dict[str, Workflow]
    guards: Guards
    gateway: Gateway
    tools: ToolBox
    index: DedupeIndex
    pipeline: Pipeline

    @property
    def metering(self) -> MeteringGuard:
        return self.guards.of(MeteringGuard)

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: hand the new configuration to every part that can take it live."""
        self.config = config
        self.guards.configure(config)
        self.gateway.reconfigure(config)
        self.pipeline.config = config
        self.tools.config = config
        self.redactor.secrets = Redactor(config.secrets).secrets

    def close(self) -> None:
        self.audit.close()
        self.index.close()


def load_workflows(config: Config) -> dict[str, Workflow]:
    try:
        return workflows_mod.load(config.workflows)
    except (ImportError, SyntaxError, ValueError, OSError) as exc:
        raise ConfigError("AGENTD_WORKFLOWS", f"{exc.__class__.__name__}: {exc}") from None


async def _no_wait(reason: str, not_before: float | None) -> None:
    raise RuntimeError(f"a paused run needs the daemon to wait ({reason})")


def build(config: Config, *, provider: Provider | None = None, tools: Mapping[str, Any] | None = None,
          wait_open: Callable[[str, float | None], Awaitable[None]] = _no_wait,
          workflows: dict[str, Workflow] | None = None, clock: Callable[[], float] | None = None) -> Services:
    """All parts for `config`; `provider`, `tools`, `workflows` and `clock` replace the defaults (tests, eval)."""
    for sub in ALL_FOLDERS:
        (config.home / sub).mkdir(parents=True, exist_ok=True)
    workflows = workflows if workflows is not None else load_workflows(config)
    sync = GroupSync(enabled=config.fsync)
    redactor = Redactor(config.secrets)
    audit = open_for(config, redactor, sync)
    counts = Counts()
    deferrals = Deferrals(config.state_dir)
    store = Store(config, audit, sync, deferrals, on_move=counts.moved)
    metrics = Metrics()
    budget_clock = {"clock": clock} if clock else {}
    budget = Budget(config.max_cost_per_run, config.daily_budget_usd, config.state_dir,
                    audit_seq=lambda: audit.last.seq, **budget_clock).load(
        config.logs_dir, unanswered=unanswered_in(config.processing))  # calls out at a crash: held at worst case
    breakers = Breakers(config.state_dir, config.breaker_failures, config.breaker_reset_s)
    kill = KillSwitch(config.state_dir)
    registry = dict(builtin_tools() if tools is None else tools)
    guards = default_guards(config, kill, budget, audit, metrics, registry)
    provider = provider or make_provider(config, workflows_mod.offline_rules(workflows),
                                         isolate=EXTRACT_POOL.rule, unresolvable=UNRESOLVABLE)
    gateway = Gateway(config, provider, guards, breakers, audit, metrics)
    guards.extra_gates.append(gateway.blocks)
    toolbox = ToolBox(config, guards, guards.of(AuditTrailGuard), registry)
    index = DedupeIndex(config.state_dir / "index.sqlite", crash=lambda point: crash_point(config, point))
    pipeline = Pipeline(config, store, audit, gateway, workflows, index, metrics, guards, wait_open=wait_open,
                        tools=toolbox)
    return Services(config=config, sync=sync, redactor=redactor, audit=audit, counts=counts, deferrals=deferrals,
                    store=store, metrics=metrics, budget=budget, breakers=breakers, kill=kill, workflows=workflows,
                    guards=guards, gateway=gateway, tools=toolbox, index=index, pipeline=pipeline)
