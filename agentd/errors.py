"""The small typed family of run errors; each carries the error_class the sidecar reports."""
from __future__ import annotations

from typing import Any

ERROR_CLASSES = ("model", "tool", "network", "policy", "data", "budget", "internal")


class AgentdError(Exception):
    """A run ends in failed/ with this reason and error_class.

    `retryable`: the fault is not the file's (the model failed this run while it answers
    others); the run waits and goes again instead of failing at once.
    """

    error_class = "internal"

    def __init__(self, reason: str, detail: str = "", *, retryable: bool = False, **extra: Any):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.extra = extra


class ModelError(AgentdError):
    error_class = "model"


class ToolError(AgentdError):
    error_class = "tool"


class NetworkError(AgentdError):
    error_class = "network"


class PolicyError(AgentdError):
    error_class = "policy"


class DataError(AgentdError):
    error_class = "data"


class BudgetError(AgentdError):
    error_class = "budget"


class InternalError(AgentdError):
    error_class = "internal"


class NeedsReview(Exception):
    """The run ends in review/: a human decides. `details` lands in the sidecar."""

    def __init__(self, reason: str, result: Any = None, **details: Any):
        super().__init__(reason)
        self.reason = reason
        self.result = result
        self.details = details


class Paused(Exception):
    """The run cannot go on now (kill switch, daily budget, model outage) but is not failed.

    It stays resumable; the daemon waits for the gate to reopen. `not_before` (epoch
    seconds) says when it may go again, when the cause said so (a Retry-After).
    """

    def __init__(self, reason: str, not_before: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.not_before = not_before


# exit codes of every command (SPEC section 8): ok, the check found a problem, usage error, configuration error
EX_OK, EX_PROBLEM, EX_USAGE, EX_CONFIG = 0, 1, 2, 78
