"""The kill switch (agentd.guards.killswitch): its state file, and the guard that stops all work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentd.errors import Paused
from agentd.guards.base import Guards, ToolCall
from agentd.guards.killswitch import FILE, KillSwitch, KillSwitchGuard
from tests.guards.parts import Parts, make_parts, model_call

KINDS = ("claim", "step", "model", "tool")


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home")


def test_off_lets_every_kind_of_work_start(parts: Parts) -> None:
    kill = KillSwitch(parts.config.state_dir)
    guard = KillSwitchGuard(kill)
    run = parts.run()
    assert [guard.blocks(kind) for kind in KINDS] == [None] * 4
    guard.before_step(run, "work")
    guard.before_model_call(model_call(run))
    guard.before_tool_call(ToolCall(run=run, name="echo", params={}))


def test_engaged_blocks_every_kind_and_pauses_steps_model_and_tool_calls(parts: Parts) -> None:
    kill = KillSwitch(parts.config.state_dir)
    guards = Guards([KillSwitchGuard(kill)])
    run = parts.run()
    # When an operator engages it
    kill.set(True, parts.audit, reason="incident 42", by="alice")
    # Then nothing starts, and running work pauses (deferred, not failed)
    assert [guards.why_not(kind) for kind in KINDS] == ["kill_switch"] * 4
    for hook, arg in (("step", "work"), ("model_call", model_call(run)),
                      ("tool_call", ToolCall(run=run, name="echo", params={}))):
        with pytest.raises(Paused) as paused:
            guards.before(hook, *((run, arg) if hook == "step" else (arg,)))
        assert paused.value.reason == "kill_switch"


def test_set_writes_the_state_file_and_one_audit_line(parts: Parts) -> None:
    kill = KillSwitch(parts.config.state_dir)
    kill.set(True, parts.audit, reason="incident 42", by="alice")
    saved = json.loads((parts.config.state_dir / FILE).read_text())
    assert saved["engaged"] is True and saved["reason"] == "incident 42" and saved["by"] == "alice"
    lines = parts.events("kill_switch")
    assert [(l["engaged"], l["reason"], l["by"]) for l in lines] == [(True, "incident 42", "alice")]


def test_the_state_survives_a_restart(parts: Parts) -> None:
    KillSwitch(parts.config.state_dir).set(True, parts.audit, reason="night freeze", by="ops")
    # a new daemon reads the same file
    again = KillSwitch(parts.config.state_dir)
    assert again.engaged
    assert KillSwitchGuard(again).blocks("claim") == "kill_switch"
    again.set(False, parts.audit, by="ops")
    assert not KillSwitch(parts.config.state_dir).engaged


def test_a_change_by_another_process_is_seen_on_refresh(parts: Parts) -> None:
    kill = KillSwitch(parts.config.state_dir)
    guard = KillSwitchGuard(kill)
    assert kill.refresh() is False  # nothing changed yet
    # Given the CLI (another process) writes the file
    other = KillSwitch(parts.config.state_dir)
    other.set(True, parts.audit, by="cli")
    # When the daemon refreshes, Then it flips once
    assert kill.refresh() is True
    assert guard.blocks("tool") == "kill_switch"
    assert kill.refresh() is False


def test_an_unreadable_state_file_fails_safe(parts: Parts) -> None:
    path = parts.config.state_dir / FILE
    path.write_text("{not json")
    kill = KillSwitch(parts.config.state_dir)
    assert kill.engaged
    assert "unreadable" in kill.state["reason"]
    assert KillSwitchGuard(kill).blocks("model") == "kill_switch"


def test_a_deleted_state_file_means_off(parts: Parts) -> None:
    kill = KillSwitch(parts.config.state_dir)
    kill.set(True, parts.audit, by="ops")
    (parts.config.state_dir / FILE).unlink()
    assert kill.refresh() is True
    assert not kill.engaged


@pytest.mark.parametrize("content", ["[]", "1", '"on"', "null", "{not json", ""])
def test_a_malformed_file_counts_as_engaged_with_a_reason_that_says_why(parts: Parts, content: str) -> None:
    # Given a kill switch file that is not a JSON object (valid JSON or not)
    parts.config.state_dir.mkdir(parents=True, exist_ok=True)
    (parts.config.state_dir / FILE).write_text(content)
    # When it is read
    kill = KillSwitch(parts.config.state_dir)
    # Then it is engaged (failing safe), with a reason, and every kind of work is held
    assert kill.engaged is True
    assert "failing safe" in kill.state["reason"]
    assert [Guards([KillSwitchGuard(kill)]).why_not(kind) for kind in KINDS] == ["kill_switch"] * 4
    # When an operator writes a good state again, it is read as written
    kill.set(False, parts.audit, reason="fixed", by="alice")
    assert kill.engaged is False and kill.refresh() is False


def test_the_last_look_before_a_request_or_a_side_effect_pauses_when_engaged(parts: Parts) -> None:
    # Given a call that passed the gate before its waits
    kill = KillSwitch(parts.config.state_dir)
    guards = Guards([KillSwitchGuard(kill)])
    run = parts.run()
    call, tool = model_call(run), ToolCall(run=run, name="echo", params={})
    guards.before("model_call", call)
    guards.before("tool_call", tool)
    # When the switch goes on during the waits
    kill.set(True, parts.audit, reason="incident 43", by="bob")
    # Then the last look, right before the request leaves or the tool acts, pauses both
    for hook, arg in (("model_send", call), ("tool_effect", tool)):
        with pytest.raises(Paused) as paused:
            guards.before(hook, arg)
        assert paused.value.reason == "kill_switch"
