"""agentd: a production-grade runtime for file-driven AI agent workflows."""
__version__ = "0.1.0"

from agentd.errors import (AgentdError, BudgetError, DataError, InternalError, ModelError,  # noqa: E402
                           NeedsReview, NetworkError, PolicyError, ToolError)
from agentd.workflows import Workflow  # noqa: E402

__all__ = ["Workflow", "AgentdError", "BudgetError", "DataError", "InternalError", "ModelError",
           "NeedsReview", "NetworkError", "PolicyError", "ToolError", "__version__"]
