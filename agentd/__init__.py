"""agentd: a production-grade runtime for file-driven AI agent workflows.

A workflow author needs only this module: `Workflow`, `step`, `Run` and the errors.
"""
__version__ = "0.1.0"

from agentd.errors import (AgentdError, BudgetError, DataError, InternalError, ModelError,  # noqa: E402
                           NeedsReview, NetworkError, PolicyError, ToolError)
from agentd.run.context import Run  # noqa: E402
from agentd.workflows import Workflow, step  # noqa: E402

__all__ = ["Workflow", "step", "Run", "AgentdError", "BudgetError", "DataError", "InternalError", "ModelError",
           "NeedsReview", "NetworkError", "PolicyError", "ToolError", "__version__"]
