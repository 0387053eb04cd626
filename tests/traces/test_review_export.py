"""A run sent to review, exported by the real daemon to a real OTLP/HTTP receiver: its trace goes out
when the run reaches review/ (later runs are not held back behind it), a reviewer's decision by
the CLI adds the review span to the same trace, `agentd trace` shows it decided, and a restart
repeats and loses nothing."""
from __future__ import annotations

import getpass
from collections import Counter
from pathlib import Path
from typing import Callable

from agentd.traces import ids
from agentd.traces.cursor import Cursor
from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, wait_until
from tests.traces.collector import Collector, Span
from tests.traces.support import SPANS_PER_TRIAGE, drop

DIRECTORY = ("id,name,email,aliases\n"
             "c-100,Acme Widgets Ltd,billing@acme-widgets.example,\n"
             "c-200,ACME Widgets Limited,accounts@acme-uk.example,Acme Widgets Ltd|Acme UK\n")
INVOICE = "INVOICE 2291\nAcme Widgets Ltd\n12 Mill Road\nAmount due: $120.00\nPlease pay by 2026-07-01.\n"


def _env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "AGENTD_OTLP_RETRY_MAX_S": "0.5", "AGENTD_SETTLE_S": "0.05"}


def _root_of(collector: Collector, cid: str) -> Span | None:
    return next((s for s in collector.traces().get(cid, []) if not s.parent_span_id), None)


def _reviews(collector: Collector) -> list[Span]:
    return [s for s in collector.spans() if s.name.startswith("agentd.review ")]


def test_a_review_decision_ends_the_trace_without_holding_back_later_runs_or_repeating_after_a_restart(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    (home / "data").mkdir(exist_ok=True)
    (home / "data" / "directory.csv").write_text(DIRECTORY)
    with Collector() as collector:
        proc = daemon(**_env(collector.endpoint))
        (home / "incoming" / "invoice.txt").write_text(INVOICE)
        meta = wait_until(lambda: sidecar_for(home, "invoice.txt"), timeout=30, message="the invoice in review/")
        assert meta["outcome"] == "review" and meta["reason"] == "ambiguous_party"
        cid = meta["correlation_id"]
        root = wait_until(lambda: _root_of(collector, cid), timeout=30, message="the waiting run's trace")
        assert root.attributes["agentd.outcome"] == "review" and ("agentd.review", {"reason": "ambiguous_party"}) \
            in root.events

        # a later run's spans arrive while the first still waits, and the cursor moves past both
        drop(home, 1, prefix="later")
        later = wait_until(lambda: sidecar_for(home, "later-0.txt"), timeout=30, message="the later run")
        wait_until(lambda: len(collector.traces().get(later["correlation_id"], [])) == SPANS_PER_TRIAGE,
                   timeout=30, message="the later run's spans")
        assert (home / "review" / "invoice.txt").exists() and not _reviews(collector)
        [later_outcome] = [e for e in audit_events(home, "outcome") if e["correlation_id"] == later["correlation_id"]]
        cursor = wait_until(lambda: (c := Cursor.load(home / "state")).exported_seq >= later_outcome["seq"] and c,
                            timeout=10, message="the cursor past the later run")
        assert cursor.reread_from > later_outcome["seq"]  # the run in review pins nothing

        decided = cli(home, "review", "approve", cid[:10], "--choice", "1")
        assert decided.returncode == 0, decided.stderr
        [review] = wait_until(lambda: _reviews(collector), timeout=30, message="the review span")
        assert review.trace_id == cid and review.parent_span_id == ids.hex_span_id(ids.root_span_id(cid))
        assert review.name == "agentd.review approve"
        assert review.attributes["agentd.reviewer"] == getpass.getuser()
        assert review.attributes["agentd.decision"] == "approve" and review.attributes["agentd.correlation_id"] == cid
        waited_s = review.attributes["agentd.review.wait_s"]
        assert 0 < waited_s < 60 and review.start_ns == root.end_ns
        assert abs((review.end_ns - review.start_ns) / 1e9 - waited_s) < 0.002  # the span is the wait

        shown = cli(home, "trace", cid[:10])
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[0].startswith(f"trace {cid}  agentd.run triage  review, approve by "
                                                       f"{getpass.getuser()}")
        assert "in_progress" not in shown.stdout and "└─ agentd.review approve" in shown.stdout

        health = proc.health()["traces"]
        assert health["state"] == "ok" and health["spans_exported"] == len(collector.spans())
        assert health["open_runs"] == 0 and health["in_review"] == 0
        before = set(collector.counts())

        assert proc.stop(timeout=30) == 0
        daemon(**_env(collector.endpoint))
        drop(home, 1, prefix="probe")
        probe = wait_until(lambda: sidecar_for(home, "probe-0.txt"), timeout=30, message="the probe run")
        wait_until(lambda: len(collector.traces().get(probe["correlation_id"], [])) == SPANS_PER_TRIAGE,
                   timeout=30, message="the probe's spans after the restart")
    counts: Counter[tuple[str, str]] = collector.counts()
    assert max(counts.values()) == 1, [key for key, n in counts.items() if n > 1]  # nothing sent twice
    assert before <= set(counts) and len(collector.roots()) == 3 and len(_reviews(collector)) == 1
