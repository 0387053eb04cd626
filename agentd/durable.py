"""Group commit: many callers' fsyncs done together in one thread, off the event loop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable


_counter = itertools.count()
FSYNC_THREADS = 4
_pool: list[concurrent.futures.ThreadPoolExecutor] = []


def _fsyncers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads a group commit's fsyncs run in (started when first needed)."""
    if not _pool:
        _pool.append(concurrent.futures.ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="agentd-fsync"))
    return _pool[0]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or directory by path (the inode's dirty data, whoever wrote it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    """Write JSON to a temporary sibling, then rename it over `path` (no fsync here)."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{next(_counter)}")  # short: path.name may be 255 bytes
    # one line: json's C encoder does not indent (jq or `agentd review show` print it nicely)
    data = json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)


class GroupSync:
    """Callers await sync(paths); paths asked for while a round runs share the next round."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._pending: list[tuple[set[str], asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.rounds = 0
        self.fsyncs = 0
        self._hooks: list[tuple[str, Callable[[], Any], Callable[[Any], None]]] = []

    def after_sync(self, path: str | os.PathLike[str], prepare: Callable[[], Any],
                   commit: Callable[[Any], None]) -> None:
        """After each round that fsynced `path`: commit(prepare()) in the round's thread.

        prepare() runs on the loop just before the round's fsyncs start (what it captures
        is on disk when commit runs); commit must not raise.
        """
        self._hooks.append((os.fspath(path), prepare, commit))

    async def sync(self, paths: Iterable[str | os.PathLike[str]], first: Callable[[], None] | None = None) -> None:
        """fsync `paths` in the next round; `first` (a file to write, say) runs in the round's thread
        before its fsyncs: one thread hop, not two. Its OSError is this caller's alone."""
        if not self.enabled:
            if first is not None:
                await asyncio.to_thread(first)
            return
        wanted = {os.fspath(p) for p in paths}
        if not wanted and first is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((wanted, future, first))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        await asyncio.shield(future)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            paths = sorted(set().union(*(p for p, _, _ in batch)))
            hooks = [(path, commit, prepare()) for path, prepare, commit in self._hooks if path in paths]
            firsts = [first for _, _, first in batch]
            errors, first_errors = await asyncio.to_thread(self._round, firsts, paths, hooks)
            self.rounds += 1
            self.fsyncs += len(paths)
            for index, (wanted, future, _) in enumerate(batch):
                failed = [first_errors[index]] if index in first_errors else [errors[p] for p in wanted if p in errors]
                if future.done():
                    continue
                if failed:
                    future.set_exception(failed[0])
                else:
                    future.set_result(None)

    @classmethod
    def _round(cls, firsts: list[Callable[[], None] | None], paths: list[str],
               hooks: Iterable[tuple[str, Callable[[Any], None], Any]]) -> tuple[dict[str, OSError], dict[int, OSError]]:
        first_errors: dict[int, OSError] = {}
        for index, first in enumerate(firsts):
            if first is not None:
                try:
                    first()
                except OSError as exc:
                    first_errors[index] = exc
        return cls._fsync_all(paths, hooks), first_errors

    @staticmethod
    def _fsync_all(paths: list[str], hooks: Iterable[tuple[str, Callable[[Any], None], Any]] = ()) -> dict[str, OSError]:
        """fsync every path, several at once: the file system's journal commits them together
        (one after another, each fsync would wait for a commit of its own)."""
        errors: dict[str, OSError] = {}

        def one(path: str) -> None:
            try:
                fsync_path(path)
            except FileNotFoundError:
                return  # renamed or removed since: its new place is synced by its mover
            except OSError as exc:
                errors[path] = exc

        if len(paths) > 1:
            for _ in _fsyncers().map(one, paths):
                pass
        elif paths:
            one(paths[0])
        for path, commit, token in hooks:
            if path not in errors:
                commit(token)
        return errors
