"""Tools a workflow may call: the registry (ToolBox) and the real tools (ocr, notification, db-query)."""
from agentd.tools.base import Invocation, TokenBucket, Tool
from agentd.tools.registry import ToolBox, builtin_tools

__all__ = ["Invocation", "TokenBucket", "Tool", "ToolBox", "builtin_tools"]
