"""The real daemon with a failing exporter: /health shows it failing and restarted (the daemon
degraded, not unhealthy), SIGTERM still stops it cleanly, and the next start exports the rest."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Callable

from agentd.traces.cursor import FILE as CURSOR_FILE
from tests.helpers import AgentdProcess, audit_events, cli, sidecars, wait_until
from tests.traces.collector import Collector
from tests.traces.support import drop
from tests.traces.test_supervised import break_cursor


def test_the_daemon_shows_a_failing_exporter_in_health_and_stops_cleanly_with_it(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    with Collector(on_request=break_cursor(home / "state")) as collector:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "AGENTD_SETTLE_S": "0.05"}
        proc = daemon(**env)
        assert proc.health()["traces"]["state"] == "ok"
        drop(home, 2)
        health = wait_until(lambda: (h := proc.health())["traces"]["restarts"] >= 1
                            and h["traces"]["state"] == "failing" and h, timeout=30,
                            message="the exporter failing, restarted by its supervisor")
        assert "IsADirectoryError" in health["traces"]["last_error"] and health["traces"]["spans_exported"] > 0
        assert health["status"] == "degraded" and any(r.startswith("trace export failing") for r in health["reasons"])
        assert proc.stop(signal.SIGTERM, timeout=30) == 0
        assert not (home / "state" / "running").exists() and "trace_export_stopped" in proc.output()
        status = cli(home, "status", "--json")
        assert json.loads(status.stdout)["running"] is False
        collector.on_request = None
        shutil.rmtree(home / "state" / CURSOR_FILE)
        proc = daemon(**env)
        drop(home, 1, prefix="probe")
        wait_until(lambda: len(sidecars(home)) == 3 and {m["correlation_id"] for m in sidecars(home)}
                   <= {s.trace_id for s in collector.roots()} and proc.health()["traces"]["state"] == "ok",
                   timeout=30, message="every run's trace (at least once), the exporter ok")
    assert audit_events(home, "startup")[-1]["after_crash"] is False
