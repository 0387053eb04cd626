"""Group commit: a caller's `first` runs in the round's thread before the fsyncs; its failure is its own."""
from __future__ import annotations

import asyncio
import errno
import threading
from pathlib import Path

import pytest

from agentd import durable
from agentd.durable import GroupSync, write_json


@pytest.mark.parametrize("enabled", [True, False])
async def test_first_writes_in_a_worker_thread_and_a_failing_one_fails_only_its_caller(
        tmp_path: Path, enabled: bool) -> None:
    sync = GroupSync(enabled=enabled)
    where: list[bool] = []

    def good() -> None:
        where.append(threading.current_thread() is threading.main_thread())
        write_json(tmp_path / "a.json", {"a": 1})

    def bad() -> None:
        raise OSError(28, "No space left on device")

    results = await asyncio.gather(sync.sync([tmp_path / "a.json", tmp_path], first=good),
                                   sync.sync([tmp_path], first=bad), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], OSError) and results[1].errno == 28
    assert where == [False] and (tmp_path / "a.json").read_text() == '{"a": 1}\n'
    if enabled:
        assert sync.rounds >= 1


async def test_a_rounds_fsyncs_run_together_and_each_caller_gets_its_own_paths_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a round of eight files, a path removed before its fsync and a symlink (O_NOFOLLOW: ELOOP)
    files = [tmp_path / f"f{i}" for i in range(8)]
    for path in files:
        path.write_text("x")
    (tmp_path / "link").symlink_to(files[0])
    threads: set[str] = set()
    real = durable.fsync_path

    def watched(path: str) -> None:
        threads.add(threading.current_thread().name)
        real(path)

    monkeypatch.setattr(durable, "fsync_path", watched)
    sync = GroupSync()
    # When three callers share the round
    results = await asyncio.gather(sync.sync(files), sync.sync([tmp_path / "gone"]),
                                   sync.sync([files[1], tmp_path / "link"]), return_exceptions=True)
    # Then the files were fsynced by more than one thread, a vanished path fails nobody,
    # and only the caller that asked for the symlink gets its error
    assert len(threads) > 1, threads
    assert results[0] is None and results[1] is None
    assert isinstance(results[2], OSError) and results[2].errno == errno.ELOOP
