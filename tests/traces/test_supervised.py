"""The exporter as a supervised task: when it raises (here its cursor cannot be written: the state
folder's file turned into a directory under it) the supervisor restarts it with backoff, its view
says so, nothing is sent twice or lost once the fault is gone, and an error at shutdown neither
escapes the daemon nor leaves it marked as running."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Callable

from agentd.lifecycle.daemon import Daemon
from agentd.lifecycle.supervisor import Supervisor
from agentd.traces.cursor import FILE as CURSOR_FILE
from agentd.traces.cursor import Cursor
from agentd.traces.exporter import TraceExporter
from tests.helpers import audit_events, sidecars
from tests.traces.collector import Collector
from tests.traces.support import SPANS_PER_TRIAGE, burst, drop, make_config


def break_cursor(state: Path) -> Callable[[], None]:
    """An on_request hook: the cursor's path becomes a directory, so its rename fails (EISDIR)."""
    def hook() -> None:
        path = state / CURSOR_FILE
        if not path.is_dir():
            path.unlink(missing_ok=True)
            path.mkdir()
    return hook


async def _until(predicate: Callable[[], object], timeout_s: float, message: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {message}"
        await asyncio.sleep(0.02)


async def test_an_exporter_that_raises_is_restarted_with_backoff_and_loses_or_repeats_nothing(home: Path) -> None:
    drop(home, 3)
    await burst(make_config(home))  # the audit log as the pipeline wrote it, nothing exported yet
    async with Collector(on_request=break_cursor(home / "state")) as collector:
        config = make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint)
        supervisor = Supervisor()
        exporter = TraceExporter(config).start(supervisor.spawn)
        await _until(lambda: supervisor.items["traces"].failures >= 2, 10, "two failures")
        view = exporter.view()
        assert view["state"] == "failing" and "IsADirectoryError" in view["last_error"] and view["restarts"] >= 2
        assert supervisor.items["traces"].in_backoff or supervisor.items["traces"].task is not None
        collector.on_request = None
        shutil.rmtree(home / "state" / CURSOR_FILE)  # the fault is gone: the next round's save succeeds
        await _until(lambda: exporter.view()["state"] == "ok", 15, "the exporter ok again")
        drop(home, 1, prefix="after")
        await burst(make_config(home))  # one more run written by another process meanwhile
        await _until(lambda: len(collector.roots()) == 4, 15, "the fourth trace")
        await exporter.stop()
    assert exporter.view()["state"] == "stopped"
    assert sorted(collector.counts().values()) == [1] * 4 * SPANS_PER_TRIAGE  # restarts sent nothing twice
    assert {s.trace_id for s in collector.roots()} == {m["correlation_id"] for m in sidecars(home)}
    assert Cursor.load(home / "state").exported_seq >= max(e["seq"] for e in audit_events(home, "outcome"))


async def test_an_export_error_at_shutdown_neither_escapes_nor_leaves_the_daemon_marked_running(home: Path) -> None:
    drop(home, 2)
    async with Collector(on_request=break_cursor(home / "state")) as collector:
        config = make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint)
        daemon = Daemon(config, burst=True)
        try:
            assert await daemon.serve() == 0  # the exporter's last rounds raise: shutdown carries on
        finally:
            daemon.notifier.socket.close()
        assert len(collector.acked) >= 1  # the fault did happen: acknowledged, then the cursor failed
    assert not (home / "state" / "running").exists()
    traces = daemon.health()["traces"]
    assert traces["state"] == "stopped" and "IsADirectoryError" in traces["last_error"]
    shutil.rmtree(home / "state" / CURSOR_FILE)
    async with Collector() as collector:
        await burst(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint))
    [_, second] = audit_events(home, "startup")
    assert second["after_crash"] is False  # the stop was clean, nothing to recover
    assert {s.trace_id for s in collector.roots()} == {m["correlation_id"] for m in sidecars(home)}
