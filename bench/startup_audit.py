"""Bench 7, start-up with a long audit history: exec to READY=1 with 1 GiB of audit files vs none.

Start-up is measured in the two cases that used to re-read every rotated file: the first start
of a UTC day (the saved spend is from yesterday; the history ends a minute before midnight) and
a claim left in processing/ by a crash, so the budget and the recovery both ask the audit log
for what they need. The history is generated straight into rotated files (a valid chain,
64 MiB each, over the 30 days before); the anchor is created over it. Also
reported: how long reading the whole history takes (what start-up did before it read only the
files it needs). The files are in the page cache when timed (the bench does not drop caches).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agentd.audit import iter_records
from agentd.audit.anchor import AnchorStore
from agentd.audit.chain import GENESIS, Entry, iso_of
from agentd.spool.layout import claim_name, new_correlation_id
from bench.common import Agentd, bench_main, median, print_figures, temp_home

FULL_BYTES, QUICK_BYTES = 1 << 30, 8 << 20
FILE_BYTES = 64 << 20  # AGENTD_AUDIT_MAX_BYTES's default
FULL_RUNS, QUICK_RUNS = 3, 1
DAYS = 30


def _line(seq: int, prev: str, ts: str) -> tuple[bytes, str]:
    """One llm_call line in canonical form (keys sorted, no spaces), with its hash."""
    body = (f'{{"correlation_id":"{seq:032x}","cost_usd":0.000123,"event":"llm_call","latency_ms":812.5,'
            f'"model":"gpt-4o-mini","prev":"{prev}","provider":"openai","run_cost_usd":0.000246,"seq":{seq},'
            f'"status":"ok","tokens_in":1234,"tokens_out":256,"ts":"{ts}","workflow":"triage"}}')
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n'.encode(), digest


def write_history(logs_dir: Path, total_bytes: int, end_s: float) -> Entry:
    """Rotated files of `total_bytes` in all, lines spread evenly over the DAYS before `end_s`."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    seq, prev, written = 0, GENESIS, 0
    lines_total = total_bytes // len(_line(1, GENESIS, iso_of(end_s))[0])
    step_s = DAYS * 86400 / max(1, lines_total)
    start_s = end_s - DAYS * 86400
    while written < total_bytes:
        chunk, size, first = [], 0, seq + 1
        ts = ""
        while size < min(FILE_BYTES, total_bytes - written) or not chunk:
            seq += 1
            if seq % 512 == 1 or not ts:
                ts = iso_of(start_s + seq * step_s)
            data, prev = _line(seq, prev, ts)
            chunk.append(data)
            size += len(data)
        (logs_dir / f"audit-{first:012d}.jsonl").write_bytes(b"".join(chunk))
        written += size
    return Entry(seq, prev)


def prepare(home: Path, total_bytes: int) -> dict[str, Any]:
    """A state root as a crash on the first day after `total_bytes` of history leaves it."""
    now = time.time()
    logs = home / "logs"
    began = time.monotonic()
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    head = write_history(logs, total_bytes, midnight - 60) if total_bytes else Entry(0, GENESIS)
    cid = new_correlation_id(now=now - 60)
    data, digest = _claimed_line(head, cid, now - 60)
    (logs / "audit.jsonl").parent.mkdir(parents=True, exist_ok=True)
    (logs / "audit.jsonl").write_bytes(data)
    AnchorStore(logs).create(Entry(head.seq + 1, digest))
    (home / "processing").mkdir(exist_ok=True)
    (home / "processing" / claim_name(cid, "triage")).write_text("Invoice 7: amount due 12.00 EUR")
    (home / "state").mkdir(exist_ok=True)
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    (home / "state" / "spend.json").write_text(json.dumps({"day": yesterday, "spent_usd": "1.5", "audit_seq": 0}))
    files = sorted(logs.glob("audit-*.jsonl"))
    return {"history_mib": round(sum(p.stat().st_size for p in files) / (1 << 20), 1), "files": len(files),
            "lines": head.seq, "generate_s": round(time.monotonic() - began, 1)}


def _claimed_line(head: Entry, cid: str, at_s: float) -> tuple[bytes, str]:
    record = {"correlation_id": cid, "event": "claimed", "kind": "file", "original_name": "left-by-crash.txt",
              "prev": head.hash, "seq": head.seq + 1, "size": 31, "ts": iso_of(at_s), "workflow": "triage"}
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n'.encode(), digest


def one_start(total_bytes: int, read_all: bool = False) -> tuple[float, dict[str, Any]]:
    with temp_home("startup-audit") as home:
        info = prepare(home, total_bytes)
        with Agentd(home, notify=True) as daemon:
            daemon.start()
            ready_s = daemon.wait_ready(timeout_s=120)
            daemon.stop()
        recovered = sorted(p.name for p in (home / "archive").iterdir()) if (home / "archive").exists() else []
        if "left-by-crash.txt" not in recovered:
            raise RuntimeError(f"the claim left in processing/ was not recovered: {recovered}")
        if read_all:
            began = time.monotonic()
            info["read_all_lines"] = sum(1 for _ in iter_records(home / "logs"))
            info["read_all_s"] = round(time.monotonic() - began, 2)
    return ready_s, info


def run(quick: bool = False, runs: int | None = None) -> dict[str, Any]:
    count = runs or (QUICK_RUNS if quick else FULL_RUNS)
    size = QUICK_BYTES if quick else FULL_BYTES
    empty = [one_start(0)[0] for _ in range(count)]
    full = [one_start(size, read_all=i == 0) for i in range(count)]
    info = full[0][1]
    result = {"runs": count, "history_mib": info["history_mib"], "history_files": info["files"],
              "history_lines": info["lines"], "generate_s": info["generate_s"],
              "ready_empty_s": round(median(empty), 3), "ready_history_s": round(median([f[0] for f in full]), 3),
              "ready_history_max_s": round(max(f[0] for f in full), 3),
              "read_whole_history_s": info.get("read_all_s")}
    result["extra_s"] = round(result["ready_history_s"] - result["ready_empty_s"], 3)
    print_figures("startup with audit history", result)
    return result


def main() -> None:
    bench_main(__doc__, run, f"{QUICK_BYTES >> 20} MiB of history and {QUICK_RUNS} start", runs={"type": int})


if __name__ == "__main__":
    main()
