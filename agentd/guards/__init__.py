"""Guards: middleware around runs, steps, model calls and tool calls; `default_guards` is the one list."""
from __future__ import annotations

from typing import Any, Mapping

from agentd.guards.allowlist import ToolAllowlistGuard
from agentd.guards.base import Ask, Guard, Guards, Kind, ModelCall, ToolCall
from agentd.guards.budget import Budget, BudgetGuard
from agentd.guards.killswitch import KillSwitch, KillSwitchGuard
from agentd.guards.metering import MeteringGuard
from agentd.guards.pii import PiiGuard
from agentd.guards.timeout import StepTimeoutGuard
from agentd.guards.trail import AuditTrailGuard


def default_guards(config: Any, kill: KillSwitch, budget: Budget, audit: Any, metrics: Any,
                   tools: Mapping[str, Any]) -> Guards:
    """The guards in their order: before-hooks run top down, after-hooks bottom up.

    Metering sits outside the budget, so a call's llm_call line shows the run's cost after
    its settle; the allowlist is last, so a refused tool call never touched anything else.
    """
    trail = AuditTrailGuard(audit, metrics, frozenset(tools))
    return Guards([
        KillSwitchGuard(kill),
        MeteringGuard(audit, metrics, budget.run_spent, config.llm_slow_call_s),
        trail,
        BudgetGuard(budget, audit),
        StepTimeoutGuard(config.step_timeout_s),
        PiiGuard(config.redact_pii, audit, metrics),
        ToolAllowlistGuard(tools, config, trail.refused),
    ])


__all__ = ["Ask", "AuditTrailGuard", "BudgetGuard", "Guard", "Guards", "Kind", "KillSwitchGuard", "MeteringGuard",
           "ModelCall", "PiiGuard", "StepTimeoutGuard", "ToolAllowlistGuard", "ToolCall", "default_guards"]
