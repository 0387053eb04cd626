"""A step's model asks and tool calls: the journal keys, refused tool calls (the sync points are the
gateway's intents and the toolbox's)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentd.errors import NeedsReview, PolicyError
from agentd.llm.base import LLMRequest, is_tool_call_answer

if TYPE_CHECKING:
    from agentd.run.context import RunCore


async def ask(core: "RunCore", *, task: str, system: str, document: str, schema: dict[str, Any],
              instructions: str = "", max_tokens: int | None = None,
              tools: tuple[dict[str, Any], ...] = ()) -> Any:
    """A schema-checked model answer; paid once, replayed from the journal after a crash."""
    key = core.next_ask_key()
    request = LLMRequest(task=task, system=system, document=document, schema=schema, schema_name=task,
                         instructions=instructions, tools=tools,
                         max_tokens=max_tokens or core.config.llm_max_output_tokens)
    # a paid call's intent is fsynced before its request leaves, and the journal's earlier answers with it
    assert core.ask_model is not None
    answer = await core.ask_model(core, request, key)
    if is_tool_call_answer(answer) and not tools:
        if core.tools is None:
            raise NeedsReview("tool_call_refused", why="no tools were offered to this step")
        core.tools.refuse_all(core, answer["tool_calls"], "no tools were offered to this step")
    return answer


async def call_tool(core: "RunCore", name: str, params: dict[str, Any]) -> Any:
    """Call an allowed tool (the toolbox makes the claim and the journal durable before it acts)."""
    if core.tools is None:
        raise PolicyError("tool_denied", f"no tools are available to call {name!r}")
    return await core.tools.call(core, name, params)
