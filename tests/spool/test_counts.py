"""Counts follow the store's moves at once, and a recount in a thread corrects moves it never saw."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import agentd.spool.counts as counts_mod
from agentd.spool.counts import Counts
from agentd.spool.layout import QUEUE_FOLDERS


def _home(tmp_path: Path, archived: int) -> Path:
    for folder in QUEUE_FOLDERS:
        (tmp_path / folder).mkdir()
    for i in range(archived):
        (tmp_path / "archive" / f"a{i}.txt").write_text("x")
        (tmp_path / "archive" / f"a{i}.txt.meta.json").write_text("{}")
    return tmp_path


def _recount(counts: Counts, home: Path) -> None:
    thread = counts.recount_soon(home)
    assert thread is not None
    thread.join(timeout=10)
    assert counts.recounting is None


def test_moves_reported_by_the_store_change_the_counts_with_no_scan(tmp_path: Path) -> None:
    home = _home(tmp_path, 3)
    clock = [0.0]
    counts = Counts(clock=lambda: clock[0], recount_every_s=60).load(home)
    assert counts.snapshot()["archive"] == 3
    counts.moved("incoming", "processing")
    counts.moved("processing", "failed")
    assert counts.snapshot() == {"incoming": 0, "processing": 0, "archive": 3, "failed": 1, "review": 0}
    assert counts.recount_soon(home) is None and counts.recounting is None  # not due: nothing scans


def test_a_move_the_daemon_never_saw_is_corrected_by_the_next_recount(tmp_path: Path) -> None:
    # Given counts loaded at start-up, then an operator's clean-up and a CLI requeue behind the daemon's back
    home = _home(tmp_path, 5)
    clock = [0.0]
    counts = Counts(clock=lambda: clock[0], recount_every_s=15).load(home)
    for i in range(2):
        os.unlink(home / "archive" / f"a{i}.txt")
    os.rename(home / "archive" / "a4.txt", home / "incoming" / "a4.txt")
    assert counts.snapshot()["archive"] == 5
    # When the recount is due (driven clock)
    clock[0] += 14
    assert counts.recount_soon(home) is None
    clock[0] += 2
    _recount(counts, home)
    # Then the terminal count is true again (incoming/ is the watcher's to count)
    assert counts.snapshot()["archive"] == 2
    assert counts.recount_soon(home) is None  # and the next one waits its interval again


def test_a_folder_that_moved_during_the_recount_keeps_its_running_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path, 2)
    clock = [100.0]
    counts = Counts(clock=lambda: clock[0], recount_every_s=1).load(home)
    clock[0] += 5
    real_count = counts_mod.count_entries

    def racing_count(directory: Path, sub: str) -> int:
        found = real_count(directory, sub)
        if sub == "archive":  # a run finishes while the thread counts archive/
            (home / "archive" / "late.txt").write_text("x")
            counts.moved("processing", "archive")
        return found

    monkeypatch.setattr(counts_mod, "count_entries", racing_count)
    _recount(counts, home)
    monkeypatch.undo()
    assert counts.snapshot()["archive"] == 3  # 2 + the reported move, not the raced count of 2
    clock[0] += 5
    _recount(counts, home)
    assert counts.snapshot()["archive"] == 3
