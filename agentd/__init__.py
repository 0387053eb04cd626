"""agentd: a production-grade runtime for file-driven AI agent workflows.

A workflow author needs only this module: `Workflow`, `step`, `Run` and the errors.
`Workflow`, `step` and `Run` are imported when first asked for: a parser process or a
CLI command that imports some `agentd.x` does not pay for the whole runtime.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from agentd.errors import (AgentdError, BudgetError, DataError, InternalError, ModelError,  # noqa: E402
                           NeedsReview, NetworkError, PolicyError, ToolError)

if TYPE_CHECKING:
    from agentd.run.context import Run
    from agentd.workflows import Workflow, step

_LAZY = {"Workflow": "agentd.workflows", "step": "agentd.workflows", "Run": "agentd.run.context"}

__all__ = ["Workflow", "step", "Run", "AgentdError", "BudgetError", "DataError", "InternalError", "ModelError",
           "NeedsReview", "NetworkError", "PolicyError", "ToolError", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
