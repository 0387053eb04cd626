"""The kill switch: its state file and its guard. The state is a file under AGENTD_HOME/state that survives restarts.

Whoever changes it (the CLI, the admin endpoint) writes the audit event; the daemon re-reads
the file before every claim and /health answer, and on every tick (a quarter of a second while
runs are in flight), and stops starting model and tool calls: before a call, and again after
its waits, right before the request leaves or the tool acts. A file that cannot be read or does
not hold a JSON object counts as engaged, with the reason saying so.
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any, Callable

from agentd import logs
from agentd.audit import AuditLog, utcnow_iso
from agentd.durable.group import fsync_path, write_json
from agentd.errors import Paused
from agentd.guards.base import Guard, Kind, ModelCall, ToolCall
from agentd.spool.layout import iso_utc

FILE = "kill_switch.json"
log = logs.get("agentd.kill_switch")


class KillSwitch:
    def __init__(self, state_dir: Path):
        self.path = state_dir / FILE
        self._stamp: tuple[int, int] | None = None
        self.state: dict[str, Any] = {"engaged": False}
        self.problem: str | None = None  # why the file counts as engaged although it does not say so
        self.on_problem: Callable[[str], None] = lambda why: None  # the daemon's guard logs it
        self.refresh()

    @property
    def engaged(self) -> bool:
        return bool(self.state.get("engaged"))

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the engaged state flipped."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        before = self.engaged
        self.state = _read(self.path) if stamp else {"engaged": False}
        self.problem = self.state["reason"] if self.state.get("failing_safe") else None
        if self.problem:
            self.on_problem(self.problem)
        return before != self.engaged

    def set(self, engaged: bool, audit: AuditLog, reason: str = "", by: str | None = None) -> dict[str, Any]:
        by = by or _who()
        self.state = {"engaged": engaged, "reason": reason, "by": by, "at": utcnow_iso()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.state)
        fsync_path(self.path)
        fsync_path(self.path.parent)
        audit.append("kill_switch", engaged=engaged, reason=reason, by=by)
        audit.flush_now()
        self.refresh()
        return self.state


def _read(path: Path) -> dict[str, Any]:
    """The file's state; one that cannot be read, or is not a JSON object, counts as ENGAGED (failing safe)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return _failing_safe(path, f"kill switch file unreadable ({exc.__class__.__name__})")
    if not isinstance(state, dict):
        return _failing_safe(path, f"kill switch file holds a JSON {type(state).__name__}, not an object")
    return state


def _failing_safe(path: Path, why: str) -> dict[str, Any]:
    try:
        since = iso_utc(path.stat().st_mtime)
    except OSError:
        since = utcnow_iso()
    return {"engaged": True, "reason": f"{why}: failing safe", "by": str(path), "at": since, "failing_safe": True}


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class KillSwitchGuard(Guard):
    """While the kill switch is on, no claim, step, model call or tool call starts."""

    def __init__(self, kill: KillSwitch):
        self.kill = kill
        kill.on_problem = self._report  # in the daemon's log (a CLI's stdout stays its answer)
        if kill.problem:
            self._report(kill.problem)

    def _report(self, why: str) -> None:
        log.error("kill_switch_file_malformed", path=str(self.kill.path), reason=why)

    def blocks(self, kind: Kind) -> str | None:
        return "kill_switch" if self.kill.engaged else None

    def _stop(self) -> None:
        if self.kill.engaged:
            raise Paused("kill_switch")

    def before_step(self, run: Any, step: str) -> None:
        self._stop()

    def before_model_call(self, call: ModelCall) -> None:
        self._stop()

    def before_model_send(self, call: ModelCall) -> None:
        self._stop()  # engaged while the intent was fsynced

    def before_tool_call(self, call: ToolCall) -> None:
        self._stop()

    def before_tool_effect(self, call: ToolCall) -> None:
        self._stop()  # engaged during the rate-limit wait or the intent's fsync
