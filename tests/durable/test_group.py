"""Group commit: a caller's new file is written in the round before its fsyncs, its failure is its own;
rounds run in a helper process once asked to (the daemon), and in a thread when the helper is gone."""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import threading
from pathlib import Path
from typing import AsyncIterator

import pytest

from agentd.durable import group as durable
from agentd.durable import sync_worker
from agentd.durable.group import GroupSync
from tests.helpers import process_gone

MODES = ["thread", "helper"]


@pytest.fixture
async def make_sync() -> AsyncIterator[object]:
    """await make_sync(mode, enabled): a GroupSync; in "helper" mode with its helper up."""
    made: list[GroupSync] = []

    async def make(mode: str = "thread", enabled: bool = True) -> GroupSync:
        sync = GroupSync(enabled=enabled)
        made.append(sync)
        if mode == "helper":
            sync.use_helper()
            assert await sync.helper_started() is not None
        return sync

    yield make
    for sync in made:
        await sync.close()


@pytest.mark.parametrize("mode,enabled", [("thread", True), ("helper", True), ("thread", False), ("helper", False)])
async def test_a_write_is_done_in_the_round_and_a_failing_one_fails_only_its_caller(
        tmp_path: Path, make_sync, mode: str, enabled: bool) -> None:
    sync = await make_sync(mode, enabled)
    # Given two callers in one round: one writes a file, the other a file in a folder that is gone
    results = await asyncio.gather(sync.sync([tmp_path / "a.json", tmp_path], write=(tmp_path / "a.json", b"{}\n")),
                                   sync.sync([tmp_path], write=(tmp_path / "gone" / "b.json", b"{}\n")),
                                   return_exceptions=True)
    # Then the first file is there, complete, with no temporary file beside it, and only the
    # second caller failed, naming its file
    assert results[0] is None
    assert isinstance(results[1], OSError) and results[1].errno == errno.ENOENT
    assert results[1].filename == os.fspath(tmp_path / "gone" / "b.json")
    assert (tmp_path / "a.json").read_bytes() == b"{}\n" and sorted(os.listdir(tmp_path)) == ["a.json"]
    if mode == "helper":  # with fsync off too: the helper writes the file, with no fsync
        assert sync.helper_pid not in (None, os.getpid())
        assert sync.rounds >= 1 and (sync.fsyncs > 0) == enabled
    elif enabled:
        assert sync.rounds >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_each_caller_gets_its_own_paths_error_and_a_vanished_path_fails_nobody(
        tmp_path: Path, make_sync, mode: str) -> None:
    # Given a round of eight files, a path removed before its fsync and a symlink (O_NOFOLLOW: ELOOP)
    files = [tmp_path / f"f{i}" for i in range(8)]
    for path in files:
        path.write_text("x")
    (tmp_path / "link").symlink_to(files[0])
    sync = await make_sync(mode)
    # When three callers share the round
    results = await asyncio.gather(sync.sync(files), sync.sync([tmp_path / "gone"]),
                                   sync.sync([files[1], tmp_path / "link"]), return_exceptions=True)
    # Then only the caller that asked for the symlink gets its error
    assert results[0] is None and results[1] is None
    assert isinstance(results[2], OSError) and results[2].errno == errno.ELOOP
    assert results[2].filename == os.fspath(tmp_path / "link")


async def test_a_rounds_fsyncs_run_on_several_threads_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              make_sync) -> None:
    files = [tmp_path / f"f{i}" for i in range(8)]
    for path in files:
        path.write_text("x")
    threads: set[str] = set()
    real = sync_worker.fsync_path

    def watched(path: str) -> None:
        threads.add(threading.current_thread().name)
        real(path)

    monkeypatch.setattr(sync_worker, "fsync_path", watched)
    await (await make_sync("thread")).sync(files)
    assert len(threads) > 1, threads


@pytest.mark.parametrize("mode", MODES)
async def test_a_hook_runs_after_a_round_that_synced_its_path_and_not_after_a_failed_one(
        tmp_path: Path, make_sync, mode: str) -> None:
    sync = await make_sync(mode)
    (tmp_path / "log").write_text("x")
    committed: list[tuple[int, bool]] = []
    tokens = iter(range(100))
    sync.after_sync(tmp_path / "log", lambda: next(tokens),
                    lambda token: committed.append((token, threading.current_thread() is threading.main_thread())))
    await sync.sync([tmp_path / "log"])
    await sync.sync([tmp_path / "other"])  # not its path: no hook
    (tmp_path / "log").unlink()
    (tmp_path / "log").symlink_to(tmp_path)  # its fsync now fails: ELOOP
    with pytest.raises(OSError):
        await sync.sync([tmp_path / "log"])
    assert committed == [(0, False)]


async def test_a_helper_killed_between_rounds_or_in_one_loses_no_round_and_a_new_one_follows(
        tmp_path: Path, make_sync, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "HELPER_RETRY_S", 0.0)
    sync = await make_sync("helper")
    await sync.sync([tmp_path], write=(tmp_path / "1", b"1"))
    first = sync.helper_pid
    assert first is not None
    # When the helper is killed between two rounds
    os.kill(first, signal.SIGKILL)
    await sync.sync([tmp_path], write=(tmp_path / "2", b"2"))
    # And the next helper is stopped, then killed, while a round waits for it
    second = await sync.helper_started()
    assert second not in (None, first)
    os.kill(second, signal.SIGSTOP)
    waiting = asyncio.ensure_future(sync.sync([tmp_path], write=(tmp_path / "3", b"3")))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    os.kill(second, signal.SIGKILL)
    await asyncio.wait_for(waiting, 10)
    # Then every round's file is there and a third helper does the next round
    assert [(tmp_path / n).read_bytes() for n in "123"] == [b"1", b"2", b"3"]
    assert await sync.helper_started() not in (None, first, second)


async def test_a_helper_that_keeps_dying_is_not_restarted_at_once(
        tmp_path: Path, make_sync) -> None:
    sync = await make_sync("helper")
    await sync.sync([tmp_path])
    pid = sync.helper_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # the round after its death is done in a thread, and so are the next ones for HELPER_RETRY_S
    for name in "ab":
        await sync.sync([tmp_path], write=(tmp_path / name, b"x"))
    assert sync.helper_pid is None and (tmp_path / "b").exists()


async def test_the_helper_holds_no_secret_and_exits_when_closed(
        tmp_path: Path, make_sync, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_API_KEY", "sk-test-never-in-a-helper-0123456789")
    sync = await make_sync("helper")
    await sync.sync([tmp_path])
    pid = sync.helper_pid
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"sk-test-never" not in environ and b"LLM_API_KEY" not in environ
    await sync.close()
    assert process_gone(pid)
    # a round after close is still done (in a thread)
    await sync.sync([tmp_path], write=(tmp_path / "late", b"x"))
    assert (tmp_path / "late").read_bytes() == b"x" and sync.helper_pid is None


async def test_a_helper_that_does_not_answer_in_time_is_killed_and_the_round_done_in_a_thread(
        tmp_path: Path, make_sync, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "HELPER_ROUND_TIMEOUT_S", 0.5)
    sync = await make_sync("helper")
    await sync.sync([tmp_path])
    pid = sync.helper_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # as stuck as a helper gets
    await asyncio.wait_for(sync.sync([tmp_path], write=(tmp_path / "a", b"a")), 10)
    assert (tmp_path / "a").read_bytes() == b"a" and process_gone(pid)


@pytest.mark.parametrize("answer", [b"not json", b'{"writes": {}}', b'{"writes": {"0": 5}, "paths": {}}'])
async def test_a_helper_answering_nonsense_is_replaced_and_the_round_done_in_a_thread(
        tmp_path: Path, make_sync, monkeypatch: pytest.MonkeyPatch, answer: bytes) -> None:
    # Given a helper that reads a request and answers with a malformed header
    script = tmp_path / "bad_helper.py"
    script.write_text("import struct, sys\n"
                      "head, body = struct.unpack('>II', sys.stdin.buffer.read(8))\n"
                      "sys.stdin.buffer.read(head + body)\n"
                      f"sys.stdout.buffer.write(struct.pack('>II', {len(answer)}, 0) + {answer!r})\n"
                      "sys.stdout.buffer.flush()\n"
                      "sys.stdin.buffer.read()\n")
    monkeypatch.setattr(durable, "HELPER_SCRIPT", str(script))
    sync = await make_sync("helper")
    (tmp_path / "out").mkdir()
    # When a round is sent to it
    await asyncio.wait_for(sync.sync([tmp_path / "out"], write=(tmp_path / "out" / "a", b"a")), 10)
    # Then the round was done all the same, and the helper is gone
    assert (tmp_path / "out" / "a").read_bytes() == b"a" and sync.helper_pid is None


@pytest.mark.parametrize("mode,enabled", [("thread", True), ("helper", True), ("thread", False), ("helper", False)])
async def test_a_write_never_replaces_a_file_another_writer_put_there(
        tmp_path: Path, make_sync, mode: str, enabled: bool) -> None:
    sync = await make_sync(mode, enabled)
    # Given another writer's file under the name a caller writes
    (tmp_path / "a.json").write_bytes(b"theirs\n")
    # Then the caller gets FileExistsError, the file keeps its bytes, no temporary file is left
    with pytest.raises(FileExistsError) as caught:
        await sync.sync([tmp_path], write=(tmp_path / "a.json", b"ours\n"))
    assert caught.value.filename == os.fspath(tmp_path / "a.json")
    assert (tmp_path / "a.json").read_bytes() == b"theirs\n" and os.listdir(tmp_path) == ["a.json"]
