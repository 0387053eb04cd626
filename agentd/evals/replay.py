"""`agentd replay CID`: a finished run's file again through the current workflow code, served
the model answers recorded in its journal (logs/journals/<cid>.journal.jsonl). Nothing is sent
unless --live; nothing outside a scratch folder is written except one `replay` audit line."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentd.audit import open_for
from agentd.config import Config
from agentd.evals import harness
from agentd.evals.diff import changes
from agentd.evals.providers import ReplayProvider, recorded_answers
from agentd.llm.base import Provider
from agentd.audit.redact import Redactor
from agentd.spool.store import KEPT_JOURNALS, SIDECAR, iter_sidecars


class ReplayError(Exception):
    """The run cannot be replayed (unknown id, its file is gone)."""


class WorkflowFileError(ReplayError):
    """--workflow-file cannot be loaded or does not define the run's workflow (a usage error)."""


def check_workflow_file(workflow: str, workflow_file: str) -> None:
    """Raise WorkflowFileError unless `workflow_file` itself defines `workflow` (a built-in it only
    imports does not count: replaying that would silently run the unchanged workflow)."""
    from agentd import workflows
    try:
        found = workflows.load((workflow_file,))
    except (ImportError, SyntaxError, ValueError, OSError) as exc:
        raise WorkflowFileError(f"cannot load {workflow_file}: {exc.__class__.__name__}: {exc}") from None
    builtins = {w.name: w for w in workflows.builtin()}
    defined = sorted(name for name, w in found.items() if builtins.get(name) is not w)
    if workflow not in defined:
        raise WorkflowFileError(f"the run's workflow {workflow!r} is not defined in {workflow_file} "
                                f"(it defines: {', '.join(defined) or 'none'})")


@dataclass
class Original:
    sidecar: Path
    meta: dict[str, Any]

    @property
    def cid(self) -> str:
        return str(self.meta.get("correlation_id", ""))

    @property
    def data(self) -> Path:
        return self.sidecar.with_name(self.sidecar.name[: -len(SIDECAR)])


def find_run(config: Config, ident: str) -> Original:
    """The finished run with correlation id `ident` (or a unique prefix of 6+ characters)."""
    ident = ident.strip().lower()
    if len(ident) < 6:
        raise ReplayError("give the correlation id or at least 6 characters of it")
    found = [Original(p, m) for p, m in iter_sidecars(config.home)
             if str(m.get("correlation_id", "")).startswith(ident)]
    if not found:
        raise ReplayError(f"no finished run with id {ident} in archive/, failed/ or review/")
    if len({o.cid for o in found}) > 1:
        raise ReplayError(f"id {ident} is ambiguous: {len(found)} runs")
    original = found[0]
    if not original.data.is_file():
        raise ReplayError(f"the run's file {original.data} is gone")
    return original


def journal_of(config: Config, cid: str) -> list[dict[str, Any]]:
    return harness.read_journal(config.home / KEPT_JOURNALS / f"{cid}.journal.jsonl")


def provider_for(config: Config, original: Original, live: bool) -> Provider:
    """Recorded answers; a run of the offline provider is simply run offline again (free, local)."""
    journal = journal_of(config, original.cid)
    used = {m.get("provider") for m in original.meta.get("models", []) if isinstance(m, dict)}
    if not journal and used <= {"offline"}:
        return harness.configured_provider(config.replace(llm_provider="offline", llm_model="offline-rules"))
    return ReplayProvider(recorded_answers(journal), live=harness.configured_provider(config) if live else None)


async def replay(config: Config, ident: str, workflow_file: str | None = None, live: bool = False) -> dict[str, Any]:
    original = find_run(config, ident)
    provider = provider_for(config, original, live)
    workflow = str(original.meta.get("workflow", "triage"))
    if workflow_file:
        check_workflow_file(workflow, workflow_file)
    files = (workflow_file,) if workflow_file else ()
    name = str(original.meta.get("original_name") or original.data.name)
    # no tool runs for real in a replay (a notification would go out again): ALLOWED_SERVICES is empty
    run = await harness.run_case(config, name, original.data, workflow, provider, caps=live, tools=False,
                                 workflow_files=files)
    misses = provider.misses if isinstance(provider, ReplayProvider) else []
    report = {
        "correlation_id": original.cid, "workflow": workflow, "file": str(original.data), "live": live,
        "outcome": {"before": original.meta.get("outcome"), "after": run.outcome},
        "reason": {"before": original.meta.get("reason"), "after": run.meta.get("reason")},
        "changes": changes(original.meta.get("result"), run.result),
        "served": provider.served if isinstance(provider, ReplayProvider) else 0,
        "missing": [{"key": m.key, "request_hash": m.request_hash, "asked_live": m.asked_live} for m in misses],
        "cost_usd": float(run.cost_usd), "original_cost_usd": float(original.meta.get("cost_usd", 0)),
        "live_cost_usd": float(_live_cost(config, provider)),
        "tokens": run.meta.get("tokens", {"input": 0, "output": 0}), "llm_calls": run.meta.get("llm_calls", 0),
    }
    report["changed"] = bool(report["changes"]) or report["outcome"]["before"] != report["outcome"]["after"]
    _audit(config, report, workflow_file)
    return report


def _live_cost(config: Config, provider: Provider) -> Decimal:
    """What the calls that really went out (--live) cost; a served answer costs nothing now."""
    if not isinstance(provider, ReplayProvider):
        return Decimal(0)
    return sum((config.price(m).cost(i, o, c) for m, i, o, c in provider.live_calls), Decimal(0))


def _audit(config: Config, report: dict[str, Any], workflow_file: str | None) -> None:
    """The one line a replay leaves in the real state folder."""
    audit = open_for(config, Redactor(config.secrets))  # signs the anchor with AUDIT_HMAC_KEY
    try:
        audit.append("replay", correlation_id=report["correlation_id"], workflow=report["workflow"],
                     live=report["live"], workflow_file=workflow_file, changed=report["changed"],
                     changed_fields=[c["field"] for c in report["changes"]][:50],
                     missing=len(report["missing"]), served=report["served"],
                     outcome_after=report["outcome"]["after"], cost_usd=report["cost_usd"],
                     live_cost_usd=report["live_cost_usd"], tokens_in=report["tokens"].get("input", 0),
                     tokens_out=report["tokens"].get("output", 0))
        audit.flush_now()
    finally:
        audit.close()
