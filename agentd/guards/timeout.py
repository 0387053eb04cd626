"""The step timeout: `@step(timeout_s=...)` or AGENTD_STEP_TIMEOUT_S, whichever the step has."""
from __future__ import annotations

from typing import Any

from agentd.guards.base import Guard


class StepTimeoutGuard(Guard):
    def __init__(self, default_s: float):
        self.default_s = default_s

    def configure(self, config: Any) -> None:
        self.default_s = config.step_timeout_s

    def step_timeout_s(self, run: Any, step: Any) -> float | None:
        own = getattr(step, "timeout_s", None)
        return float(own) if own else self.default_s
