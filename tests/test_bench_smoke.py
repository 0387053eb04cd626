"""The bench scripts (bench/) at tiny sizes: they still run, clean up, and print sane figures.

Timings are never asserted here (the machine may be busy); `make bench` is where they count.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import run_all


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    """Every bench once with --quick sizes (about 20 s in all)."""
    return run_all.run_benches(quick=True)


def figures(results: dict[str, Any], name: str) -> Any:
    result = results[name]
    assert not (isinstance(result, dict) and "error" in result), f"bench {name} failed: {result}"
    return result


def test_throughput_bench_archives_every_file_for_agentd_and_the_baseline(quick: dict[str, Any]) -> None:
    r = figures(quick, "throughput")
    assert r["baseline"]["archived"] == r["files"]
    for run in (r["agentd"], r["agentd_fsync_off"]):
        assert run["archive"] + run["failed"] + run["review"] == r["files"]
        assert run["archive"] == r["files"]  # mixed documents all triage cleanly offline
        assert run["files_per_s"] > 0 and run["cpu_ms_per_file"] > 0
    assert r["baseline"]["files_per_s"] > 0 and r["baseline"]["cpu_ms_per_file"] >= 0 and r["ratio"] > 0


def test_latency_bench_reports_ordered_percentiles_for_both_drop_modes(quick: dict[str, Any]) -> None:
    runs = figures(quick, "latency")
    assert [run["mode"] for run in runs] == ["write", "mv"]
    for run in runs:
        assert run["archive"] == run["files"] > 0
        assert 0 < run["p50_s"] <= run["p95_s"] <= run["p99_s"] <= run["max_s"]


def test_concurrency_bench_makes_one_model_call_per_file_at_each_level(quick: dict[str, Any]) -> None:
    r = figures(quick, "concurrency")
    assert [level["concurrency"] for level in r["levels"]] == [1, 4]
    for level in r["levels"]:
        assert level["archive"] == level["files"]
        assert level["calls"] == level["files"]
        assert level["ideal_s"] > 0 and level["efficiency"] > 0
    assert r["max_in_flight_seen"] >= 1


def test_backlog_bench_drains_everything_and_reads_peak_rss(quick: dict[str, Any]) -> None:
    r = figures(quick, "backlog")
    assert r["archive"] == r["files"]
    assert r["first_result_s"] > 0 and r["drain_files_per_s"] > 0
    assert r["peak_rss_mib"] > 10


def test_idle_bench_reads_rss_and_cpu_from_proc(quick: dict[str, Any]) -> None:
    r = figures(quick, "idle")
    assert r["rss_mib"] > 10 and r["rss_max_mib"] >= r["rss_mib"]
    assert r["cpu_percent"] >= 0 and r["window_s"] > 0


def test_startup_bench_sees_ready_and_health(quick: dict[str, Any]) -> None:
    r = figures(quick, "startup")
    assert r["runs"] == 1
    assert r["ready_s"] > 0 and r["health_s"] > 0


def test_traces_bench_exports_every_span_once_with_the_exporter_on(quick: dict[str, Any]) -> None:
    r = figures(quick, "traces")
    on = r["exporter_on"]
    assert on["spans"] == 5 * r["files"] and on["duplicates"] == 0
    assert r["exporter_off"]["files_per_s"] > 0 and on["files_per_s"] > 0 and r["ratio"] > 0


def test_loop_lag_bench_runs_inline_and_isolated_and_reads_the_gauge(quick: dict[str, Any]) -> None:
    r = figures(quick, "loop_lag")
    for run in (r["inline"], r["isolated"]):
        assert run["archive"] + run["failed"] + run["review"] == run["files"] == r["ordinary"] + 2
        assert run["health_polls"] > 0 and run["health_worst_ms"] >= run["health_p99_ms"] >= run["health_p50_ms"] > 0
    assert r["inline"]["loop_lag_gauge_ms"] is None  # the baseline predates the gauge
    assert r["isolated"]["loop_lag_gauge_ms"] >= 0 and r["isolated"]["parsers"] >= 1


def test_startup_audit_bench_recovers_with_a_history_and_without(quick: dict[str, Any]) -> None:
    r = figures(quick, "startup_audit")
    assert r["history_files"] >= 1 and r["history_lines"] > 1000
    assert r["ready_empty_s"] > 0 and r["ready_history_s"] > 0 and r["read_whole_history_s"] > 0


def test_the_table_has_every_measurement_and_keeps_hand_written_notes(quick: dict[str, Any], tmp_path: Path) -> None:
    # Given a benchmarks page with notes under the marker
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"old table\n{run_all.NOTES_MARKER}\nwhat the profile showed\n")
    # When the table is regenerated from the quick results
    text = run_all.render(quick, True, run_all.machine(), ("0 0 0", "0 0 0"))
    run_all.write_doc(doc, text)
    # Then each measurement has a row, the machine is named, and the notes survive
    written = doc.read_text()
    rows = [line for line in written.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert {row.split(" | ")[0].strip("| ") for row in rows} == set(run_all.NUMBER.values())
    assert "failed:" not in written and " cores " in written
    assert "old table" not in written
    assert written.endswith(f"{run_all.NOTES_MARKER}\nwhat the profile showed\n")


def test_offline_triage_bench_times_both_rule_sets_on_the_golden_set(quick: dict[str, Any]) -> None:
    r = figures(quick, "offline_triage")
    assert r["documents"] >= 20 and r["pages"] >= r["documents"]
    for rules in (r["new"], r["old"]):
        assert 0 < rules["ms_per_page"] <= rules["slowest_doc_ms_per_page"]
        assert {"type", "total", "date", "issuer"} <= set(rules)
    assert r["new"]["total"] != r["old"]["total"]  # the new rules find totals the old ones did not


def test_health_latency_bench_counts_the_archive_and_orders_its_percentiles(quick: dict[str, Any]) -> None:
    r = figures(quick, "health_latency")
    assert r["empty"]["archived_files"] == r["empty"]["archive_count_on_health"] == 0
    assert r["full"]["archive_count_on_health"] == r["full"]["archived_files"] > 0
    for home in (r["empty"], r["full"]):
        assert home["requests"] > 0 and 0 < home["p50_ms"] <= home["p99_ms"] <= home["max_ms"]
