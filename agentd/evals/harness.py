"""Runs files through a workflow in-process: the daemon in burst mode on a scratch AGENTD_HOME,
with the provider the caller passes in. Nothing outside the scratch folder is written or moved."""
from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from agentd.config import Config
from agentd.llm.base import Provider
from agentd.spool.store import DEFAULT_WORKFLOW, KEPT_JOURNALS, SIDECAR

NO_CAP = Decimal(1_000_000)
T = TypeVar("T")


@dataclass
class CaseRun:
    """One file's run in the scratch home: its sidecar and the journal it left."""

    name: str
    meta: dict[str, Any]
    journal: list[dict[str, Any]]

    @property
    def outcome(self) -> str:
        return str(self.meta.get("outcome", "missing"))

    @property
    def result(self) -> Any:
        return self.meta.get("result")

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(str(self.meta.get("cost_usd", 0)))

    @property
    def latency_s(self) -> float:
        return float(self.meta.get("duration_ms", 0)) / 1000


def offline_rules(config: Config) -> dict[str, Any]:
    """The offline answers of the configured workflows (what the daemon's offline provider uses)."""
    from agentd.lifecycle.services import load_workflows
    from agentd.workflows import offline_rules as rules_of

    return rules_of(load_workflows(config))


def configured_provider(config: Config) -> Provider:
    """The provider the daemon would build for `config` (offline: with its workflows' rules)."""
    from agentd.llm.gateway import make_provider

    return make_provider(config, offline_rules(config))


def scratch_config(config: Config, home: Path, *, concurrency: int | None = None, caps: bool = False,
                   tools: bool = False, workflow_files: tuple[str, ...] = ()) -> Config:
    """The configuration for a scratch run: its own home, no dedupe, no HTTP, no fsync.

    `caps` keeps MAX_COST_PER_RUN and DAILY_BUDGET_USD (calls that cost money); otherwise the
    caps are lifted so a dry run or a replay is never refused. Without `tools`, ALLOWED_SERVICES
    is empty: no tool has a side effect from a scratch run.
    """
    # settle_s 0: the harness copied every input before the scratch daemon starts (they are complete)
    changes: dict[str, Any] = {"home": home, "dedupe": False, "fsync": False, "probe_interval_s": 0.0, "settle_s": 0.0,
                               "concurrency": concurrency or config.concurrency, "log_level": "warning",
                               "workflows": config.workflows + workflow_files}
    if not caps:
        changes.update(max_cost_per_run=NO_CAP, daily_budget_usd=Decimal(0))
    if not tools:
        changes.update(allowed_services=frozenset())
    return config.replace(**changes)


def make_home(config: Config, prefix: str) -> Path:
    """A temporary AGENTD_HOME with a copy of the real one's data/ (the party directory)."""
    home = Path(tempfile.mkdtemp(prefix=f"agentd-{prefix}-"))
    if config.data_dir.is_dir():
        shutil.copytree(config.data_dir, home / "data", symlinks=True)
    return home


def seed_spend(config: Config, home: Path) -> None:
    """Today's real spend, so a live run in the scratch home keeps within the daily budget."""
    spend = config.state_dir / "spend.json"
    if spend.is_file():
        (home / "state").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spend, home / "state" / "spend.json")


def drop(home: Path, workflow: str, files: list[tuple[str, Path]]) -> None:
    """Copy the inputs (name, source) into the scratch incoming/ folder of `workflow`."""
    folder = home / "incoming"
    if workflow != DEFAULT_WORKFLOW:
        folder = folder / workflow
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files:
        shutil.copyfile(source, folder / name)


async def run_case(config: Config, name: str, source: Path, workflow: str, provider: Provider,
                   *, caps: bool = False, tools: bool = False, workflow_files: tuple[str, ...] = ()) -> CaseRun:
    """Run one file through `workflow` in a scratch home of its own (removed afterwards)."""
    from agentd.lifecycle.daemon import Daemon

    home = make_home(config, "case")
    try:
        if caps:
            seed_spend(config, home)
        scratch = scratch_config(config, home, concurrency=1, caps=caps, tools=tools,
                                 workflow_files=workflow_files)
        drop(home, workflow, [(name, source)])
        await Daemon(scratch, burst=True, provider=provider).serve()
        runs = collect(home)
        return runs.get(name) or CaseRun(name, {"outcome": "missing", "reason": "not_finished"}, [])
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def run_cases(jobs: int, cases: list[Callable[[], Awaitable[T]]],
                    on_progress: Callable[[int], None] = lambda done: None) -> list[T]:
    """Run the cases `jobs` at a time; results in the cases' order."""
    gate = asyncio.Semaphore(max(1, jobs))
    done = 0

    async def one(case: Callable[[], Awaitable[T]]) -> T:
        nonlocal done
        async with gate:
            value = await case()
        done += 1
        on_progress(done)
        return value

    return list(await asyncio.gather(*(one(c) for c in cases)))


def collect(home: Path) -> dict[str, CaseRun]:
    """Every finished run in the scratch home, by the name its file was dropped with."""
    runs: dict[str, CaseRun] = {}
    for sub in ("archive", "failed", "review"):
        for path in sorted((home / sub).glob("*" + SIDECAR)) if (home / sub).is_dir() else []:
            meta = json.loads(path.read_text("utf-8", "surrogateescape"))
            cid = str(meta.get("correlation_id", ""))
            runs[str(meta.get("original_name"))] = CaseRun(str(meta.get("original_name")), meta,
                                                          read_journal(home / KEPT_JOURNALS / f"{cid}.journal.jsonl"))
    return runs


def read_journal(path: Path) -> list[dict[str, Any]]:
    """A kept journal's entries (torn lines skipped); empty when the run wrote none."""
    try:
        raw = path.read_text("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    entries = []
    for line in raw.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


class Progress:
    """`done/total` on stderr, redrawn in place; silent unless stderr is a terminal."""

    def __init__(self, total: int, label: str, stream: Any = None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(self.total, 1)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                          f"{time.monotonic() - self.started:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def json_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, default=str) + "\n"
