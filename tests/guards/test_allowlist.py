"""The tool allowlist (agentd.guards.allowlist): unknown, unlisted or badly called tools are refused and audited."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentd.errors import PolicyError
from agentd.guards.allowlist import ToolAllowlistGuard
from agentd.guards.base import Guards, ToolCall
from agentd.guards.trail import AuditTrailGuard
from tests.guards.parts import Parts, make_parts
from tests.tools.support import Echo
from tests.tools.support import config as make_config

ALLOWED = frozenset({"echo"})


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home", allowed_services=frozenset({"echo"}))


def chain(parts: Parts) -> tuple[Guards, ToolAllowlistGuard]:
    tools = {"echo": Echo().tool(), "mailer": Echo().tool()}
    trail = AuditTrailGuard(parts.audit, parts.metrics, frozenset(tools))
    allow = ToolAllowlistGuard(tools, parts.config, trail.refused)
    return Guards([trail, allow]), allow


REFUSALS: list[tuple[str, Any, Any, frozenset[str], str]] = [
    ("unknown_tool", "shell", {"text": "hi"}, ALLOWED | {"shell"}, "no such tool"),
    ("not_a_name", ["echo"], {"text": "hi"}, ALLOWED, "no such tool"),
    ("not_in_the_workflows_list", "echo", {"text": "hi"}, frozenset(), "not in workflow test's tool allowlist"),
    ("not_in_allowed_services", "mailer", {"text": "hi"}, frozenset({"mailer"}), "not in ALLOWED_SERVICES"),
    ("params_not_an_object", "echo", ["hi"], ALLOWED, "the parameters are not a JSON object"),
    ("params_missing_a_field", "echo", {}, ALLOWED, "invalid parameters at (root): 'text' is a required property"),
    ("params_too_long", "echo", {"text": "x" * 101}, ALLOWED, "invalid parameters at text: "),
    ("params_extra_field", "echo", {"text": "hi", "to": "all"}, ALLOWED, "invalid parameters at (root): "),
]


@pytest.mark.parametrize(("name", "params", "allowed", "why"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_refused_call_raises_policy_error_and_is_audited(parts: Parts, name: Any, params: Any,
                                                          allowed: frozenset[str], why: str) -> None:
    guards, _ = chain(parts)
    run = parts.run(allowed=allowed, step="act")
    # When the call is about to run
    with pytest.raises(PolicyError) as refused:
        guards.before("tool_call", ToolCall(run=run, name=name, params=params))
    # Then it fails the run with a policy error naming the tool and why
    assert refused.value.reason == "tool_denied" and refused.value.error_class == "policy"
    assert refused.value.detail.startswith(f"{str(name)[:100]}: {why}")
    # And one refusal line is audited (never an allowed one)
    [line] = parts.events("tool_call")
    assert line["allowed"] is False and line["why"].startswith(why)
    assert (line["tool"], line["step"], line["proposed_by"]) == (str(name), "act", "workflow")
    label = name if name in ("echo", "mailer") else "unknown"
    assert parts.metric("agentd_tool_calls_total", tool=label, status="denied") == 1


def test_an_allowed_call_with_good_params_passes_silently(parts: Parts) -> None:
    guards, _ = chain(parts)
    guards.before("tool_call", ToolCall(run=parts.run(allowed=ALLOWED), name="echo", params={"text": "hi"}))
    assert parts.events("tool_call") == []


def test_a_long_unknown_name_is_cut_in_the_error_and_the_audit_line(parts: Parts) -> None:
    guards, _ = chain(parts)
    name = "t" * 5000
    with pytest.raises(PolicyError) as refused:
        guards.before("tool_call", ToolCall(run=parts.run(allowed=ALLOWED), name=name, params={},
                                            proposed_by="model"))
    assert refused.value.extra["tool"] == "t" * 100
    [line] = parts.events("tool_call")
    assert line["tool"] == "t" * 100 and line["proposed_by"] == "model"


def test_permitted_lists_only_what_both_allowlists_let(parts: Parts) -> None:
    _, allow = chain(parts)
    run = parts.run(allowed=frozenset({"echo", "mailer"}))
    assert allow.permitted(run, ["echo", "mailer", "shell"]) == ("echo",)


def test_a_reload_that_drops_a_service_refuses_it(parts: Parts) -> None:
    guards, allow = chain(parts)
    run = parts.run(allowed=ALLOWED)
    allow.configure(make_config(parts.config.home, allowed_services=frozenset()))
    with pytest.raises(PolicyError, match="not in ALLOWED_SERVICES"):
        guards.before("tool_call", ToolCall(run=run, name="echo", params={"text": "hi"}))
