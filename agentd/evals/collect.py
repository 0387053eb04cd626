"""`agentd eval collect DIR --from review`: every approved review decision becomes an eval case.

For each archived run whose sidecar has a `review` block that approved it (the console's
{reviewer, decision, at, edits} or the CLI's {decision, by, at, ...}), the file is copied into
DIR, the reviewer's result (with their edits applied) written as `<name>.expected.json`, and
the run's recorded model answers as `<name>.answers.jsonl`, so `eval --replay` needs no network.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agentd.config import Config
from agentd.evals import harness
from agentd.spool.store import KEPT_JOURNALS, SIDECAR, iter_sidecars

APPROVED = {"approve", "approved", "accept", "accepted"}
# fields a model fills differently each time, or that say who answered: not a reviewer's verdict
VOLATILE = ("summary", "confidence", "provider", "model", "source_kind", "party_link")


def edits_of(review: dict[str, Any]) -> dict[str, Any]:
    """A review's edits as {field path: new value}, from a mapping or a list of changes."""
    edits = review.get("edits") or {}
    if isinstance(edits, dict):
        return {str(k): (v.get("after", v.get("value")) if isinstance(v, dict) and ("after" in v or "value" in v)
                         else v) for k, v in edits.items()}
    found = {}
    for item in edits if isinstance(edits, list) else []:
        if isinstance(item, dict) and (item.get("path") or item.get("field")):
            found[str(item.get("path") or item.get("field"))] = item.get("value", item.get("after", item.get("new")))
    return found


def set_path(value: Any, path: str, new: Any) -> Any:
    """`value` with the dotted `path` set to `new` (objects by key, lists by index)."""
    parts = path.split(".")
    node = value
    for part in parts[:-1]:
        child = _get(node, part)
        if not isinstance(child, (dict, list)):
            child = {}
            _put(node, part, child)
        node = child
    _put(node, parts[-1], new)
    return value


def _get(node: Any, part: str) -> Any:
    if isinstance(node, list) and part.isdigit():
        return node[int(part)] if int(part) < len(node) else None
    return node.get(part) if isinstance(node, dict) else None


def _put(node: Any, part: str, new: Any) -> None:
    if isinstance(node, list) and part.isdigit():
        node.extend([None] * (int(part) + 1 - len(node)))
        node[int(part)] = new
    elif isinstance(node, dict):
        node[part] = new


def expected_from(result: Any, edits: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    """The fields a case checks: every stable field of the reviewed result, lists as sets, text
    case-insensitively; every field the reviewer edited, exactly as they wrote it."""
    expected: dict[str, Any] = {}
    top = result if isinstance(result, dict) else {"": result}
    for key, value in top.items():
        if key in ignore:
            continue
        for path, leaf in (_leaves(value, key) if isinstance(value, dict) else {key: value}).items():
            if isinstance(leaf, list):
                expected[path] = {"value": leaf, "match": "set"}
            elif isinstance(leaf, str):
                expected[path] = {"value": leaf, "match": "casefold"}
            elif isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
                expected[path] = {"value": leaf, "match": "numeric", "tolerance": 0}
            else:
                expected[path] = leaf
    for path, value in edits.items():
        expected[path] = value
    return expected


def _leaves(value: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Object leaves by path, a list kept whole (matched as a set)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}.{key}"
        out.update(_leaves(item, path) if isinstance(item, dict) and item else {path: item})
    return out


def approved(meta: dict[str, Any]) -> bool:
    review = meta.get("review")
    return isinstance(review, dict) and str(review.get("decision", "")).lower() in APPROVED


def collect(config: Config, folder: Path, workflow: str | None = None,
            ignore: tuple[str, ...] = VOLATILE) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for sidecar, meta in sorted(iter_sidecars(config.home, ("archived",)), key=lambda item: str(item[0])):
        if not approved(meta) or (workflow and meta.get("workflow") != workflow):
            continue
        data = sidecar.with_name(sidecar.name[: -len(SIDECAR)])
        if not data.is_file() or _already(folder, meta):
            continue
        made.append(_write_case(config, folder, data, meta, ignore))
    return made


def _already(folder: Path, meta: dict[str, Any]) -> bool:
    cid = str(meta.get("correlation_id", ""))
    return any(cid and cid in p.read_text("utf-8", "replace") for p in folder.glob("*.source.json"))


def _write_case(config: Config, folder: Path, data: Path, meta: dict[str, Any],
                ignore: tuple[str, ...]) -> dict[str, Any]:
    review = meta["review"]
    edits = edits_of(review)
    result = json.loads(json.dumps(meta.get("result")))
    result = result if isinstance(result, (dict, list)) else {}
    for path, value in edits.items():
        result = set_path(result, path, value)
    name = _free(folder, str(meta.get("original_name") or data.name), str(meta.get("correlation_id", "")))
    shutil.copyfile(data, folder / name)
    expected = expected_from(result, edits, tuple(i for i in ignore if i not in {p.split(".")[0] for p in edits}))
    (folder / f"{name}.expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n", "utf-8")
    cid = str(meta.get("correlation_id", ""))
    journal = harness.read_journal(config.home / KEPT_JOURNALS / f"{cid}.journal.jsonl")
    answers = [harness.json_line(e) for e in journal if ":ask:" in str(e.get("key", ""))]
    if answers:
        (folder / f"{name}.answers.jsonl").write_text("".join(answers), "utf-8")
    source = {"correlation_id": cid, "workflow": meta.get("workflow"),
              "reviewer": review.get("reviewer") or review.get("by"), "at": review.get("at"), "edits": edits}
    (folder / f"{name}.source.json").write_text(json.dumps(source, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return {"case": name, **source, "fields": len(expected), "answers": len(answers)}


def _free(folder: Path, name: str, cid: str) -> str:
    name = Path(name).name or cid
    if not (folder / name).exists():
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}-{cid[:8]}.{suffix}" if dot and stem else f"{name}-{cid[:8]}"
