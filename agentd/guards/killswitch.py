"""The kill switch: its state file and its guard. The state is a file under AGENTD_HOME/state that survives restarts.

Whoever changes it (the CLI, the admin endpoint) writes the audit event; the daemon re-reads
the file before every claim and /health answer, and on every tick (a quarter of a second while
runs are in flight), and stops starting model and tool calls.
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

from agentd.audit import AuditLog, utcnow_iso
from agentd.durable.group import fsync_path, write_json
from agentd.errors import Paused
from agentd.guards.base import Guard, Kind, ModelCall, ToolCall

FILE = "kill_switch.json"


class KillSwitch:
    def __init__(self, state_dir: Path):
        self.path = state_dir / FILE
        self._stamp: tuple[int, int] | None = None
        self.state: dict[str, Any] = {"engaged": False}
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
        try:
            self.state = json.loads(self.path.read_text()) if stamp else {"engaged": False}
        except (OSError, ValueError):
            self.state = {"engaged": True, "reason": "kill switch file unreadable: failing safe"}
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


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class KillSwitchGuard(Guard):
    """While the kill switch is on, no claim, step, model call or tool call starts."""

    def __init__(self, kill: KillSwitch):
        self.kill = kill

    def blocks(self, kind: Kind) -> str | None:
        return "kill_switch" if self.kill.engaged else None

    def _stop(self) -> None:
        if self.kill.engaged:
            raise Paused("kill_switch")

    def before_step(self, run: Any, step: str) -> None:
        self._stop()

    def before_model_call(self, call: ModelCall) -> None:
        self._stop()

    def before_tool_call(self, call: ToolCall) -> None:
        self._stop()
