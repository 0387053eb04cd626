"""The watcher skips what it cannot read (one warning per entry) and goes on claiming the rest."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agentd.config import Config
from agentd.intake import watcher as watcher_mod
from agentd.intake.watcher import Candidate, Watcher
from agentd.spool.deferred import Deferrals

ERRORS = [errno.EACCES, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG]


def _watcher(home: Path, clock: list[float]) -> Watcher:
    for sub in ("incoming", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    config = Config(home=home, settle_s=0.0, watch_mode="poll")
    return Watcher(config, Deferrals(config.state_dir, lambda: clock[0]), clock=lambda: clock[0])


@pytest.mark.parametrize("code", ERRORS, ids=[errno.errorcode[c] for c in ERRORS])
async def test_an_unreadable_folder_is_skipped_and_the_others_still_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    # Given incoming/ with a folder that fails with `code` and files elsewhere
    clock = [time.time() + 100]
    watcher = _watcher(tmp_path, clock)
    bad = tmp_path / "incoming" / "locked"
    bad.mkdir()
    (bad / "hidden.txt").write_text("x")
    (tmp_path / "incoming" / "a.txt").write_text("a")
    (tmp_path / "incoming" / "invoices").mkdir()
    (tmp_path / "incoming" / "invoices" / "b.txt").write_text("b")
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if os.fspath(path) == os.fspath(bad):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    warnings: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(watcher_mod.log, "warning", lambda event, **kw: warnings.append((event, kw)))
    found: list[Candidate] = []

    async def put(candidate: Candidate) -> None:
        found.append(candidate)

    # When it scans twice
    clock[0] += 10
    await watcher.scan(put)
    for candidate in found:
        watcher.done(candidate.path)  # tried by a worker: a later scan offers it again
    await watcher.scan(put)
    # Then the readable files are offered each time, the bad folder is warned about once, with its reason
    assert [event for event, _ in warnings] == ["entry_skipped"]
    assert sorted(c.source for c in found) == ["a.txt", "a.txt", "invoices/b.txt", "invoices/b.txt"]
    assert list(watcher.unreadable) == [os.fspath(bad)]
    assert errno.errorcode[code] in watcher.unreadable[os.fspath(bad)] or os.strerror(code) in \
        watcher.unreadable[os.fspath(bad)]
    assert (tmp_path / "state" / "unreadable.json").is_file()


async def test_a_file_that_cannot_be_stat_is_skipped_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [time.time() + 100]
    watcher = _watcher(tmp_path, clock)
    good, bad = tmp_path / "incoming" / "good.txt", tmp_path / "incoming" / "bad.txt"
    good.write_text("g")
    bad.write_text("b")
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(path) == os.fspath(bad):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    clock[0] += 10
    assert watcher.candidate(os.fspath(bad)) is None and watcher.candidate(os.fspath(bad)) is None
    assert watcher.candidate(os.fspath(good)) is not None
    assert list(watcher.unreadable) == [os.fspath(bad)]


async def test_a_deferred_file_waits_until_its_time_even_after_a_restart(tmp_path: Path) -> None:
    # Given a file deferred until t+60 by one daemon
    clock = [time.time() + 100]
    watcher = _watcher(tmp_path, clock)
    path = tmp_path / "incoming" / "later.txt"
    path.write_text("later")
    watcher.deferrals.defer(path, clock[0] + 60, "rate_limited")
    # When another daemon (a new Watcher on the same state) looks at it
    again = _watcher(tmp_path, clock)
    clock[0] += 30
    assert again.candidate(os.fspath(path)) is None
    # Then it is offered once its time has come, and a new file of the same name is not held
    clock[0] += 31
    assert again.candidate(os.fspath(path)) is not None
    path.unlink()
    path.write_text("a new file")
    watcher.deferrals.defer(tmp_path / "incoming" / "other.txt", clock[0] + 60, "x")  # unrelated entry
    assert _watcher(tmp_path, clock).candidate(os.fspath(path)) is not None
