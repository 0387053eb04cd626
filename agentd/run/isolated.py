"""Text extraction off the event loop: warm parser processes with a hard deadline and a memory limit.

`extract_isolated()` is what a run calls. Small plain-text files are decoded inline (a
UTF-8 decode of at most INLINE_MAX_BYTES costs well under a millisecond); everything
else (PDF, HTML, e-mail, big text) goes to a worker process of a shared pool. A worker
is `python -m agentd.run.extract_worker`: it limits its own address space (RLIMIT_AS, set
with prlimit64, which the unit's SystemCallFilter allows), asks the kernel to kill it
with its parent, lowers its priority, and then parses one file at a time, reused across
files. A worker that misses the deadline is SIGKILLed and replaced; one that runs out of
memory reports it and exits. Requests and answers are length-prefixed frames on its
stdin and stdout: JSON headers (never pickle: the parent must not trust what a parser
process sends) and raw bytes. HTML is never parsed inline, however small: 15 KB of
unclosed tags take html.parser 2.6 s.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from agentd import logs
from agentd.errors import AgentdError, DataError, InternalError
from agentd.run.extract import TEXT_TYPES, Document, NeedsDetection, extract
from agentd.run.extract_worker import FRAME, MAX_TEXT_BYTES

log = logs.get("agentd.run.isolated")
INLINE_MAX_BYTES = 1 << 20
MAX_WORKERS = 8
MAX_HEADER_BYTES = 1 << 20
START_TIMEOUT_S = 30.0
EAGER_WORKERS = 2  # up to this many workers, a file that finds them all busy starts one at once
SPAWN_AFTER_S = 0.05  # beyond that, all workers busy this long: start one more (up to the pool's size)
STDERR_TAIL_BYTES = 2000
ONE_WRITE_BYTES = 1 << 16  # a request up to this size is sent in one write (a bigger one is not copied)
UNRESOLVABLE = object()  # a rule the parser process cannot import: the caller runs it itself
ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "PYTHONHOME", "PYTHONFAULTHANDLER", "VIRTUAL_ENV")


def inline_ok(name: str, data: bytes) -> bool:
    """A small plain-text file: decoding it on the loop is cheaper than a round trip."""
    suffix = Path(name).suffix.lower()
    return (suffix in TEXT_TYPES and suffix != "" and len(data) <= INLINE_MAX_BYTES
            and not data.startswith(b"%PDF-"))


async def extract_isolated(name: str, data: bytes, timeout_s: float, memory_mb: int | None = None) -> Document:
    """The document's text, parsed outside the event loop within `timeout_s` and `memory_mb`.

    DataError as extract() raises it, or with reason extract_timeout, extract_memory_limit
    or extract_crashed when the parser process had to be stopped or died.
    """
    if inline_ok(name, data):
        try:
            return extract(Path(name), data, detect=False)
        except NeedsDetection:
            pass  # not UTF-8: charset-normalizer's detection runs in a parser process, never on the loop
    return await POOL.extract(name, data, timeout_s, memory_mb)


class Worker:
    """One parser process, busy with at most one file."""

    def __init__(self, proc: asyncio.subprocess.Process, memory_mb: int):
        self.proc = proc
        self.memory_mb = memory_mb
        self.memory_limited = False
        self.stderr_tail = collections.deque[bytes](maxlen=20)
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"extract-worker-{proc.pid}-stderr")

    @classmethod
    async def start(cls, memory_mb: int) -> Worker:
        env = {k: v for k, v in os.environ.items() if k in ENV_KEPT}  # no secrets in a parser's reach
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agentd.run.extract_worker", str(memory_mb), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd="/",
                limit=1 << 20, start_new_session=True)
        except OSError as exc:  # no processes or memory left for one (TasksMax, ENOMEM)
            raise InternalError("extract_unavailable", f"cannot start a parser process: {exc}") from None
        worker = cls(proc, memory_mb)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                header, _ = await worker._read_frame()
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            how = await worker.stop()
            raise InternalError("extract_unavailable", f"the parser process did not start ({how}; "
                                f"{exc.__class__.__name__}): {worker.stderr_text()}") from None
        worker.memory_limited = bool(header.get("memory_limited"))
        return worker

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _exchange(self, request: dict[str, Any], data: bytes, timeout_s: float) -> tuple[dict[str, Any], bytes]:
        head = json.dumps(request).encode()
        stdin = self.proc.stdin
        assert stdin is not None
        async with asyncio.timeout(timeout_s):
            if len(data) <= ONE_WRITE_BYTES:  # one write wakes the parser once, not twice
                stdin.write(b"".join((FRAME.pack(len(head), len(data)), head, data)))
            else:
                stdin.write(FRAME.pack(len(head), len(data)) + head)
                stdin.write(data)
            await stdin.drain()
            return await self._read_frame()

    async def run(self, name: str, data: bytes, timeout_s: float,
                  preview: bool = False) -> tuple[Document | DataError, bool]:
        """Parse one file (preview: only a PDF's text layer): (the document or its DataError, whether
        this worker may be reused)."""
        try:
            header, body = await self._exchange({"preview": True} if preview else {"name": name}, data, timeout_s)
            return self._answer(header, body), not header.get("exit")
        except TimeoutError:
            await self.stop()
            return DataError("extract_timeout", f"extracting the text took over AGENTD_EXTRACT_TIMEOUT_S="
                                                f"{timeout_s:g}s; the parser was stopped"), False
        except (asyncio.IncompleteReadError, ConnectionError):
            return await self._died(), False
        except (ValueError, TypeError) as exc:  # a parser process is not trusted to speak the protocol
            return await self._malformed(exc), False

    async def rule(self, ref: str, text: str, timeout_s: float) -> tuple[Any, bool]:
        """Answer an offline rule: ((the answer, its JSON) or an AgentdError or UNRESOLVABLE, reusable)."""
        try:
            header, body = await self._exchange({"rule": ref}, text.encode("utf-8", "surrogatepass"), timeout_s)
            if header.get("error") == "memory":
                return DataError("rule_memory_limit", "the offline rule needed more than AGENTD_EXTRACT_MEMORY_MB="
                                                      f"{self.memory_mb} MB on this document; it was stopped"), False
            if header.get("error") == "unresolvable":
                return UNRESOLVABLE, True
            if header.get("error") == "rule":
                return InternalError("offline_rule_failed", str(header.get("detail", ""))[:300]), True
            content = body.decode("utf-8", "surrogatepass")
            return (json.loads(content), content), True
        except TimeoutError:
            await self.stop()
            return DataError("rule_timeout", f"the offline rule took over {timeout_s:g}s on this document; "
                                             "it was stopped"), False
        except (asyncio.IncompleteReadError, ConnectionError):
            return await self._died("answering the offline rule"), False
        except (ValueError, TypeError) as exc:
            return await self._malformed(exc), False

    async def _malformed(self, exc: Exception) -> DataError:
        await self.stop()
        log.warning("extract_worker_malformed", pid=self.pid, error=f"{exc.__class__.__name__}: {exc}"[:300])
        return DataError("extract_crashed", "the parser process sent a malformed answer")

    def _answer(self, header: dict[str, Any], body: bytes) -> Document | DataError:
        if "kind" in header:
            return Document(text=body.decode("utf-8", "surrogatepass"), kind=str(header["kind"]),
                            meta=dict(header.get("meta") or {}))
        if header.get("error") == "memory":
            return DataError("extract_memory_limit", "extracting the text needed more than AGENTD_EXTRACT_MEMORY_MB="
                                                     f"{self.memory_mb} MB; the parser stopped")
        extra = header.get("extra") if isinstance(header.get("extra"), dict) else {}
        extra = {str(k): v for k, v in extra.items() if k not in ("reason", "detail")}
        return DataError(str(header.get("reason", "extract_failed")), str(header.get("detail", "")), **extra)

    async def _died(self, doing: str = "extracting the text") -> DataError:
        how = await self.stop(kill=False)
        log.warning("extract_worker_died", pid=self.pid, exit=how, stderr=self.stderr_text()[-500:])
        if self.proc.returncode == -signal.SIGKILL:
            return DataError("extract_memory_limit", "the parser process was killed (SIGKILL: most likely the "
                                                     "kernel's out-of-memory killer) while " + doing)
        return DataError("extract_crashed", f"the parser process died ({how}) while {doing}")

    async def _read_frame(self) -> tuple[dict[str, Any], bytes]:
        stdout = self.proc.stdout
        assert stdout is not None
        head_len, body_len = FRAME.unpack(await stdout.readexactly(FRAME.size))
        if head_len > MAX_HEADER_BYTES or body_len > MAX_TEXT_BYTES:
            raise ValueError(f"frame of {head_len}+{body_len} bytes")
        header = json.loads(await stdout.readexactly(head_len))
        if not isinstance(header, dict):
            raise ValueError("frame header is not an object")
        return header, await stdout.readexactly(body_len) if body_len else b""

    async def _read_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self.stderr_tail.append(chunk)

    def _kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                self.proc.kill()

    def stderr_text(self) -> str:
        return b"".join(self.stderr_tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()

    async def stop(self, kill: bool = True) -> str:
        """Kill the process (or, kill=False, wait for one that is going) and reap it; how it ended."""
        if kill:
            self._kill()
        try:
            async with asyncio.timeout(5):
                code = await self.proc.wait()
        except TimeoutError:
            self._kill()
            code = await self.proc.wait()
        await asyncio.gather(self._stderr_task, return_exceptions=True)
        if code < 0:
            return f"signal {signal.Signals(-code).name}"
        return f"exit status {code}"


class ExtractPool:
    """Up to `size` warm workers; each file takes an idle one or starts one, and gives it back."""

    def __init__(self, size: int = 4, memory_mb: int = 512):
        self.size = size
        self.memory_mb = memory_mb
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0  # workers being started for a file (busy as soon as they answer)
        self._slots = asyncio.Semaphore(size)
        self._freed = asyncio.Event()
        self._warming: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = 0
        self.users = 0  # daemons of this process using the pool (the eval commands run several at once)

    def _follow_loop(self) -> None:
        """Workers belong to the loop that started them: a new loop (a test's, a CLI command's) starts afresh."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        for worker in self._idle:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        self._loop, self._idle, self._busy, self._warming, self.users = loop, [], set(), None, 0
        self._starting = 0
        self._slots, self._freed = asyncio.Semaphore(self.size), asyncio.Event()

    def configure(self, size: int, memory_mb: int) -> None:
        """Pool size and memory limit (a changed limit retires the idle workers as they come up)."""
        self.size = max(1, min(size, MAX_WORKERS))
        self.memory_mb = memory_mb
        self._slots = asyncio.Semaphore(self.size)  # runs holding the old one finish with it

    def open(self) -> None:
        """A daemon starts using the pool; `close` stops the workers only when the last one is done."""
        self._follow_loop()
        self.users += 1

    def warm(self) -> None:
        """Start one worker in the background, so the first file does not wait for it."""
        self._follow_loop()
        if self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self._warm_one(), name="extract-warm")

    async def _warm_one(self) -> None:
        if self._idle:
            return
        try:
            self._idle.append(await self._start())
        except InternalError as exc:
            log.error("extract_worker_unavailable", error=exc.detail)

    async def _start(self) -> Worker:
        worker = await Worker.start(self.memory_mb)
        self.started += 1
        log.debug("extract_worker_started", pid=worker.pid, workers=len(self._idle) + len(self._busy) + 1)
        if not worker.memory_limited:
            log.warning("extract_memory_unlimited", pid=worker.pid,
                        note="the parser process could not set RLIMIT_AS; only the service's MemoryMax holds")
        return worker

    async def extract(self, name: str, data: bytes, timeout_s: float, memory_mb: int | None = None) -> Document:
        self._follow_loop()
        if memory_mb is not None:
            self.memory_mb = memory_mb
        answer = await self._use(lambda worker: worker.run(name, data, timeout_s))
        if isinstance(answer, DataError):
            raise answer
        return answer

    async def preview(self, data: bytes, timeout_s: float, memory_mb: int | None = None) -> Document:
        """A PDF's text layer for the review console's preview, bounded like an extraction (DataError
        with extract_timeout, extract_memory_limit, ...)."""
        self._follow_loop()
        if memory_mb is not None:
            self.memory_mb = memory_mb
        answer = await self._use(lambda worker: worker.run("preview.pdf", data, timeout_s, preview=True))
        if isinstance(answer, DataError):
            raise answer
        return answer

    async def rule(self, ref: str, text: str, timeout_s: float) -> Any:
        """An offline rule's (answer, its JSON) for `text`, computed in a parser process within
        `timeout_s`; UNRESOLVABLE when the process cannot import `ref` (module:qualname)."""
        self._follow_loop()
        answer = await self._use(lambda worker: worker.rule(ref, text, timeout_s))
        if isinstance(answer, AgentdError):
            raise answer
        return answer

    async def _use(self, work: Callable[[Worker], Awaitable[tuple[Any, bool]]]) -> Any:
        async with self._slots:
            worker = await self._acquire()
            reusable = False
            self._busy.add(worker)
            try:
                answer, reusable = await work(worker)
            finally:
                self._busy.discard(worker)
                if reusable:
                    self._idle.append(worker)
                    self._freed.set()
                else:
                    await asyncio.shield(self._retire(worker))
        return answer

    async def _acquire(self) -> Worker:
        while True:
            if not self._idle:
                await self._wait_for_idle()
            if not self._idle:
                self._starting += 1
                try:
                    return await self._start()
                finally:
                    self._starting -= 1
            worker = self._idle.pop()
            if worker.proc.returncode is None and worker.memory_mb == self.memory_mb:
                return worker
            await worker.stop()  # it died idle, or AGENTD_EXTRACT_MEMORY_MB changed

    async def _wait_for_idle(self) -> None:
        """A busy worker is usually free again within a millisecond; a new one costs ~60 ms of CPU.

        The second worker is started at once, though: with files in flight two at a time (the
        daemon runs several), waiting for the one warm worker adds its whole answer to each
        file's time, and the second one is started once and kept."""
        if self._warming is not None and not self._warming.done():
            await asyncio.shield(self._warming)  # a replacement on its way is sooner than a new one
        if len(self._busy) + self._starting < EAGER_WORKERS:
            return
        deadline = asyncio.get_running_loop().time() + SPAWN_AFTER_S
        while not self._idle and (self._busy or self._starting):
            self._freed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._freed.wait()
            except TimeoutError:
                return

    async def _retire(self, worker: Worker) -> None:
        await worker.stop()
        if not self._idle:
            self.warm()  # a replacement is ready before the next file needs one

    def pids(self) -> dict[str, list[int]]:
        """The worker processes: those parsing a file now, and the warm idle ones."""
        return {"busy": sorted(w.pid for w in self._busy), "idle": sorted(w.pid for w in self._idle)}

    async def close(self) -> None:
        """Stop every idle worker when the last daemon using the pool shuts down; busy ones are killed by
        their runs' cancellation."""
        self.users = max(0, self.users - 1)
        if self.users:
            return
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.stop() for worker in idle))


POOL = ExtractPool()
