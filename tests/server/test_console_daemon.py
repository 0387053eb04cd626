"""The console's deadlines seen from outside the real daemon: /metrics review gauges and
`agentd status` counting what is overdue; the console answers on the daemon's own listener."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, cli, sidecar_for, wait_until
from tests.server.support import CONSOLE_ENV


def gauges(proc: AgentdProcess) -> dict[str, float]:
    status, body = proc.request("GET", "/metrics")
    assert status == 200
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(agentd_review_\w+) (\S+)$", body.decode(), re.M)}


def test_review_gauges_and_status_show_the_queue_and_what_is_overdue(home: Path,
                                                                     daemon: Callable[..., AgentdProcess]) -> None:
    proc = daemon(AGENTD_REVIEW_CONFIDENCE="0.99", REVIEW_SLA_S="2", **CONSOLE_ENV)
    assert gauges(proc) == {"agentd_review_queue_depth": 0, "agentd_review_oldest_age_seconds": 0,
                            "agentd_review_overdue": 0}
    (home / "incoming" / "note.txt").write_text("A short note about nothing much.\n")
    wait_until(lambda: sidecar_for(home, "note.txt"), timeout=20, message="note.txt in review/")
    first = gauges(proc)
    assert first["agentd_review_queue_depth"] == 1 and first["agentd_review_overdue"] == 0

    # REVIEW_SLA_S=2: the item becomes overdue as its age passes two seconds
    later = wait_until(lambda: (g := gauges(proc))["agentd_review_overdue"] == 1 and g, timeout=10,
                       message="the item overdue in /metrics")

    assert later["agentd_review_oldest_age_seconds"] >= 2 and later["agentd_review_queue_depth"] == 1
    status = cli(home, "status", "--json", REVIEW_SLA_S="2")
    assert json.loads(status.stdout)["review_overdue"] == 1
    text = cli(home, "status", REVIEW_SLA_S="2").stdout
    assert re.search(r"review\s+1\s+1 overdue", text), text
    login_status, page = proc.request("GET", "/review/login")
    assert login_status == 200 and b'name="token"' in page
