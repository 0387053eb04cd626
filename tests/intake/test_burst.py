"""`--burst` keeps the settle rules: a file still changing is taken only once it has settled, and the
burst still drains everything and returns."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentd.config import Config
from agentd.intake.watcher import Candidate, Watcher
from tests.helpers import audit_events, base_env, sidecar_for, sidecars, wait_until

SETTLE_S = 5.0


async def test_drain_waits_for_a_changing_file_to_settle_then_returns(tmp_path: Path) -> None:
    # Given a file written just now and a driven clock
    for sub in ("incoming", "state"):
        (tmp_path / sub).mkdir()
    fresh = tmp_path / "incoming" / "fresh.txt"
    fresh.write_text("part one")
    st = os.lstat(fresh)
    written_at = max(st.st_mtime, st.st_ctime)
    clock = [written_at]
    watcher = Watcher(Config(home=tmp_path, settle_s=SETTLE_S, watch_mode="poll"), clock=lambda: clock[0])
    taken: list[tuple[str, float, int]] = []
    sleeps: list[float] = []

    async def put(candidate: Candidate) -> None:
        taken.append((candidate.source, clock[0], os.lstat(candidate.path).st_size))
        watcher.done(candidate.path)

    async def sleep(delay_s: float) -> None:
        sleeps.append(delay_s)
        if len(sleeps) == 1:  # a writer appends half-way through the first wait
            with fresh.open("a") as f:
                f.write(" and part two")
            os.utime(fresh, (clock[0] + 2.0, clock[0] + 2.0))
        clock[0] += delay_s

    # When the burst drains incoming/
    await watcher.drain(put, sleep=sleep)
    # Then it is taken once, only SETTLE_S after its last write, whole, and the drain returns
    assert [t[0] for t in taken] == ["fresh.txt"]
    _, taken_at, size = taken[0]
    assert taken_at >= written_at + 2.0 + SETTLE_S and size == len("part one and part two")
    assert len(sleeps) == 2  # it waited for the first settle time, then for the one after the append


def test_agentd_run_burst_takes_a_file_being_written_only_when_complete(home: Path) -> None:
    # Given a writer appending to a file in incoming/ and a settled file beside it
    (home / "incoming").mkdir()
    (home / "incoming" / "ready.txt").write_text("a finished letter")
    growing = home / "incoming" / "growing.txt"
    growing.write_text("line 0\n")
    stop = threading.Event()

    def writer() -> None:
        i = 1
        while not stop.is_set():
            with growing.open("a") as f:  # by name each time, as an uploader would
                f.write(f"line {i}\n")
            i += 1
            time.sleep(0.1)

    env = base_env(home, AGENTD_SETTLE_S="1.0")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    proc = subprocess.Popen([sys.executable, "-m", "agentd", "run", "--burst"], env=env, cwd=home.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # When the burst has started and scanned, the writer goes on for a while before it closes for good
        wait_until(lambda: audit_events(home, "startup"), timeout=30, message="the burst started")
        wait_until(lambda: sidecar_for(home, "ready.txt"), timeout=30, message="the settled file done")
        time.sleep(1.0)
        stop.set()
        thread.join()
        final = growing.read_bytes()
        out, _ = proc.communicate(timeout=60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    # Then the burst returned, with both files done and the growing one taken whole, once
    assert proc.returncode == 0, out
    meta = sidecar_for(home, "growing.txt")
    assert meta is not None and meta["outcome"] == "archived"
    assert meta["size"] == len(final) and meta["sha256"] == hashlib.sha256(final).hexdigest()
    assert len(sidecars(home)) == 2 and not list((home / "incoming").iterdir())
