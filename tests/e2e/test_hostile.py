"""Hostile input: each ends in failed/ (or archive/) with a reason, never followed, daemon alive."""
from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from watchdog.events import FileOpenedEvent, FileSystemEventHandler
from watchdog.observers import Observer

from tests.helpers import AgentdProcess, sidecar_for, sidecars, terminal_files, wait_until


class _Opens(FileSystemEventHandler):
    def __init__(self) -> None:
        self.opened: list[str] = []

    def on_opened(self, event: FileOpenedEvent) -> None:
        self.opened.append(os.fsdecode(event.src_path))


def _failed_with(home: Path, name: str, reason: str) -> dict:
    meta = wait_until(lambda: sidecar_for(home, name), message=f"{name!r} finished")
    assert meta["outcome"] == "failed", meta
    assert meta["reason"] == reason, meta
    assert meta["error_class"] == "data"
    return meta


def test_a_symlink_is_moved_to_failed_and_its_target_never_opened(
        home: Path, tmp_path: Path, daemon: Callable[..., AgentdProcess]) -> None:
    secret_dir = tmp_path / "outside"
    secret_dir.mkdir()
    target = secret_dir / "passwords.txt"
    target.write_text("root:hunter2")
    opens = _Opens()
    observer = Observer()
    observer.schedule(opens, str(secret_dir))
    observer.start()
    try:
        agent = daemon()
        link = home / "incoming" / "innocent.txt"
        link.symlink_to(target)
        _failed_with(home, "innocent.txt", "symlink")
        moved = home / "failed" / "innocent.txt"
        assert moved.is_symlink() and os.readlink(moved) == str(target)
        time.sleep(0.3)
    finally:
        observer.stop()
        observer.join()
    assert opens.opened == [], f"the symlink target was opened: {opens.opened}"
    assert "hunter2" not in (home / "failed" / "innocent.txt.meta.json").read_text()
    assert agent.health()["status"] == "ok"


def test_a_symlinked_folder_is_not_followed(home: Path, tmp_path: Path, daemon: Callable[..., AgentdProcess]) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "private.txt").write_text("do not touch")
    daemon()
    (home / "incoming" / "triage-link").symlink_to(outside, target_is_directory=True)
    _failed_with(home, "triage-link", "symlink")
    assert (outside / "private.txt").read_text() == "do not touch"


def test_a_fifo_is_failed_without_blocking_the_daemon(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    os.mkfifo(home / "incoming" / "pipe")
    (home / "incoming" / "after.txt").write_text("normal file after the fifo")
    _failed_with(home, "pipe", "fifo")
    assert stat.S_ISFIFO(os.lstat(home / "failed" / "pipe").st_mode)
    assert wait_until(lambda: sidecar_for(home, "after.txt"))["outcome"] == "archived"
    assert agent.health()["status"] == "ok"


def test_a_unix_socket_is_failed(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    path = home / "incoming" / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    try:
        _failed_with(home, "sock", "socket")
    finally:
        server.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
def test_a_device_node_is_failed(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    os.mknod(home / "incoming" / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    _failed_with(home, "zero", "device")


def test_an_oversized_file_fails_unread(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon(AGENTD_MAX_FILE_BYTES="1000")
    (home / "incoming" / "big.txt").write_bytes(b"x" * 5000)
    meta = _failed_with(home, "big.txt", "too_large")
    assert meta["size"] == 5000 and meta["sha256"] is None and meta["llm_calls"] == 0


@pytest.mark.parametrize("name,data,reason", [
    ("binary.txt", bytes(range(256)) * 4, "undecodable"),
    ("empty.txt", b"", "empty"),
    ("blank.md", b"   \n\n  ", "empty"),
    ("broken.pdf", b"%PDF-1.4\n this is not really a pdf", "unreadable_pdf"),
    ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "needs_ocr"),
])
def test_undecodable_or_empty_content_fails_with_a_reason(
        home: Path, daemon: Callable[..., AgentdProcess], name: str, data: bytes, reason: str) -> None:
    daemon()
    (home / "incoming" / name).write_bytes(data)
    _failed_with(home, name, reason)


def test_odd_names_are_processed_and_kept(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    long_name = "l" * 251 + ".txt"
    names = ["line\nbreak.txt", "ünïcødé 文件.txt", "-rf --no-preserve-root.txt", long_name, "  spaced  .md",
             "semi;colon$(whoami).txt"]
    for name in names:
        (home / "incoming" / name).write_text(f"document called {name!r}")
    wait_until(lambda: len(sidecars(home)) == len(names), message="all odd names")
    for name in names:
        meta = sidecar_for(home, name)
        assert meta is not None and meta["outcome"] == "archived", (name, meta)
    archived = {p.name for p in terminal_files(home)["archive"]}
    assert set(names) - {long_name} <= archived
    long_kept = [n for n in archived if n.startswith("l" * 100)]
    assert len(long_kept) == 1 and len(os.fsencode(long_kept[0] + ".meta.json")) <= 255


def test_an_undecodable_file_name_is_archived_with_a_readable_original_name(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    raw = os.fsencode(str(home / "incoming")) + b"/bad-\xff\xfe-name.txt"
    with open(raw, "wb") as fh:
        fh.write(b"plain words")
    meta = wait_until(lambda: next((m for m in sidecars(home) if "bad-" in m["original_name"]), None))
    assert meta["outcome"] == "archived"
    assert meta["original_name"] == "bad-\\xff\\xfe-name.txt"


def test_an_unknown_workflow_folder_fails_its_files(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    folder = home / "incoming" / "no-such-workflow"
    folder.mkdir()
    (folder / "doc.txt").write_text("for nobody")
    meta = _failed_with(home, "doc.txt", "unknown_workflow")
    assert meta["workflow"] == "no-such-workflow"


def test_a_same_name_drop_does_not_overwrite_the_first(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    (home / "incoming" / "report.txt").write_text("first report")
    wait_until(lambda: sidecar_for(home, "report.txt"))
    (home / "incoming" / "report.txt").write_text("second report, other words")
    wait_until(lambda: len(sidecars(home)) == 2)
    bodies = sorted(p.read_text() for p in terminal_files(home)["archive"])
    assert bodies == ["first report", "second report, other words"]


def test_a_flood_of_hostile_files_leaves_the_daemon_healthy(
        home: Path, tmp_path: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    incoming = home / "incoming"
    target = tmp_path / "t"
    target.write_text("x")
    stop = threading.Event()
    for i in range(20):
        (incoming / f"link{i}").symlink_to(target)
        os.mkfifo(incoming / f"fifo{i}")
        (incoming / f"bin{i}.txt").write_bytes(os.urandom(300))
    wait_until(lambda: len(sidecars(home)) == 60, timeout=30, message="60 hostile files")
    stop.set()
    assert {m["outcome"] for m in sidecars(home)} == {"failed"}
    assert agent.health()["status"] == "ok"
