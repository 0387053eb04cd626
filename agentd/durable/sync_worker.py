"""A group commit's file work: new files written (temporary sibling, then a link that never replaces
another writer's file) and paths fsynced.

The primitives of agentd.durable.group, and the main of its helper process: `python -I
agentd/durable/sync_worker.py PARENT_PID`, started by the daemon's GroupSync. A round done in the daemon's own
threads waits for the event loop's thread at every system call (the GIL): on a busy 2-core
machine a round of 1-2 ms took 6-9 ms. The helper does it in a process of its own. It imports
nothing of agentd (a fresh one costs about 20 ms of CPU and 13 MiB) and trusts its parent only:
requests are frames on stdin (FRAME, a JSON header naming the files to write with their sizes
and the paths to fsync, then the files' bytes), answers are frames on stdout (FRAME, a JSON
header with each failed write's and each failed path's errno; no body).
"""
from __future__ import annotations

import concurrent.futures
import errno
import itertools
import json
import os
import struct
import sys
from typing import Any, BinaryIO, Iterable

FRAME = struct.Struct(">II")  # header length, body length
FSYNC_THREADS = 4
NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS)
_counter = itertools.count()
_pool: list[concurrent.futures.ThreadPoolExecutor] = []


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or directory by path (the inode's dirty data, whoever wrote it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes, replace: bool = True) -> None:
    """Write `data` to a temporary sibling, then rename it over `path` (no fsync here).

    replace=False (a group commit's new file, a sidecar): the temporary file is linked to `path`,
    which fails with EEXIST when another writer put a file there; that file is never replaced."""
    path = os.fspath(path)
    # short: the file's own name may be 255 bytes
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{next(_counter)}")
    try:
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
        if replace:
            os.rename(tmp, path)
        else:
            _link_new(tmp, path)
    except OSError as exc:  # named by the file asked for, not its temporary sibling
        raise OSError(exc.errno, exc.strerror, path) from None


def write_new(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a new file at `path`, never over one that is there (FileExistsError then)."""
    write_file(path, data, replace=False)


def _link_new(tmp: str, path: str) -> None:
    """link() fails with EEXIST on a taken name; the temporary name goes either way. A file
    system without hard links: a rename after a look."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except OSError as exc:
        taken = exc.errno == errno.EEXIST or os.path.lexists(path)
        if not taken and exc.errno in NO_HARD_LINKS:
            os.rename(tmp, path)
            return
        os.unlink(tmp)
        if taken:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
        raise
    os.unlink(tmp)


def fsync_all(paths: list[str]) -> dict[str, OSError]:
    """fsync every path, several at once: the file system's journal commits them together
    (one after another, each fsync would wait for a commit of its own). A path gone since it
    was asked for is no error (its mover syncs its new place)."""
    errors: dict[str, OSError] = {}

    def one(path: str) -> None:
        try:
            fsync_path(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            errors[path] = exc

    if len(paths) > 1:
        if not _pool:
            _pool.append(concurrent.futures.ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="agentd-fsync"))
        for _ in _pool[0].map(one, paths):
            pass
    elif paths:
        one(paths[0])
    return errors


def do_round(writes: Iterable[tuple[str, bytes]], paths: list[str]) -> tuple[dict[int, OSError], dict[str, OSError]]:
    """Write the new files (in order; never over a file that is there), then fsync the paths:
    (failed writes by index, failed paths)."""
    write_errors: dict[int, OSError] = {}
    for index, (path, data) in enumerate(writes):
        try:
            write_new(path, data)
        except OSError as exc:
            write_errors[index] = exc
    return write_errors, fsync_all(paths)


def error_of(exc: OSError) -> list[Any]:
    return [exc.errno or 0, exc.strerror or str(exc)]


def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the helper goes with a SIGKILLed daemon."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # best effort: its stdin closes with the daemon, and it exits at the end of its round
    if os.getppid() != parent:
        os._exit(0)


def serve(stdin: BinaryIO, out: BinaryIO) -> None:
    """One round a request frame, until stdin closes."""
    while prefix := stdin.read(FRAME.size):
        head_len, body_len = FRAME.unpack(prefix)
        request = json.loads(stdin.read(head_len))
        body = memoryview(stdin.read(body_len))
        writes, at = [], 0
        for path, size in request["writes"]:
            writes.append((path, body[at:at + size]))
            at += size
        write_errors, errors = do_round(writes, request["paths"])  # type: ignore[arg-type]
        answer = json.dumps({"writes": {str(i): error_of(e) for i, e in write_errors.items()},
                             "paths": {p: error_of(e) for p, e in errors.items()}}).encode()
        out.write(FRAME.pack(len(answer), 0) + answer)
        out.flush()


if __name__ == "__main__":
    _die_with_parent(int(sys.argv[1]))
    serve(sys.stdin.buffer, os.fdopen(os.dup(1), "wb"))
