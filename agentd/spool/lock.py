"""The state lock: one daemon per AGENTD_HOME (state/agentd.lock, flock held while it runs, its pid inside)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "agentd.lock"


class AlreadyRunning(Exception):
    pass


def take_state_lock(state_dir: Path) -> int:
    """Hold the lock for this process (the fd stays open while it runs), or raise AlreadyRunning."""
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise AlreadyRunning(f"another agentd (pid {other or '?'}) is running on {state_dir.parent}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def state_lock_holder(home: Path) -> int | None:
    """The pid of the agentd running on `home`, or None."""
    path = home / "state" / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
