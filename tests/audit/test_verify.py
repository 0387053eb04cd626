"""`agentd audit verify` on a running daemon: a consistent snapshot, no false alarms."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, audit_events, cli, sidecars, wait_until

FILES = 200


def _feed(incoming: Path, stop: threading.Event) -> None:
    """A steady stream of drops (one every 20 ms), so verify always overlaps moving files."""
    for i in range(FILES):
        if stop.is_set():
            return
        (incoming / f"busy{i:03}.txt").write_text(f"Invoice {i}: amount due 2048.00 EUR")
        time.sleep(0.02)


def test_verify_while_the_daemon_processes_and_rotates_never_reports_a_false_problem(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a daemon rotating its audit log every few lines, and files arriving all the time
    agent = daemon(AGENTD_AUDIT_MAX_BYTES="4096", AGENTD_SETTLE_S="0")
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(home / "incoming", stop), daemon=True)
    feeder.start()
    # When verify runs again and again meanwhile
    runs, overlapped = [], 0
    try:
        while feeder.is_alive() or len(sidecars(home)) < FILES:
            before = len(sidecars(home))
            runs.append(cli(home, "audit", "verify"))
            overlapped += 0 < before < len(sidecars(home)) < FILES
            assert agent.healthy()
            if len(runs) > 60:
                break
    finally:
        stop.set()
        feeder.join()
    # Then every run passed, several while files were finishing and the log rotating
    failed = [r.stdout + r.stderr for r in runs if r.returncode != 0]
    assert failed == [], failed[0]
    assert overlapped >= 3, f"only {overlapped} verify runs overlapped finishing files"
    wait_until(lambda: len(sidecars(home)) == FILES, timeout=30)
    assert len(list((home / "logs").glob("audit-*.jsonl"))) >= 10
    agent.stop()
    final = cli(home, "audit", "verify")
    assert final.returncode == 0 and "anchor agrees" in final.stdout
    assert len(audit_events(home, "outcome")) == FILES
