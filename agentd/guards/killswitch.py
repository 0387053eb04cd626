"""The kill switch: a state file under AGENTD_HOME/state that survives restarts.

Whoever changes it (the CLI, the admin endpoint) writes the audit event; the daemon
re-reads the file within a quarter of a second and stops starting model and tool calls.
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

from agentd.audit import AuditLog, utcnow_iso
from agentd.durable import fsync_path, write_json

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
