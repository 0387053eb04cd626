"""The step timeout (agentd.guards.timeout): a step's own @step(timeout_s=) wins over AGENTD_STEP_TIMEOUT_S."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agentd.guards import default_guards
from agentd.guards.base import Guards
from agentd.guards.budget import Budget
from agentd.guards.killswitch import KillSwitch
from agentd.guards.timeout import StepTimeoutGuard
from agentd.workflows import step
from tests.guards.parts import make_parts
from tests.tools.support import config as make_config


@step
async def plain(run: Any) -> None:
    return None


@step(timeout_s=7)
async def quick(run: Any) -> None:
    return None


@step(timeout_s=900)
async def slow(run: Any) -> None:
    return None


def test_a_step_without_its_own_limit_gets_the_default() -> None:
    assert StepTimeoutGuard(300.0).step_timeout_s(None, plain) == 300.0


def test_a_steps_own_limit_wins_whether_shorter_or_longer() -> None:
    guard = StepTimeoutGuard(300.0)
    assert guard.step_timeout_s(None, quick) == 7.0
    assert guard.step_timeout_s(None, slow) == 900.0


def test_a_reload_changes_the_default_but_not_a_steps_own_limit(tmp_path: Path) -> None:
    guard = StepTimeoutGuard(300.0)
    guard.configure(make_config(tmp_path / "home", step_timeout_s=12.5))
    assert guard.step_timeout_s(None, plain) == 12.5
    assert guard.step_timeout_s(None, slow) == 900.0


def test_the_daemons_guard_list_gives_the_steps_limit(tmp_path: Path) -> None:
    # the whole default list, as the daemon builds it: no other guard shortens a step's own limit
    parts = make_parts(tmp_path / "home", step_timeout_s=60.0)
    cfg = parts.config
    budget = Budget(cfg.max_cost_per_run, cfg.daily_budget_usd, cfg.state_dir)
    guards: Guards = default_guards(cfg, KillSwitch(cfg.state_dir), budget, parts.audit, parts.metrics, {})
    assert guards.step_timeout_s(None, slow) == 900.0
    assert guards.step_timeout_s(None, quick) == 7.0
    assert guards.step_timeout_s(None, plain) == 60.0
