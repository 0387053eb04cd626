"""The demo-grade baseline: a bare watchdog script that renames each file from incoming/ to archive/.

No claim, no fsync, no audit, no sidecar, no model: the floor that agentd's throughput is
compared against. Usage: python bench/baseline_watchdog.py HOME [--seconds N]
It prints "ready" once it watches, and stops on SIGTERM, SIGINT or after --seconds.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer


class RenameToArchive(FileSystemEventHandler):
    def __init__(self, archive: str):
        self.archive = archive
        self.moved = 0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            self.take(os.fsdecode(event.dest_path))
        elif isinstance(event, FileClosedEvent):
            self.take(os.fsdecode(event.src_path))

    def take(self, path: str) -> None:
        try:
            os.rename(path, os.path.join(self.archive, os.path.basename(path)))
            self.moved += 1
        except FileNotFoundError:
            pass  # already taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop by itself after this long")
    args = parser.parse_args(argv)
    # watchdog logs a harmless "queue_events() called when the thread is inactive" at stop
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)
    incoming = os.path.join(args.home, "incoming")
    archive = os.path.join(args.home, "archive")
    os.makedirs(incoming, exist_ok=True)
    os.makedirs(archive, exist_ok=True)
    handler = RenameToArchive(archive)
    observer = Observer()
    observer.schedule(handler, incoming, recursive=False)
    observer.start()
    for entry in os.scandir(incoming):  # what was there before we watched
        if entry.is_file(follow_symlinks=False):
            handler.take(entry.path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait(args.seconds)
    observer.stop()
    observer.join(timeout=5)
    print(f"moved {handler.moved}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
