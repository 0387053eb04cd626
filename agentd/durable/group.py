"""Group commit: many callers' new files and fsyncs done together, off the event loop.

A round runs in the daemon's helper process (agentd.durable.sync_worker) once GroupSync.use_helper()
was called, else (the CLI, tests, a helper that cannot start) in a worker thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import structlog

from agentd.durable import sync_worker
from agentd.durable.sync_worker import FRAME, do_round, fsync_path, write_file, write_new

log = structlog.get_logger("agentd.durable.group")
Write = tuple[str, bytes]  # a new file of a round: path, content
Hook = tuple[str, Callable[[Any], None], Any]
HELPER_SCRIPT = sync_worker.__file__
HELPER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")  # no secrets in a helper's reach
HELPER_RETRY_S = 30.0  # a helper that died within this of its start is started again only after it
HELPER_STOP_S = 5.0
HELPER_ROUND_TIMEOUT_S = 60.0  # a helper that has not answered by then (stopped, stuck) is killed


def json_bytes(value: Any) -> bytes:
    # one line: json's C encoder does not indent (jq or `agentd review show` print it nicely)
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape") + b"\n"


def write_json(path: Path, value: Any) -> None:
    """Write JSON to a temporary sibling, then rename it over `path` (no fsync here)."""
    write_file(path, json_bytes(value))


class SyncHelper:
    """The helper process of a GroupSync: started on its first round, started again when it dies."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.retry_at = 0.0
        self.closed = False
        self._starting: asyncio.Future[None] | None = None

    async def round(self, writes: list[Write], paths: list[str]
                    ) -> tuple[dict[int, OSError], dict[str, OSError]] | None:
        """The round done by the helper, or None when there is none to do it (the caller does it)."""
        proc = await self._running()
        if proc is None:
            return None
        assert proc.stdin is not None and proc.stdout is not None
        header = json.dumps({"writes": [[path, len(data)] for path, data in writes], "paths": paths}).encode()
        body = b"".join(data for _, data in writes)
        try:
            async with asyncio.timeout(HELPER_ROUND_TIMEOUT_S):
                proc.stdin.write(FRAME.pack(len(header), len(body)) + header + body)
                await proc.stdin.drain()
                head_len, _ = FRAME.unpack(await proc.stdout.readexactly(FRAME.size))
                answer = json.loads(await proc.stdout.readexactly(head_len))
            return ({int(i): OSError(no, text, writes[int(i)][0]) for i, (no, text) in answer["writes"].items()},
                    {path: OSError(no, text, path) for path, (no, text) in answer["paths"].items()})
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError, LookupError, TypeError) as exc:
            await self._lost(proc, exc)
            return None  # the caller does the round: writes and fsyncs may be done twice, harmlessly
        except BaseException:  # cancelled mid-round: the next answer on the pipe would not be ours
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise

    def start_soon(self) -> None:
        """Start the helper in the background; rounds meanwhile run in a thread (never wait for it)."""
        if self._starting is None and not self.closed and time.monotonic() >= self.retry_at:
            self._starting = asyncio.ensure_future(self._start())

    @property
    def pid(self) -> int | None:
        """The running helper's pid."""
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def started(self) -> int | None:
        """The helper's pid once a start under way is done (tests, diagnostics)."""
        if self._starting is not None:
            await asyncio.shield(self._starting)
        return self.pid

    async def _running(self) -> asyncio.subprocess.Process | None:
        if self.proc is not None:
            if self.proc.returncode is None:
                return self.proc
            await self._lost(self.proc, None)  # it died between two rounds
        self.start_soon()
        return None

    async def _start(self) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", HELPER_SCRIPT, str(os.getpid()), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env={k: v for k, v in os.environ.items() if k in HELPER_ENV},
                cwd="/")
        except OSError as exc:
            self.retry_at = time.monotonic() + HELPER_RETRY_S
            log.warning("sync_helper_unavailable", error=f"{exc.__class__.__name__}: {exc}",
                        note="group commits run in the daemon's threads meanwhile")
            return
        finally:
            self._starting = None
        self.proc, self.started_at = proc, time.monotonic()

    async def _lost(self, proc: asyncio.subprocess.Process, exc: BaseException | None) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        status = await proc.wait()
        if self.proc is proc:
            self.proc = None
        if time.monotonic() - self.started_at < HELPER_RETRY_S:
            self.retry_at = time.monotonic() + HELPER_RETRY_S
        log.warning("sync_helper_exited", status=status, error=f"{exc.__class__.__name__}: {exc}" if exc else None,
                    note="rounds run in the daemon's threads until a new helper starts",
                    next_helper_in_s=max(0.0, round(self.retry_at - time.monotonic(), 1)))
        self.start_soon()

    async def close(self) -> None:
        """Let the helper finish its round and exit (killed after HELPER_STOP_S)."""
        self.closed = True
        if self._starting is not None:
            await asyncio.shield(self._starting)
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), HELPER_STOP_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class GroupSync:
    """Callers await sync(paths); paths asked for while a round runs share the next round."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._pending: list[tuple[set[str], asyncio.Future[None], Write | None]] = []
        self._runner: asyncio.Task[None] | None = None
        self._helper: SyncHelper | None = None
        self.rounds = 0
        self.fsyncs = 0
        self._hooks: list[tuple[str, Callable[[], Any], Callable[[Any], None]]] = []

    def use_helper(self) -> None:
        """Rounds in a helper process from when it is up (the daemon, whose loop's thread is busy:
        a round in a thread would wait for it at every system call). Called on the loop."""
        if self._helper is None:  # with AGENTD_FSYNC=0 too: it writes the files, with no fsyncs
            self._helper = SyncHelper()
            self._helper.start_soon()

    async def helper_started(self) -> int | None:
        """The helper's pid, once its start under way is done; None without one."""
        return await self._helper.started() if self._helper is not None else None

    async def close(self) -> None:
        """Stop the helper process; later rounds run in a thread."""
        if self._helper is not None:
            await self._helper.close()

    @property
    def helper_pid(self) -> int | None:
        return self._helper.pid if self._helper is not None else None

    def after_sync(self, path: str | os.PathLike[str], prepare: Callable[[], Any],
                   commit: Callable[[Any], None]) -> None:
        """After each round that fsynced `path`: commit(prepare()) off the loop.

        prepare() runs on the loop just before the round's fsyncs start (what it captures
        is on disk when commit runs); commit must not raise.
        """
        self._hooks.append((os.fspath(path), prepare, commit))

    async def sync(self, paths: Iterable[str | os.PathLike[str]],
                   write: tuple[str | os.PathLike[str], bytes] | None = None) -> None:
        """fsync `paths` in the next round; `write` (path, bytes: a new file) is written in the
        round before its fsyncs, never over a file that is there (FileExistsError: the caller picks
        another name). Its OSError is this caller's alone."""
        if not self.enabled and (write is None or self._helper is None):
            if write is not None:
                await asyncio.to_thread(write_new, *write)
            return
        wanted = {os.fspath(p) for p in paths} if self.enabled else set()
        if not wanted and write is None:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((wanted, future, (os.fspath(write[0]), write[1]) if write is not None else None))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        await asyncio.shield(future)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            paths = sorted(set().union(*(p for p, _, _ in batch)))
            hooks = [(path, commit, prepare()) for path, prepare, commit in self._hooks if path in paths]
            hooks = [hook for hook in hooks if hook[2] is not None]
            writes: list[Write] = []
            writer: dict[int, int] = {}  # a write's index -> its caller's
            for index, (_, _, write) in enumerate(batch):
                if write is not None:
                    writer[len(writes)] = index
                    writes.append(write)
            done = await self._helper.round(writes, paths) if self._helper is not None else None
            if done is None:
                done = await asyncio.to_thread(self._round, writes, paths, hooks)
            elif hooks:
                await asyncio.to_thread(self._after, hooks, done[1])
            write_errors, errors = done
            self.rounds += 1
            self.fsyncs += len(paths)
            failed_write = {writer[i]: exc for i, exc in write_errors.items()}
            for index, (wanted, future, _) in enumerate(batch):
                failed = [failed_write[index]] if index in failed_write else [errors[p] for p in wanted if p in errors]
                if future.done():
                    continue
                if failed:
                    future.set_exception(failed[0])
                else:
                    future.set_result(None)

    @classmethod
    def _round(cls, writes: list[Write], paths: list[str], hooks: list[Hook]
               ) -> tuple[dict[int, OSError], dict[str, OSError]]:
        done = do_round(writes, paths)
        cls._after(hooks, done[1])
        return done

    @staticmethod
    def _after(hooks: list[Hook], errors: dict[str, OSError]) -> None:
        for path, commit, token in hooks:
            if path not in errors:
                commit(token)
