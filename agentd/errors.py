"""The small typed family of run errors; each carries the error_class the sidecar reports."""
from __future__ import annotations

from typing import Any

ERROR_CLASSES = ("model", "tool", "network", "policy", "data", "budget", "internal")


class AgentdError(Exception):
    """A run ends in failed/ with this reason and error_class."""

    error_class = "internal"

    def __init__(self, reason: str, detail: str = "", **extra: Any):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail
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

    It stays resumable; the daemon waits for the gate to reopen.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
