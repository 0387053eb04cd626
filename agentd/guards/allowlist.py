"""The tool allowlist: a call runs only when its tool is in the workflow's list and ALLOWED_SERVICES,
and its parameters pass the tool's JSON schema. Anything else is refused, audited, and fails the run
(a workflow's call) or goes to review (a batch the model proposed; see agentd.tools.agent)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from agentd.errors import PolicyError
from agentd.guards.base import Guard, ToolCall
from agentd.schemas import check as schema_problem

SHOWN_NAME_CHARS = 100


class ToolAllowlistGuard(Guard):
    def __init__(self, tools: Mapping[str, Any], config: Any, on_refused: Callable[[Any, Any, str, str], None]):
        self.tools = tools
        self.config = config
        self.on_refused = on_refused  # (run, name, why, proposed_by): the audit trail's refusal line

    def configure(self, config: Any) -> None:
        self.config = config

    def denied(self, run: Any, name: Any) -> str | None:
        """Why `name` may not run for this run at all (unknown, not in an allowlist), or None."""
        if not isinstance(name, str) or name not in self.tools:
            return "no such tool"
        if name not in run.allowed_tools:
            return f"not in workflow {run.workflow}'s tool allowlist"
        if name not in self.config.allowed_services:
            return "not in ALLOWED_SERVICES"
        return None

    def permitted(self, run: Any, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(n for n in names if self.denied(run, n) is None)

    def refusal(self, run: Any, name: Any, params: Any) -> str | None:
        """Why a call may not run (allowlists, then the schema), or None when it may."""
        why = self.denied(run, name)
        if why is not None:
            return why
        if not isinstance(params, dict):
            return "the parameters are not a JSON object"
        problem = schema_problem(self.tools[name].schema(self.config), params)
        return f"invalid parameters at {problem}" if problem else None

    def before_tool_call(self, call: ToolCall) -> None:
        why = self.refusal(call.run, call.name, call.params)
        if why is not None:
            self.on_refused(call.run, call.name, why, call.proposed_by)
            shown = str(call.name)[:SHOWN_NAME_CHARS]
            raise PolicyError("tool_denied", f"{shown}: {why}", tool=shown)
