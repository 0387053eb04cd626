"""The real daemon exporting to a real OTLP/HTTP receiver: the span tree of real model calls,
log lines that join it, a collector outage, a kill -9 mid-export, a run resumed after a crash."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from agentd.traces import ids
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, cli, free_port, sidecars, wait_until
from tests.traces.collector import Collector, Span
from tests.tools.webhook import Webhook
from tests.traces.support import SPANS_PER_TRIAGE, drop

HEADER_SECRET = "otlp-header-c0ffee42"
NOTIFY_WORKFLOW = str(Path(__file__).parent.parent / "tools" / "notify_workflow.py")
CLIENT = 3  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_CLIENT


def _env(llm: FakeLLM, endpoint: str, **extra: Any) -> dict[str, str]:
    return {**llm.env(), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "AGENTD_OTLP_RETRY_MAX_S": "0.5", "AGENTD_SETTLE_S": "0.05", **extra}


def _metric(proc: AgentdProcess, name: str) -> float:
    status, body = proc.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _tree(spans: list[Span]) -> tuple[Span, list[Span], dict[str, list[Span]]]:
    [root] = [s for s in spans if not s.parent_span_id]
    steps = sorted((s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns)
    below = {step.span_id: [s for s in spans if s.parent_span_id == step.span_id] for step in steps}
    return root, steps, below


def _assert_exactly_once(collector: Collector, runs: int) -> None:
    counts = collector.counts()
    assert max(counts.values()) == 1, [key for key, n in counts.items() if n > 1]
    assert len(counts) == runs * SPANS_PER_TRIAGE and len(collector.roots()) == runs


def test_each_file_is_one_trace_of_steps_and_model_calls_and_its_log_lines_join_it(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server()
    with Collector() as collector:
        proc = daemon(**_env(llm, collector.endpoint))
        drop(home, 2)
        wait_until(lambda: len(collector.roots()) == 2, timeout=30, message="two traces")
        sent = _metric(proc, "agentd_trace_spans_sent_total")
    assert sent == 2 * SPANS_PER_TRIAGE
    logs = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    for meta in sidecars(home):
        cid = meta["correlation_id"]
        root, steps, below = _tree(collector.traces()[cid])
        assert root.trace_id == cid and root.name == "agentd.run triage"
        assert root.attributes["agentd.file"] == meta["original_name"]
        assert root.attributes["agentd.outcome"] == "archived" and root.attributes["agentd.cost_usd"] == meta["cost_usd"]
        assert [s.name for s in steps] == ["agentd.step extract_text", "agentd.step classify", "agentd.step route"]
        [chat] = below[steps[1].span_id]
        assert chat.name == "chat fake-model" and chat.kind == CLIENT
        assert chat.attributes.items() >= {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "fake-model",
            "gen_ai.response.model": "fake-model", "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 50, "gen_ai.request.max_tokens": 1024,
            "agentd.cost_usd": 0.0002, "agentd.price_source": "LLM_PRICE_*", "agentd.attempt": 1,
            "agentd.correlation_id": cid}.items()
        assert steps[1].start_ns <= chat.start_ns <= chat.end_ns <= steps[1].end_ns
        run_logs = [line for line in logs if line.get("trace_id") == cid]
        assert {"llm_call", "run_finished"} <= {line["event"] for line in run_logs}
        [call_log] = [line for line in run_logs if line["event"] == "llm_call"]
        assert call_log["span_id"] == steps[1].span_id  # the log line names its step's span


def test_a_collector_down_while_files_are_processed_gets_every_span_once_when_it_is_back(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    llm, port = llm_server(), free_port()
    proc = daemon(**_env(llm, f"http://127.0.0.1:{port}", OTEL_EXPORTER_OTLP_HEADERS=f"x-api={HEADER_SECRET}"))
    drop(home, 4)
    wait_until(lambda: len(sidecars(home, "archive")) == 4, timeout=30, message="four files archived")
    wait_until(lambda: _metric(proc, "agentd_trace_export_errors_total") >= 3, timeout=30, message="failed exports")
    assert _metric(proc, "agentd_trace_export_lag") > 0 and _metric(proc, "agentd_trace_spans_sent_total") == 0
    with Collector(port=port) as collector:
        wait_until(lambda: len(collector.roots()) == 4, timeout=30, message="the backlog exported")
        drop(home, 1, prefix="probe")  # a later run arriving proves the exporter is past the backlog
        wait_until(lambda: len(collector.roots()) == 5, timeout=30, message="the probe's trace")
        wait_until(lambda: _metric(proc, "agentd_trace_export_lag") == 0, timeout=30, message="no lag")
    _assert_exactly_once(collector, runs=5)
    assert all(h.get("x-api") == HEADER_SECRET for h in collector.headers_seen)
    assert "trace_export_failed" in proc.output() and HEADER_SECRET not in proc.output()
    assert {s.trace_id for s in collector.roots()} == {m["correlation_id"] for m in sidecars(home)}


def test_a_kill_9_mid_export_resends_only_the_unacknowledged_batch(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server()
    with Collector() as collector:
        env = _env(llm, collector.endpoint, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=SPANS_PER_TRIAGE,
                   OTEL_EXPORTER_OTLP_TIMEOUT="60000")
        proc = daemon(**env)
        drop(home, 1, prefix="first")
        wait_until(lambda: len(collector.roots()) == 1, timeout=30, message="the first batch acknowledged")
        collector.hold = True
        drop(home, 2, prefix="second")
        wait_until(lambda: len(sidecars(home)) == 3 and collector.held() == 1, timeout=30, message="a held batch")
        proc.kill()  # SIGKILL while the collector holds a batch unanswered
        collector.release()
        held = {span.key for span in collector.received[-1]}
        daemon(**env)
        drop(home, 1, prefix="probe")
        wait_until(lambda: len(collector.roots()) == 4, timeout=30, message="all four traces")
    _assert_exactly_once(collector, runs=4)
    assert held <= set(collector.counts())  # the batch cut off by the kill was sent again, once


def test_a_run_resumed_after_a_crash_is_one_trace(home: Path, daemon: Callable[..., AgentdProcess],
                                                  llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server(script=["hang"], hang_s=60)
    with Collector() as collector:
        env = _env(llm, collector.endpoint)
        proc = daemon(**env)
        drop(home, 1)
        wait_until(lambda: llm.count() == 1, timeout=30, message="the model call in flight")
        proc.kill()  # mid-classify: the claim is in processing/, the model has not answered
        daemon(**env)
        wait_until(lambda: len(sidecars(home)) == 1, timeout=30, message="the resumed run finished")
        drop(home, 1, prefix="probe")
        wait_until(lambda: len(collector.roots()) == 2, timeout=30, message="the probe's trace")
    [meta] = [m for m in sidecars(home) if m["original_name"] == "doc-0.txt"]
    spans = collector.traces()[meta["correlation_id"]]
    root, steps, below = _tree(spans)
    assert root.attributes["agentd.resumes"] == 1 and ("agentd.resumed", {}) in root.events
    # extract_text's result came back from the journal; the classify the kill cut holds the call that was out
    assert [(s.name, s.attributes["agentd.step.status"]) for s in steps] == [
        ("agentd.step extract_text", "ok"), ("agentd.step classify", "interrupted"), ("agentd.step classify", "ok"),
        ("agentd.step route", "ok")]
    [cut_call] = below[steps[1].span_id]
    assert cut_call.name == "chat fake-model" and cut_call.attributes["error.type"] == "unanswered"
    [call] = below[steps[2].span_id]
    assert call.name == "chat fake-model" and "error.type" not in call.attributes
    assert max(collector.counts().values()) == 1


def test_agentd_trace_prints_the_timeline_from_the_audit_log(home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server()
    drop(home, 1)
    assert cli(home, "run", "--burst", **llm.env()).returncode == 0
    [meta] = sidecars(home)
    cid = meta["correlation_id"]

    shown = cli(home, "trace", cid[:8])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"trace {cid}  agentd.run triage  archived")
    tree = [line.split("ms  ", 2)[-1] for line in lines[2:]]
    assert [t.split("  [")[0] for t in tree] == ["agentd.run triage", "├─ agentd.step extract_text",
                                                  "├─ agentd.step classify", "│  └─ chat fake-model",
                                                  "└─ agentd.step route"]
    assert "100 in / 50 out tokens  $0.000200" in tree[3]

    as_json = cli(home, "trace", cid, "--json")
    root = json.loads(as_json.stdout)["root"]
    assert root["span_id"] == ids.hex_span_id(ids.root_span_id(cid)) and root["status"] == "archived"
    assert [c["name"] for c in root["children"]] == ["agentd.step extract_text", "agentd.step classify",
                                                     "agentd.step route"]
    assert cli(home, "trace", "abc").returncode == 2
    missing = cli(home, "trace", "ffffffffff")
    assert missing.returncode == 1 and "no run with id ffffffffff" in missing.stderr


def test_a_tool_call_is_an_execute_tool_span_under_its_step(home: Path, daemon: Callable[..., AgentdProcess],
                                                             llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server()
    (home / "data").mkdir(exist_ok=True)
    (home / "data" / "gate").write_text("go")  # the test workflow's step returns at once
    with Webhook() as hook, Collector() as collector:
        daemon(**_env(llm, collector.endpoint, AGENTD_WORKFLOWS=NOTIFY_WORKFLOW, ALLOWED_SERVICES="notification",
                      NOTIFY_WEBHOOK_URL=hook.url))
        (home / "incoming" / "notify").mkdir(parents=True, exist_ok=True)
        (home / "incoming" / "notify" / "alert.txt").write_text("the boiler is leaking\n")
        wait_until(lambda: len(collector.roots()) == 1, timeout=30, message="the notify run's trace")
    [meta] = sidecars(home)
    root, [step], below = _tree(collector.traces()[meta["correlation_id"]])
    assert root.name == "agentd.run notify" and step.name == "agentd.step notify_then_wait"
    [tool] = below[step.span_id]
    assert tool.name == "execute_tool notification" and len(hook.deliveries) == 1
    assert tool.attributes.items() >= {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "notification",
                                       "agentd.tool.status": "ok", "agentd.tool.allowed": True,
                                       "agentd.idempotency_key": f"{meta['correlation_id']}:notify_then_wait:1"}.items()
    assert "error.type" not in tool.attributes and step.start_ns <= tool.start_ns <= tool.end_ns <= step.end_ns


def test_sigterm_with_the_collector_down_exits_promptly_and_the_next_start_sends_the_rest(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    llm, port = llm_server(), free_port()
    env = _env(llm, f"http://127.0.0.1:{port}")
    proc = daemon(**env)
    drop(home, 2)
    wait_until(lambda: len(sidecars(home, "archive")) == 2, timeout=30, message="two files archived")
    wait_until(lambda: _metric(proc, "agentd_trace_export_errors_total") >= 1, timeout=30, message="a failed export")
    assert proc.stop(timeout=15) == 0  # the exporter gives up its retries at once on SIGTERM
    assert "trace_export_stopped" in proc.output()
    with Collector(port=port) as collector:
        daemon(**env)
        wait_until(lambda: len(collector.roots()) == 2, timeout=30, message="both traces after the restart")
    _assert_exactly_once(collector, runs=2)
