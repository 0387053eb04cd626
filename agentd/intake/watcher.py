"""Finds complete files in incoming/. inotify events are hints; scans are the truth.

A file is taken when it was closed after writing (or renamed in), or, found by a scan
with no event seen, when it has been unchanged for the settle time. A file some writer
still has open (a write event and no close) waits for its close. Memory stays bounded:
the scan streams the folder and blocks on the bounded work queue.
"""
from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from watchdog.events import (FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent, FileSystemEvent, FileSystemEventHandler)
from watchdog.observers.inotify import InotifyObserver

try:
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper as _Grouper
except ImportError:  # watchdog < 7
    from watchdog.observers.inotify_buffer import InotifyBuffer as _Grouper  # type: ignore[no-redef]

# watchdog holds an unpaired IN_MOVED_FROM for 0.5 s in a FIFO, and every event behind it
# waits too: each claim (a rename out of incoming/) would delay the next file's close by
# up to 0.5 s. A rename's two halves arrive in the same read, so 10 ms pairs them.
_Grouper.delay = 0.01

from agentd import logs
from agentd.config import Config
from agentd.durable.group import write_json
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ignored_name, workflow_of

log = logs.get("agentd.intake.watcher")
HINT_CAP = 10_000
MAX_DEPTH = 3
UNREADABLE_FILE = "unreadable.json"  # what `agentd status` shows of the entries the watcher had to skip


@dataclass(frozen=True)
class Candidate:
    path: Path
    workflow: str
    source: str  # the path relative to incoming/


class _Hints(FileSystemEventHandler):
    """Runs in watchdog's thread: hands every event to the event loop, nothing more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watcher: "Watcher"):
        self.loop = loop
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self.loop.call_soon_threadsafe(self.watcher.rescan_soon)
            return
        kind = None
        path = os.fsdecode(event.src_path)
        if isinstance(event, FileMovedEvent):
            if event.dest_path:
                kind, path = "closed", os.fsdecode(event.dest_path)  # renamed or moved in: complete
            else:
                kind = "deleted"  # moved out (a claim)
        elif isinstance(event, FileClosedEvent):
            kind = "closed"
        elif isinstance(event, FileModifiedEvent):
            kind = "written"
        elif isinstance(event, FileCreatedEvent):
            kind = "created"  # may be synthetic (a folder moved in): settle, do not wait for a close
        elif isinstance(event, FileDeletedEvent):
            kind = "deleted"
        if kind:
            self.loop.call_soon_threadsafe(self.watcher.hint, kind, path)


class Watcher:
    def __init__(self, config: Config, deferrals: Deferrals | None = None,
                 on_counted: Callable[[int], None] = lambda n: None, clock: Callable[[], float] = time.time):
        self.config = config
        self.incoming = config.incoming
        self.deferrals = deferrals or Deferrals(config.state_dir, clock)
        self.on_counted = on_counted  # a full scan found this many waiting files
        self.clock = clock
        self.unreadable: dict[str, str] = {}  # path -> why it was skipped (warned once each)
        self.open_writes: dict[str, float] = {}  # path -> time of its last write event
        self.closed: dict[str, None] = {}  # paths closed after writing, in order
        self.settling: dict[str, float] = {}  # path -> when it will have settled
        self.unsettled: dict[str, float] = {}  # found by the last scan still changing -> when it will have settled
        self.queued: set[str] = set()
        self.overflow = False
        self.wake = asyncio.Event()
        self._observer: Any = None
        self.polling = config.watch_mode != "inotify"  # no inotify hints: scans every second
        self.last_scan_at = 0.0
        self.scans = 0

    # -- inotify ----------------------------------------------------------------------
    def start_observer(self) -> None:
        """inotify hints; when they cannot be had (a folder we may not read), scans alone find the files."""
        if self.config.watch_mode != "inotify":
            return
        observer = InotifyObserver(generate_full_events=True)  # a move-in is a move, not a create
        observer.daemon = True
        try:
            observer.schedule(_Hints(asyncio.get_running_loop(), self), os.fspath(self.incoming), recursive=True)
            observer.start()
        except OSError as exc:
            self.skipped(os.fspath(self.incoming), f"inotify: {exc.__class__.__name__}: {exc.strerror or exc}")
            observer.stop()
            self._observer = None
            self.polling = True
            return
        self._observer = observer

    def skipped(self, path: str, why: str) -> None:
        """An entry we cannot read, stat or follow: one warning per entry, shown in /health and status."""
        if path in self.unreadable:
            return
        if len(self.unreadable) < HINT_CAP:
            self.unreadable[path] = why
        log.warning("entry_skipped", path=path, why=why)
        self._save_unreadable()

    def _save_unreadable(self) -> None:
        try:
            write_json(self.config.state_dir / UNREADABLE_FILE, dict(list(self.unreadable.items())[:100]))
        except OSError as exc:
            log.warning("unreadable_list_not_saved", error=f"{exc.__class__.__name__}: {exc}")

    def readable_again(self, path: str) -> None:
        if self.unreadable.pop(path, None) is not None:
            log.info("entry_readable_again", path=path)
            self._save_unreadable()

    def stop_observer(self) -> None:
        if self._observer is not None:
            # watchdog logs a harmless error if an event arrives while its thread stops
            logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def alive(self) -> bool:
        return self._observer is None or self._observer.is_alive()

    def check_observer(self) -> None:
        """A dead inotify thread stops the loop, so its supervisor restarts the watcher."""
        if self._observer is not None and not self._observer.is_alive():
            self._observer = None
            raise RuntimeError("the inotify observer thread stopped")

    def hint(self, kind: str, path: str) -> None:
        if kind == "written":
            if len(self.open_writes) < HINT_CAP:
                self.open_writes[path] = self.clock()
            return
        if kind == "created":
            if path not in self.queued and len(self.settling) < HINT_CAP:
                self.settling[path] = self.clock() + self.config.settle_s
                self.wake.set()
            return
        self.open_writes.pop(path, None)
        if kind == "closed" and path not in self.queued:
            if len(self.closed) < HINT_CAP:
                self.closed[path] = None
            else:
                self.overflow = True
        self.wake.set()

    def rescan_soon(self) -> None:
        self.overflow = True
        self.wake.set()

    def defer(self, path: Path, until: float) -> None:
        """`path` waits until `until` (its deferral is on disk): offer it again then."""
        if len(self.settling) < HINT_CAP:
            self.settling[os.fspath(path)] = until
            self.wake.set()

    def done(self, path: Path) -> None:
        """The worker has tried to claim `path`; a later file of that name is new."""
        self.queued.discard(os.fspath(path))

    # -- deciding ---------------------------------------------------------------------
    def candidate(self, path: str, closed: bool = False) -> Candidate | None:
        """A Candidate if `path` is complete now; None if it is gone, ignored or not ready."""
        if path in self.queued:
            return None
        name = os.path.basename(path)
        if ignored_name(name):
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.open_writes.pop(path, None)
            self.settling.pop(path, None)
            return None
        except OSError as exc:  # EACCES, ELOOP, ENAMETOOLONG, ENOTDIR: skip it, go on with the rest
            self.skipped(path, f"{exc.__class__.__name__}: {exc.strerror or exc}")
            return None
        if stat.S_ISDIR(st.st_mode):
            return None
        now = self.clock()
        wait_until = self.deferrals.until(path, st.st_ino)
        if wait_until is not None:
            if len(self.settling) < HINT_CAP:
                self.settling[path] = wait_until
            return None
        if stat.S_ISREG(st.st_mode) and not closed:
            last_write = self.open_writes.get(path)
            if last_write is not None and now - last_write < self.config.stale_open_s:
                return None  # a writer has it open: wait for its close
            settled_at = max(st.st_mtime, st.st_ctime, last_write or 0) + self.config.settle_s
            if now < settled_at:
                if len(self.settling) < HINT_CAP:
                    self.settling[path] = settled_at
                    self.unsettled[path] = settled_at
                return None
        self.open_writes.pop(path, None)
        self.settling.pop(path, None)
        rel = os.path.relpath(path, self.incoming)
        return Candidate(Path(path), workflow_of(rel.split(os.sep)), rel)

    # -- the loop ---------------------------------------------------------------------
    async def run(self, put: Callable[[Candidate], Awaitable[None]]) -> None:
        """Feed complete files to `put` (which blocks when the work queue is full); supervised, restartable."""
        self._save_unreadable()  # a new list for this daemon (an old one may be stale)
        self.start_observer()
        try:
            await self._loop(put)
        finally:
            self.stop_observer()

    async def _loop(self, put: Callable[[Candidate], Awaitable[None]]) -> None:
        next_scan = 0.0
        while True:
            self.check_observer()
            interval = min(self.config.rescan_s, 1.0) if self.polling else self.config.rescan_s
            while self.closed:
                path = next(iter(self.closed))
                del self.closed[path]
                await self._offer(path, put, closed=True)
            now = self.clock()
            for path, at in list(self.settling.items()):
                if at <= now:
                    del self.settling[path]
                    await self._offer(path, put)
            if now >= next_scan or self.overflow:
                self.overflow = False
                await self.scan(put)
                next_scan = self.clock() + interval
            deadline = min([next_scan, *self.settling.values()])
            timeout = max(0.01, deadline - self.clock())
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
            self.wake.clear()

    async def _offer(self, path: str, put: Callable[[Candidate], Awaitable[None]], closed: bool = False) -> None:
        found = self.candidate(path, closed=closed)
        if found is not None:
            self.queued.add(path)
            await put(found)

    async def drain(self, put: Callable[[Candidate], Awaitable[None]],
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`--burst`: offer every file in incoming/ once it is complete, then return.

        A file changed less than the settle time ago is taken only once it has settled (a writer
        still appending keeps it waiting); a deferred file is left for a later run, as ever."""
        while True:
            await self.scan(put)
            if not self.unsettled:
                return
            await sleep(max(0.01, min(self.unsettled.values()) - self.clock()))

    async def scan(self, put: Callable[[Candidate], Awaitable[None]]) -> None:
        """One streaming pass over incoming/ and its workflow folders; an unreadable entry is skipped."""
        self.scans += 1
        self.unsettled.clear()
        self.last_scan_at = self.clock()
        waiting = 0
        stack: list[tuple[str, int]] = [(os.fspath(self.incoming), 0)]
        while stack:
            directory, depth = stack.pop()
            try:
                it = os.scandir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:  # EACCES, ENOTDIR, ELOOP, ENAMETOOLONG: skip it, go on with the rest
                self.skipped(directory, f"{exc.__class__.__name__}: {exc.strerror or exc}")
                continue
            self.readable_again(directory)
            with it:
                for entry in it:
                    if ignored_name(entry.name):
                        continue
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError as exc:
                        self.skipped(entry.path, f"{exc.__class__.__name__}: {exc.strerror or exc}")
                        continue
                    if is_dir:
                        if depth < MAX_DEPTH:
                            stack.append((entry.path, depth + 1))
                        continue
                    waiting += 1
                    await self._offer(entry.path, put)
        self.on_counted(waiting)
