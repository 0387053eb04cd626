"""Text extraction off the event loop: warm parser processes with a hard deadline and a memory limit.

`extract_isolated()` is what a run calls. Small plain-text files are decoded inline (a
UTF-8 decode of at most INLINE_MAX_BYTES costs well under a millisecond); everything
else (PDF, HTML, e-mail, big text) goes to a worker process of a shared pool. A worker
is `python -m agentd.sandbox`: it limits its own address space (RLIMIT_AS, set with
prlimit64, which the unit's SystemCallFilter allows), asks the kernel to kill it with
its parent, and then parses one file at a time, reused across files. A worker that
misses the deadline is SIGKILLed and replaced; one that runs out of memory reports it
and exits. Requests and answers are length-prefixed frames on its stdin and stdout:
JSON headers (never pickle: the parent must not trust what a parser process sends) and
raw bytes.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

from agentd import logs
from agentd.errors import DataError, InternalError
from agentd.extract import TEXT_TYPES, Document, extract

log = logs.get("agentd.sandbox")
INLINE_MAX_BYTES = 1 << 20
MAX_WORKERS = 8
MAX_HEADER_BYTES = 1 << 20
MAX_TEXT_BYTES = 256 << 20
START_TIMEOUT_S = 30.0
NICE = 10
STDERR_TAIL_BYTES = 2000
FRAME = struct.Struct(">II")  # header length, body length
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
        return extract(Path(name), data)
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
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentd.sandbox", str(memory_mb), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd="/",
            limit=1 << 20, start_new_session=True)
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

    async def run(self, name: str, data: bytes, timeout_s: float) -> tuple[Document | DataError, bool]:
        """Parse one file: (the document or its DataError, whether this worker may be reused)."""
        head = json.dumps({"name": name}).encode()
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            async with asyncio.timeout(timeout_s):
                stdin.write(FRAME.pack(len(head), len(data)) + head)
                stdin.write(data)
                await stdin.drain()
                header, body = await self._read_frame()
        except TimeoutError:
            await self.stop()
            return DataError("extract_timeout", f"extracting the text took over AGENTD_EXTRACT_TIMEOUT_S="
                                                f"{timeout_s:g}s; the parser was stopped"), False
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return await self._died(), False
        return self._answer(header, body), not header.get("exit")

    def _answer(self, header: dict[str, Any], body: bytes) -> Document | DataError:
        if "kind" in header:
            return Document(text=body.decode("utf-8", "surrogatepass"), kind=str(header["kind"]),
                            meta=dict(header.get("meta") or {}))
        if header.get("error") == "memory":
            return DataError("extract_memory_limit", f"extracting the text needed more than "
                                                     f"AGENTD_EXTRACT_MEMORY_MB={self.memory_mb} MB; the parser stopped")
        extra = header.get("extra") if isinstance(header.get("extra"), dict) else {}
        return DataError(str(header.get("reason", "extract_failed")), str(header.get("detail", "")), **extra)

    async def _died(self) -> DataError:
        how = await self.stop(kill=False)
        log.warning("extract_worker_died", pid=self.pid, exit=how, stderr=self.stderr_text()[-500:])
        if self.proc.returncode == -signal.SIGKILL:
            return DataError("extract_memory_limit", "the parser process was killed (SIGKILL: most likely the "
                                                     "kernel's out-of-memory killer) while extracting the text")
        return DataError("extract_crashed", f"the parser process died ({how}) while extracting the text")

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

    def stderr_text(self) -> str:
        return b"".join(self.stderr_tail)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()

    async def stop(self, kill: bool = True) -> str:
        """Kill the process (or, kill=False, wait for one that is going) and reap it; how it ended."""
        if kill and self.proc.returncode is None:
            self.proc.kill()
        try:
            async with asyncio.timeout(5):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
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
        self._slots = asyncio.Semaphore(size)
        self._warming: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = 0

    def _follow_loop(self) -> None:
        """Workers belong to the loop that started them: a new loop (a test's, a CLI command's) starts afresh."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        for worker in self._idle:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        self._loop, self._idle, self._warming = loop, [], None
        self._slots = asyncio.Semaphore(self.size)

    def configure(self, size: int, memory_mb: int) -> None:
        """Pool size and memory limit (a changed limit retires the idle workers as they come up)."""
        self.size = max(1, min(size, MAX_WORKERS))
        self.memory_mb = memory_mb
        self._slots = asyncio.Semaphore(self.size)  # runs holding the old one finish with it

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
        if not worker.memory_limited:
            log.warning("extract_memory_unlimited", pid=worker.pid,
                        note="the parser process could not set RLIMIT_AS; only the service's MemoryMax holds")
        return worker

    async def extract(self, name: str, data: bytes, timeout_s: float, memory_mb: int | None = None) -> Document:
        self._follow_loop()
        if memory_mb is not None:
            self.memory_mb = memory_mb
        async with self._slots:
            worker = await self._acquire()
            reusable = False
            self._busy.add(worker)
            try:
                answer, reusable = await worker.run(name, data, timeout_s)
            finally:
                self._busy.discard(worker)
                if reusable:
                    self._idle.append(worker)
                else:
                    await asyncio.shield(self._retire(worker))
        if isinstance(answer, DataError):
            raise answer
        return answer

    async def _acquire(self) -> Worker:
        while True:
            if not self._idle and self._warming is not None and not self._warming.done():
                await asyncio.shield(self._warming)  # a replacement on its way is sooner than a new one
            if not self._idle:
                return await self._start()
            worker = self._idle.pop()
            if worker.proc.returncode is None and worker.memory_mb == self.memory_mb:
                return worker
            await worker.stop()  # it died idle, or AGENTD_EXTRACT_MEMORY_MB changed

    async def _retire(self, worker: Worker) -> None:
        await worker.stop()
        if not self._idle:
            self.warm()  # a replacement is ready before the next file needs one

    def pids(self) -> dict[str, list[int]]:
        """The worker processes: those parsing a file now, and the warm idle ones."""
        return {"busy": sorted(w.pid for w in self._busy), "idle": sorted(w.pid for w in self._idle)}

    async def close(self) -> None:
        """Stop every idle worker (at shutdown); busy ones are killed by their runs' cancellation."""
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.stop() for worker in idle))


POOL = ExtractPool()


# -- the worker process ------------------------------------------------------------------
def _limit_memory(memory_mb: int) -> bool:
    import resource

    limit = memory_mb << 20
    try:
        resource.prlimit(0, resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):
        return False
    return True


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: a parser stuck in a loop must not outlive a SIGKILLed daemon."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # best effort: the daemon kills its workers itself, and systemd the rest
    if os.getppid() != parent:
        os._exit(0)


def _yield_to_the_daemon() -> None:
    """The out-of-memory killer should pick a parser before the daemon, and the CPU the daemon first."""
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass  # not allowed here: RLIMIT_AS still bounds the parser
    try:
        os.nice(NICE)
    except OSError:
        pass  # the unit's SystemCallFilter (~@resources) denies it: the parser runs at the daemon's priority


def _send(out: Any, header: dict[str, Any], body: bytes = b"") -> None:
    head = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass")
    out.write(FRAME.pack(len(head), len(body)) + head + body)
    out.flush()


def _reply(name: str, data: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        document = extract(Path(name), data)
    except DataError as exc:
        return {"error": "data", "reason": exc.reason, "detail": exc.detail, "extra": exc.extra}, b""
    except RecursionError:
        return {"error": "data", "reason": "extract_failed", "detail": "the file nests too deeply to parse"}, b""
    body = document.text.encode("utf-8", "surrogatepass")
    if len(body) > MAX_TEXT_BYTES:
        return {"error": "data", "reason": "text_too_large", "detail": f"{len(body)} bytes of text"}, b""
    return {"kind": document.kind, "meta": document.meta}, body


def serve(memory_mb: int) -> None:
    """The worker's loop: one request frame in, one answer frame out, until stdin closes."""
    parent = os.getppid()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() must never corrupt a frame
    _die_with_parent(parent)
    _yield_to_the_daemon()
    limited = _limit_memory(memory_mb)
    import logging
    import warnings

    import pypdf  # noqa: F401  (warm: the first PDF does not pay for the import)

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    _send(out, {"ready": True, "memory_limited": limited, "pid": os.getpid()})
    stdin = sys.stdin.buffer
    while prefix := stdin.read(FRAME.size):
        head_len, body_len = FRAME.unpack(prefix)
        request = json.loads(stdin.read(head_len))
        data = stdin.read(body_len)
        try:
            header, body = _reply(str(request["name"]), data)
        except MemoryError:
            del data
            _send(out, {"error": "memory", "exit": True})
            return  # a fresh process is cheaper than trusting a heap that hit its limit
        del data
        _send(out, header, body)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
