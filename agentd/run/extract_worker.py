"""The parser process of agentd.run.isolated: limits itself, then extracts one file per request frame
(or answers an offline rule: a request naming `module:function` with the document's text; or reads
a PDF's text layer for the review console's preview: a request with `preview`).

Run as `python -m agentd.run.extract_worker MEMORY_MB` by agentd.run.isolated only. It imports as
little as it can (no asyncio, no logging set-up; pypdf on the first PDF), so a fresh one
costs ~60 ms of CPU. Frames on stdin and stdout: FRAME (header length, body length), a
JSON header, raw bytes.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

from agentd.errors import DataError
from agentd.run.extract import _pdf, extract

FRAME = struct.Struct(">II")  # header length, body length
MAX_TEXT_BYTES = 256 << 20
NICE = 10


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
        pass  # a SystemCallFilter without setpriority: the parser runs at the daemon's priority


def _quiet_parsers() -> None:
    import logging
    import warnings

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a hostile PDF's warnings are not news
    warnings.simplefilter("ignore")


def send(out: BinaryIO, header: dict[str, Any], body: bytes = b"") -> None:
    head = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass")
    out.write(FRAME.pack(len(head), len(body)) + head + body)
    out.flush()


def reply(name: str, data: bytes, preview: bool = False) -> tuple[dict[str, Any], bytes]:
    """A file's text (preview: a PDF's text layer for the review console, whatever the name)."""
    try:
        document = _pdf(data) if preview else extract(Path(name), data)
    except DataError as exc:
        return {"error": "data", "reason": exc.reason, "detail": exc.detail, "extra": exc.extra}, b""
    except RecursionError:
        return {"error": "data", "reason": "extract_failed", "detail": "the file nests too deeply to parse"}, b""
    body = document.text.encode("utf-8", "surrogatepass")
    if len(body) > MAX_TEXT_BYTES:
        return {"error": "data", "reason": "text_too_large", "detail": f"{len(body)} bytes of text"}, b""
    return {"kind": document.kind, "meta": document.meta}, body


_RULES: dict[str, Any] = {}


def _rule(ref: str) -> Any:
    """The function `module:qualname` names (imported once)."""
    found = _RULES.get(ref)
    if found is None:
        module, _, qualname = ref.partition(":")
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        _RULES[ref] = found
    return found


def answer_rule(ref: str, data: bytes) -> tuple[dict[str, Any], bytes]:
    try:
        rule = _rule(ref)
    except (ImportError, AttributeError, ValueError) as exc:
        return {"error": "unresolvable", "detail": f"{exc.__class__.__name__}: {exc}"[:300]}, b""
    try:
        answer = rule(data.decode("utf-8", "surrogatepass"))
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001  (the rule's bug is reported to the daemon, which fails the run)
        return {"error": "rule", "detail": f"{exc.__class__.__name__}: {exc}"[:300]}, b""
    return {"answer": True}, body


def serve(memory_mb: int) -> None:
    """One request frame in, one answer frame out, until stdin closes."""
    parent = os.getppid()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print() must never corrupt a frame
    _die_with_parent(parent)
    _yield_to_the_daemon()
    limited = _limit_memory(memory_mb)
    _quiet_parsers()
    send(out, {"ready": True, "memory_limited": limited, "pid": os.getpid()})
    stdin = sys.stdin.buffer
    while prefix := stdin.read(FRAME.size):
        head_len, body_len = FRAME.unpack(prefix)
        request = json.loads(stdin.read(head_len))
        data = stdin.read(body_len)
        try:
            if "rule" in request:
                header, body = answer_rule(str(request["rule"]), data)
            elif "preview" in request:
                header, body = reply("preview.pdf", data, preview=True)
            else:
                header, body = reply(str(request["name"]), data)
        except MemoryError:
            del data
            send(out, {"error": "memory", "exit": True})
            return  # a fresh process is cheaper than trusting a heap that hit its limit
        del data
        send(out, header, body)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
