"""The exporter's durable cursor, AGENTD_HOME/state/otlp_cursor.json: how far the collector has
acknowledged, and where a restart must read the audit log again from to rebuild runs in progress.

Written only after an acknowledgement: a temp file, fsync, rename, fsync of the folder.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE = "otlp_cursor.json"


@dataclass(frozen=True)
class Cursor:
    exported_seq: int = 0  # every run that finished at or before this audit seq was acknowledged
    reread_from: int = 1  # the first seq of the oldest run still open at exported_seq

    @classmethod
    def load(cls, state_dir: Path) -> "Cursor":
        """The saved cursor; a fresh one (export everything in the log) when there is none."""
        try:
            saved = json.loads((state_dir / FILE).read_text("utf-8"))
            cursor = cls(int(saved["exported_seq"]), int(saved["reread_from"]))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CursorError(f"{state_dir / FILE} is unreadable ({exc.__class__.__name__}); "
                              "remove it to export the whole audit log again") from None
        if cursor.exported_seq < 0 or not 1 <= cursor.reread_from <= cursor.exported_seq + 1:
            raise CursorError(f"{state_dir / FILE} is inconsistent: {saved}")
        return cursor

    def save(self, state_dir: Path) -> None:
        """Atomic and durable (blocking: the exporter calls it in a worker thread)."""
        path = state_dir / FILE
        tmp = path.with_name(f".{FILE}.tmp")
        data = json.dumps({"exported_seq": self.exported_seq, "reread_from": self.reread_from}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class CursorError(Exception):
    """The cursor file exists but cannot be trusted."""
