"""Following the audit log from a seq: complete lines only, across rotations, without re-reading."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from agentd.audit import CURRENT, audit_files


def _first_seq(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return int(json.loads(fh.readline())["seq"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class AuditTail:
    """`read()` returns the next complete records with seq >= next_seq (blocking file reads:
    call it in a worker thread). The writer appends whole lines under a lock and renames
    audit.jsonl to audit-<first seq>.jsonl when it rotates; an open handle keeps reading the
    renamed file to its end before the tail moves to the new audit.jsonl."""

    def __init__(self, logs_dir: Path, next_seq: int = 1):
        self.dir = logs_dir
        self.next_seq = next_seq
        self._fh: IO[bytes] | None = None
        self._path: Path | None = None
        self._rotated_away = False

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read(self, max_records: int = 1000) -> list[dict[str, Any]]:
        """Records read before a file error are returned (the error comes again at the next read):
        what the position already moved past is never lost."""
        out: list[dict[str, Any]] = []
        try:
            self._read_into(out, max_records)
        except OSError:
            if not out:
                raise
        return out

    def _read_into(self, out: list[dict[str, Any]], max_records: int) -> None:
        if self._fh is None and not self._open_first():
            return
        while len(out) < max_records:
            assert self._fh is not None
            line = self._fh.readline()
            if not line:
                if not self._next_file():
                    break
                continue
            if not line.endswith(b"\n"):  # being written, or torn by a crash (repaired at start-up)
                self._fh.seek(-len(line), os.SEEK_CUR)
                break
            try:
                record = json.loads(line)
                seq = int(record.get("seq", 0))
            except (ValueError, TypeError, AttributeError):  # not JSON, not an object, or a seq that is no number
                continue
            if seq >= self.next_seq:
                self.next_seq = seq + 1
                out.append(record)

    def _open_first(self) -> bool:
        """The file holding next_seq: the last one whose first seq is not above it."""
        files = audit_files(self.dir)
        if not files:
            return False
        start = files[0]
        for path in files:
            first = _first_seq(path)
            if first and first <= self.next_seq:
                start = path
        self._open(start)
        return True

    def _open(self, path: Path) -> None:
        self.close()
        self._fh = open(path, "rb")
        self._path = path
        self._rotated_away = False

    def _next_file(self) -> bool:
        """At the end of the open file: move on if it is finished (rotated), else wait for more."""
        assert self._fh is not None and self._path is not None
        if self._path.name != CURRENT or self._rotated_away:
            following = [p for p in audit_files(self.dir) if p.name == CURRENT or p.name > self._current_name()]
            if not following:
                return False
            self._open(following[0])
            return True
        try:
            on_disk = os.stat(self._path)
        except FileNotFoundError:
            on_disk = None
        if on_disk is None or on_disk.st_ino != os.fstat(self._fh.fileno()).st_ino:
            self._rotated_away = True  # read the old handle to its end once more, then move on
            return True
        return False

    def _current_name(self) -> str:
        """The rotated name of the open file (audit-<first seq>.jsonl)."""
        assert self._path is not None
        if self._path.name != CURRENT:
            return self._path.name
        assert self._fh is not None
        here = self._fh.tell()
        self._fh.seek(0)
        try:
            first = int(json.loads(self._fh.readline())["seq"])
        except (ValueError, KeyError, TypeError):
            first = 0
        finally:
            self._fh.seek(here)
        return f"audit-{first:012d}.jsonl"
