"""Crash safety: SIGKILL at random moments loses and duplicates nothing; backlogs stay bounded."""
from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import AgentdProcess, cli, sidecars, terminal_files, wait_until


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given 200 files dropped in bursts while the daemon is killed -9 six times
    rng = random.Random(20261121)
    expected: dict[str, str] = {}
    contents = [f"document {i}\n{rng.random()}\n".encode() * rng.randint(1, 40) for i in range(200)]
    incoming = home / "incoming"
    incoming.mkdir(exist_ok=True)

    def drop(start: int, stop: int) -> None:
        for i in range(start, stop):
            name = f"doc-{i:03d}.txt"
            expected[name] = hashlib.sha256(contents[i]).hexdigest()
            tmp = incoming / f".{name}.tmp"
            tmp.write_bytes(contents[i])
            os.rename(tmp, incoming / name)

    agent = daemon()
    kills = 0
    for batch in range(6):
        writer = threading.Thread(target=drop, args=(batch * 34, min(200, (batch + 1) * 34)))
        writer.start()
        time.sleep(rng.uniform(0.02, 0.3))
        agent.kill()
        kills += 1
        writer.join()
        agent.start()
    # When it is left to finish
    wait_until(lambda: len(sidecars(home)) >= 200, timeout=60, message="200 sidecars")
    time.sleep(0.5)
    # Then every file is in exactly one terminal folder, whole, and nothing is left behind
    assert kills >= 5
    found: dict[str, list[str]] = {}
    for folder, files in terminal_files(home).items():
        for path in files:
            meta_path = path.with_name(path.name + ".meta.json")
            assert meta_path.exists(), f"{path} has no sidecar"
            found.setdefault(path.name, []).append(folder)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert digest == expected[path.name], f"{path.name} content changed"
    assert sorted(found) == sorted(expected), "a file is missing or extra"
    assert all(places == ["archive"] for places in found.values()), found
    assert len(sidecars(home)) == 200
    assert list((home / "processing").iterdir()) == []
    assert [p.name for p in incoming.iterdir()] == []
    verify = cli(None, "audit", "verify", env=agent.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.timeout(300)
def test_a_backlog_of_20000_files_drains_with_a_bounded_queue_and_memory(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given 20,000 files waiting before the daemon starts
    incoming = home / "incoming"
    incoming.mkdir(exist_ok=True)
    for i in range(20_000):
        (incoming / f"b{i:05d}.txt").write_bytes(b"backlog item %d" % i)
    concurrency = 8
    agent = daemon(AGENTD_FSYNC="0", AGENTD_CONCURRENCY=str(concurrency), AGENTD_DEDUPE="0",
                   AGENTD_LOG_LEVEL="warning")
    assert agent.proc is not None
    peak_queue, peak_in_flight, peak_rss = 0, 0, 0
    baseline_rss = _rss_kib(agent.proc.pid)
    deadline = time.monotonic() + 240
    # When it drains, watched all along
    while time.monotonic() < deadline:
        health = agent.health()
        peak_queue = max(peak_queue, health["work_queue"]["size"], health["work_queue"]["high_water"])
        peak_in_flight = max(peak_in_flight, health["in_flight"], health["queue"]["processing"])
        peak_rss = max(peak_rss, _rss_kib(agent.proc.pid))
        if health["queue"]["archive"] == 20_000:
            break
        time.sleep(0.2)
    # Then the work queue and the files in flight never passed their bound, nor memory its budget
    assert health["queue"]["archive"] == 20_000
    assert peak_queue <= concurrency
    assert peak_in_flight <= concurrency
    assert peak_rss - baseline_rss < 100 * 1024, f"RSS grew by {(peak_rss - baseline_rss) // 1024} MiB"
