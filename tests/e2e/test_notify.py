"""What systemd sees: sd_notify READY/STATUS/WATCHDOG/STOPPING, /health semantics, a full disk."""
from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.fullfs import small_disk  # noqa: F401  (the fixture: a 3 MiB tmpfs)
from tests.helpers import AgentdProcess, base_env, sidecar_for, wait_until


class NotifySocket:
    """The NOTIFY_SOCKET end systemd would hold: records every datagram with its time."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, line) for t, m in list(self.messages) for line in m.splitlines() if line.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_ready_comes_after_recovery_and_http_then_watchdog_status_and_stopping(
        home: Path, notify_socket: NotifySocket, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon(wait=False, NOTIFY_SOCKET=str(notify_socket.path))
    ready = wait_until(lambda: notify_socket.lines("READY=1"), timeout=20, message="READY=1")
    assert agent.healthy(), "READY=1 was sent before /health answered"
    ready_at = ready[0][0]
    (home / "incoming" / "n.txt").write_text("a letter")
    wait_until(lambda: sidecar_for(home, "n.txt"))
    time.sleep(2.5)
    pings = [t for t, _ in notify_socket.lines("WATCHDOG=1")]
    assert len(pings) >= 4 and all(t >= ready_at for t in pings)
    status = notify_socket.lines("STATUS=")[-1][1]
    assert "processed 1" in status and "spent today $" in status
    assert agent.stop(signal.SIGTERM) == 0
    assert notify_socket.lines("STOPPING=1")


def test_sighup_reloads_around_reloading_and_ready(
        home: Path, tmp_path: Path, notify_socket: NotifySocket) -> None:
    env_file = tmp_path / "agentd.env"
    env_file.write_text("MAX_COST_PER_RUN=0.50\n")
    env = base_env(home, NOTIFY_SOCKET=str(notify_socket.path))
    proc = AgentdProcess(home, env, args=("--env-file", str(env_file)))
    try:
        proc.start()
        env_file.write_text("MAX_COST_PER_RUN=0.25\nAGENTD_CONCURRENCY=9\n")
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: notify_socket.lines("RELOADING=1"), message="RELOADING=1")
        wait_until(lambda: len(notify_socket.lines("READY=1")) >= 2, message="READY=1 again")
        wait_until(lambda: "config_reloaded" in proc.output())
        assert "reload_needs_restart" in proc.output() and "concurrency" in proc.output()
        env_file.write_text("MAX_COST_PER_RUN=lots\n")
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload_rejected" in proc.output(), message="a bad reload rejected")
        assert proc.healthy()
    finally:
        proc.kill()


@pytest.mark.timeout(120)
def test_a_full_disk_keeps_the_daemon_alive_loses_nothing_and_recovers(
        small_disk: Path, notify_socket: NotifySocket) -> None:
    home = small_disk / "var"
    home.mkdir()
    proc = AgentdProcess(home, base_env(home, NOTIFY_SOCKET=str(notify_socket.path), AGENTD_DEDUPE="0"))
    try:
        proc.start()
        (home / "incoming" / "before.txt").write_text("before the disk filled")
        wait_until(lambda: sidecar_for(home, "before.txt"))
        filler = home / "filler.bin"
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        try:
            with open(home / "incoming" / "during.txt", "wb") as fh:
                fh.write(b"x")  # whatever fits
        except OSError:
            pass
        wait_until(lambda: proc.health()["status"] == "unhealthy", timeout=30, message="unhealthy")
        status, body = proc.get_json("/health")
        assert status == 503 and body["reasons"]
        # the loop is healthy: the watchdog goes on pinging, so systemd does not restart-loop on a full disk
        pinged_from = time.monotonic()
        wait_until(lambda: [t for t, _ in notify_socket.lines("WATCHDOG=1") if t > pinged_from + 0.5],
                   timeout=5, message="watchdog pings while the disk is full")
        assert proc.proc is not None and proc.proc.poll() is None
        filler.unlink()
        wait_until(lambda: sidecar_for(home, "during.txt"), timeout=30, message="the file after space came back")
        wait_until(lambda: proc.health()["status"] == "ok", timeout=20)
        from tests.helpers import cli
        assert cli(None, "audit", "verify", env=proc.env).returncode == 0
    finally:
        proc.kill()
