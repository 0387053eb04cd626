"""The group commit's helper process in the real daemon: a killed helper loses no file, and the
helper does not outlive a SIGKILLed daemon."""
from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Callable

from tests.helpers import (AgentdProcess, audit_events, children_of, drop_letters, process_gone, sidecar_for,
                           terminal_files, wait_until)


def _helper_of(agent: AgentdProcess) -> int:
    """The pid of the daemon's sync helper (a child running agentd/durable/sync_worker.py)."""
    assert agent.proc is not None

    def find() -> int | None:
        for pid in children_of(agent.proc.pid):  # type: ignore[union-attr]
            try:
                if b"sync_worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except FileNotFoundError:
                continue
        return None

    return wait_until(find, message="the sync helper")


def _archived(home: Path, count: int) -> bool:
    return len(terminal_files(home)["archive"]) >= count


def test_a_killed_sync_helper_loses_no_file_and_the_daemon_says_so(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a daemon that has archived ten files, its group commits done by its helper
    agent = daemon()
    first = drop_letters(home, 10, prefix="before")
    wait_until(lambda: _archived(home, 10), timeout=30, message="ten files archived")
    helper = _helper_of(agent)
    # When the helper is SIGKILLed, and more files arrive
    os.kill(helper, signal.SIGKILL)
    later = drop_letters(home, 10, prefix="after")
    # Then every file is archived with its sidecar, each run has one outcome line, the daemon
    # is healthy and its log names the helper's end
    wait_until(lambda: _archived(home, 20), timeout=30, message="twenty files archived")
    for name in first + later:
        meta = sidecar_for(home, name)
        assert meta is not None and meta["outcome"] == "archived", name
    outcomes = Counter(e["correlation_id"] for e in audit_events(home, "outcome"))
    assert len(outcomes) == 20 and set(outcomes.values()) == {1}
    assert agent.health()["status"] == "ok"
    wait_until(lambda: "sync_helper_exited" in agent.output(), message="the helper's end logged")
    assert not list((home / "processing").iterdir())


def test_the_sync_helper_dies_with_a_sigkilled_daemon(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    drop_letters(home, 1)
    wait_until(lambda: _archived(home, 1), timeout=30, message="one file archived")
    helper = _helper_of(agent)
    agent.kill()
    wait_until(lambda: process_gone(helper), timeout=10, message="the helper gone with the daemon")
