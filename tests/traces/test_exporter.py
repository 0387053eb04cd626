"""The exporter in-process against a real OTLP/HTTP receiver: one trace per file, the cursor moved
only after an acknowledgement, retries with a driven clock, a refused batch, rotation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentd.audit import AuditLog
from agentd.traces.cursor import FILE as CURSOR_FILE
from agentd.traces.cursor import Cursor
from agentd.traces.exporter import TraceExporter
from agentd.traces.tail import AuditTail
from tests.helpers import audit_events, sidecars
from tests.traces.collector import Collector
from tests.traces.support import SPANS_PER_TRIAGE, burst, drop, make_config

SECRET = "Bearer otlp-secret-7f3a9c"


async def test_each_file_becomes_one_trace_whose_id_is_its_correlation_id(home: Path) -> None:
    drop(home, 3)
    async with Collector() as collector:
        await burst(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                                OTEL_EXPORTER_OTLP_HEADERS=f"authorization={SECRET.replace(' ', '%20')}",
                                OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test"))
    cids = {meta["correlation_id"] for meta in sidecars(home)}
    traces = collector.traces()
    assert set(traces) == cids and len(cids) == 3
    for cid, spans in traces.items():
        assert len(spans) == SPANS_PER_TRIAGE and all(s.attributes["agentd.correlation_id"] == cid for s in spans)
        [root] = [s for s in spans if not s.parent_span_id]
        assert root.name == "agentd.run triage" and root.attributes["agentd.outcome"] == "archived"
        steps = sorted((s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns)
        assert [s.name for s in steps] == ["agentd.step extract_text", "agentd.step classify", "agentd.step route"]
        [chat] = [s for s in spans if s.parent_span_id == steps[1].span_id]
        assert chat.name == "chat offline-rules" and chat.attributes["gen_ai.provider.name"] == "agentd.offline"
        assert root.resource["service.name"] == "agentd" and root.resource["deployment.environment"] == "test"
        assert root.schema_url.startswith("https://opentelemetry.io/schemas/1.")
    assert all(h.get("Authorization") == SECRET for h in collector.headers_seen)
    cursor = Cursor.load(home / "state")
    assert cursor.exported_seq >= max(e["seq"] for e in audit_events(home, "outcome"))


def test_without_an_endpoint_nothing_is_started_or_imported(home: Path) -> None:
    drop(home, 1)
    script = ("import asyncio, sys; from agentd import config; from agentd.lifecycle.daemon import Daemon; "
              f"c = config.load(environ={{'AGENTD_HOME': {str(home)!r}, 'AGENTD_SETTLE_S': '0'}}); "
              "asyncio.run(Daemon(c, burst=True).serve()); "
              "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'agentd.traces.exporter'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert len(sidecars(home, "archive")) == 1 and not (home / "state" / CURSOR_FILE).exists()


async def test_a_collector_that_fails_is_retried_with_backoff_and_the_cursor_waits_for_the_ack(home: Path) -> None:
    drop(home, 2)
    await burst(make_config(home))  # the audit log as the pipeline wrote it, nothing exported yet
    async with Collector(status=503) as collector:
        config = make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, AGENTD_OTLP_RETRY_MAX_S="4")
        delays: list[float] = []

        async def driven_sleep(delay_s: float) -> None:
            delays.append(delay_s)
            assert not (home / "state" / CURSOR_FILE).exists()  # nothing acknowledged, nothing moved
            if len(delays) == 6:
                collector.status = 200

        exporter = TraceExporter(config, sleep=driven_sleep, rng=lambda: 1.0)
        await exporter.drain()
        await exporter.close()
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # doubling up to AGENTD_OTLP_RETRY_MAX_S
    assert len(collector.received) == 7 and len(collector.acked) == 1
    assert sorted(collector.counts().values()) == [1] * 2 * SPANS_PER_TRIAGE
    assert exporter.export_errors == 6 and exporter.spans_sent == 2 * SPANS_PER_TRIAGE
    saved = json.loads((home / "state" / CURSOR_FILE).read_text())
    assert saved["exported_seq"] >= max(e["seq"] for e in audit_events(home, "outcome"))


def test_the_backoff_is_jittered_between_half_and_all_of_its_ceiling(home: Path) -> None:
    config = make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", AGENTD_OTLP_RETRY_MAX_S="8")
    low = TraceExporter(config, rng=lambda: 0.0)
    high = TraceExporter(config, rng=lambda: 0.999)
    assert [low.backoff_s(n) for n in (1, 2, 3, 4, 5, 9)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.backoff_s(n), 2) for n in (1, 4, 5, 9)] == [0.5, 4.0, 8.0, 8.0]


async def test_a_batch_refused_for_good_is_counted_as_dropped_and_not_sent_again(home: Path) -> None:
    drop(home, 1)
    await burst(make_config(home))
    async with Collector(status=400) as collector:
        exporter = TraceExporter(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint))
        await exporter.drain()
        await exporter.close()
    assert len(collector.received) == 1 and exporter.spans_dropped == SPANS_PER_TRIAGE
    assert Cursor.load(home / "state").exported_seq >= audit_events(home, "outcome")[-1]["seq"]


def test_the_tail_reads_every_line_once_in_order_across_rotations(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "logs", max_bytes=4096).open()
    tail, seen = AuditTail(tmp_path / "logs"), []
    for index in range(300):
        audit.append("probe", n=index, padding="x" * 40)
        if index % 37 == 0:
            seen += [r["seq"] for r in tail.read(50)]
    while batch := tail.read(50):
        seen += [r["seq"] for r in batch]
    tail.close()
    audit.close()
    assert len(list((tmp_path / "logs").glob("audit-*.jsonl"))) >= 5  # it did rotate under the tail
    assert seen == list(range(1, 301))


async def test_message_content_is_on_model_spans_only_when_asked_and_then_redacted(home: Path) -> None:
    secret = "sk-live-0a1b2c3d4e5f"
    (home / "incoming").mkdir()
    (home / "incoming" / "leak.txt").write_text(f"Invoice 7, amount due $40. Our key is {secret}, please pay.\n")
    async with Collector() as collector:
        await burst(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, ADMIN_TOKEN=secret,
                                OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true"))
        drop(home, 1, prefix="quiet")
        await burst(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint))
    chats = {s.trace_id: s for s in collector.spans() if s.name.startswith("chat ")}
    by_name = {m["original_name"]: m["correlation_id"] for m in sidecars(home)}
    captured, quiet = chats[by_name["leak.txt"]], chats[by_name["quiet-0.txt"]]
    messages = json.loads(captured.attributes["gen_ai.input.messages"])
    assert "Invoice 7, amount due $40. Our key is [REDACTED], please pay." in messages[0]["content"]
    assert secret not in json.dumps(captured.attributes) and secret not in (home / "logs" / "audit.jsonl").read_text()
    assert "gen_ai.output.messages" in captured.attributes and "gen_ai.system_instructions" in captured.attributes
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(quiet.attributes)


async def test_a_stop_that_arrives_while_the_exporter_reads_still_gets_a_last_round(home: Path) -> None:
    drop(home, 1)
    await burst(make_config(home))
    async with Collector() as collector:
        exporter = TraceExporter(make_config(home, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint))
        real_read, calls = exporter.tail.read, []

        def read_then_stop(max_records: int) -> list[dict[str, Any]]:
            calls.append(max_records)
            if len(calls) == 1:  # the run's lines were not there yet when this read looked
                exporter._stopping.set()  # ... and stop() came meanwhile (the daemon's shutdown)
                return []
            return real_read(max_records)

        exporter.tail.read = read_then_stop  # type: ignore[method-assign]
        await exporter.run()
        exporter.tail.close()
    assert len(calls) >= 2 and len(collector.spans()) == SPANS_PER_TRIAGE


def test_the_tail_skips_lines_it_cannot_read_and_reads_on(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "logs").open()
    audit.append("probe", n=1)
    audit.close()
    with open(tmp_path / "logs" / "audit.jsonl", "ab") as fh:  # what a tamperer or a bug might leave
        fh.write(b'not json\n[1, 2]\n{"seq": "x", "event": "probe"}\n{"seq": null}\n"text"\n')
    audit = AuditLog(tmp_path / "logs").open()
    audit.append("probe", n=2)
    audit.close()
    tail = AuditTail(tmp_path / "logs")
    seen = [(r["seq"], r.get("n")) for r in tail.read(50)]
    tail.close()
    assert seen[0] == (1, 1) and seen[-1][1] == 2  # the line after them is read (and one the reopen wrote)
    assert [seq for seq, _ in seen] == list(range(1, len(seen) + 1))
