"""Trace tests: an in-process daemon needs a NOTIFY_SOCKET (sdnotify leaks a socket without one)."""
from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentd-notify-") as tmp:  # short: AF_UNIX paths max 108 bytes
        path = Path(tmp) / "notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            monkeypatch.setenv("NOTIFY_SOCKET", str(path))
            yield path
