"""Group commit: a caller's `first` runs in the round's thread before the fsyncs; its failure is its own."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

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
