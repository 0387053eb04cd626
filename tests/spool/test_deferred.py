"""Deferrals on disk (agentd.spool.deferred): not-before times per file (path and inode) and for all files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentd.spool import deferred as deferred_mod
from agentd.spool.deferred import FILE, Deferrals

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def waiting(tmp_path: Path) -> Path:
    """A file waiting in incoming/."""
    path = tmp_path / "incoming" / "invoice.pdf"
    path.parent.mkdir()
    path.write_bytes(b"%PDF")
    return path


def ino(path: Path) -> int:
    return os.lstat(path).st_ino


def test_a_deferred_file_is_held_until_its_time(state: Path, waiting: Path) -> None:
    clock = Clock()
    deferrals = Deferrals(state, clock)
    assert deferrals.until(str(waiting), ino(waiting)) is None
    deferrals.defer(waiting, NOW + 60, "model_unavailable", strikes=1)
    assert deferrals.until(str(waiting), ino(waiting)) == NOW + 60
    clock.now = NOW + 59.9
    assert deferrals.until(str(waiting), ino(waiting)) == NOW + 60
    # When its time has come, Then it may go
    clock.now = NOW + 60
    assert deferrals.until(str(waiting), ino(waiting)) is None


def test_a_deferral_survives_a_restart(state: Path, waiting: Path) -> None:
    Deferrals(state, Clock()).defer(waiting, NOW + 300, "rate_limited", strikes=2)
    # a new daemon on the same state folder
    again = Deferrals(state, Clock(NOW + 10))
    assert again.until(str(waiting), ino(waiting)) == NOW + 300
    assert again.take(str(waiting), ino(waiting)) == 2


def test_a_new_file_of_the_same_name_is_not_held(state: Path, waiting: Path) -> None:
    Deferrals(state, Clock()).defer(waiting, NOW + 300, "rate_limited", strikes=2)
    old_inode = ino(waiting)
    # Given the operator replaces the file by a new one of the same name
    keep_inode_busy = waiting.with_name("old-copy")
    os.link(waiting, keep_inode_busy)  # the old inode stays alive, so the new file cannot reuse its number
    waiting.unlink()
    waiting.write_bytes(b"%PDF new")
    assert ino(waiting) != old_inode
    # Then after a restart the new file may go at once and brings no strikes
    again = Deferrals(state, Clock())
    assert again.until(str(waiting), ino(waiting)) is None
    assert again.take(str(waiting), ino(waiting)) == 0
    assert again.until(str(waiting), old_inode) == NOW + 300  # the old entry is untouched


def test_take_spends_the_deferral_and_returns_its_strikes(state: Path, waiting: Path) -> None:
    deferrals = Deferrals(state, Clock())
    deferrals.defer(waiting, NOW + 60, "model_unavailable", strikes=3)
    assert deferrals.take(str(waiting), ino(waiting)) == 3
    assert deferrals.until(str(waiting), ino(waiting)) is None
    assert deferrals.take(str(waiting), ino(waiting)) == 0


def test_a_deferral_of_a_file_already_gone_is_not_recorded(state: Path, waiting: Path) -> None:
    deferrals = Deferrals(state, Clock())
    deferrals.defer(waiting.with_name("vanished.pdf"), NOW + 60, "x")
    assert deferrals.files == {}
    assert not (state / FILE).exists()


def test_a_deferral_whose_file_is_gone_is_dropped_from_the_file(state: Path, waiting: Path) -> None:
    clock = Clock()
    deferrals = Deferrals(state, clock)
    deferrals.defer(waiting, NOW + 10, "short")
    waiting.unlink()  # an operator took it away
    other = waiting.with_name("later.pdf")
    other.write_bytes(b"x")
    deferrals.defer(other, NOW + 100, "long")
    saved = json.loads((state / FILE).read_text())
    assert list(saved["files"]) == [str(other)]


def test_the_record_stays_bounded(state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deferred_mod, "MAX_ENTRIES", 50)
    deferrals = Deferrals(state, Clock())
    folder = tmp_path / "many"
    folder.mkdir()
    paths = [folder / f"f{n}" for n in range(51)]
    for path in paths:
        path.write_bytes(b"x")
        deferrals.defer(path, NOW + 60, "r")
    saved = json.loads((state / FILE).read_text())
    assert len(saved["files"]) == 50
    assert str(paths[-1]) in saved["files"] and str(paths[0]) not in saved["files"]  # the oldest goes


def test_hold_all_holds_until_its_time_and_survives_a_restart(state: Path) -> None:
    clock = Clock()
    deferrals = Deferrals(state, clock)
    assert deferrals.held_until() is None
    deferrals.hold_all(NOW + 600, "retry_after")
    assert deferrals.held_until() == NOW + 600
    again = Deferrals(state, Clock(NOW + 1))
    assert again.held_until() == NOW + 600 and again.all_reason == "retry_after"
    clock.now = NOW + 600
    assert deferrals.held_until() is None


def test_hold_all_only_ever_extends(state: Path) -> None:
    deferrals = Deferrals(state, Clock())
    deferrals.hold_all(NOW + 600, "long")
    deferrals.hold_all(NOW + 30, "short")
    assert deferrals.held_until() == NOW + 600 and deferrals.all_reason == "long"
    assert json.loads((state / FILE).read_text())["all_reason"] == "long"


@pytest.mark.parametrize("content", ["{not json", "", "\x00\xff"])
def test_an_unreadable_record_holds_nothing_back(state: Path, waiting: Path, content: str) -> None:
    state.mkdir()
    (state / FILE).write_text(content)
    deferrals = Deferrals(state, Clock())
    assert deferrals.until(str(waiting), ino(waiting)) is None and deferrals.held_until() is None
