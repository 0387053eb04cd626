"""The crash point registry is the code's own list: every `crash_point(..., "name")` in agentd/ names a
registered point, every registered point is called somewhere, every function outside agentd/durable/
that performs a durable step (a rename or link, a sidecar created by the group commit, a transition's
audit line, a write to a run's journal) holds a crash point, or is a helper called only by functions that
do, or says in ALLOWED why it needs none; and docs/durability.md names every point.

Read from the source by its syntax tree (no import, no running), so a new durable step written
anywhere in agentd/ fails here until it is a named point the sweep kills at.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from agentd.durable.crash import POINTS, SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "agentd"
DOC = ROOT / "docs" / "durability.md"
OS_STEPS = {"rename", "replace", "link", "fsync"}  # os.<name>
NAMED_STEPS = {"rename_noreplace", "fsync_path", "_place"}  # noreplace, durable.group, the store's one rename
# Steps that only make earlier writes durable. A SIGKILL keeps the page cache, so no kill can tell
# "before the fsync" from "after" it: a function whose only steps are these needs no crash point (their
# order matters to a power cut, which docs/durability.md takes apart). A function that also moves,
# links, creates a sidecar or writes a transition's line is held to the rule.
SYNC_ONLY = {"os.fsync", "fsync_path", "GroupSync.sync"}
TRANSITION_LINES = {"claimed", "outcome", "review_decision", "requeued"}  # audit lines that decide a move
JOURNAL_WRITES = {"put", "keep", "intend"}  # a run's journal (or the gateway's memo of it): intents, answers, results
CRASH_CALLS = {"crash_point", "crash"}  # crash_point(config, name), store.crash_point(name), index.crash(name)

# Functions outside agentd/durable/ that perform a durable step with no crash point of their own, each
# with the reason a crash anywhere in it leaves nothing a restart must finish. Keep it short and true.
ALLOWED: dict[str, str] = {
    # the primitives themselves: their callers hold the points
    "agentd/spool/noreplace.py:_link_then_unlink": "rename_noreplace's fallback (link, then unlink the old name)",
    "agentd/spool/store.py:Store._place": "the store's one no-replace rename; claim, the final rename, unclaim and "
                                          "recover call it",
    # state rewritten whole through a temporary file: a crash leaves the old or the new, never half
    "agentd/audit/anchor.py:AnchorStore.save": "the audit anchor rewritten whole (temp, fsync, rename)",
    "agentd/traces/cursor.py:Cursor.save": "the trace exporter's cursor rewritten whole (temp, fsync, rename)",
    # moves whose every crash state recovery already handles, with no sweep point (yet)
    "agentd/spool/store.py:Store.recover": "puts a stranger's file found in processing/ back into incoming/: a kill "
                                           "leaves it in one of the two, and the next start does it again",
    "agentd/run/pipeline.py:Pipeline._step": "a finished step's result in the journal, not fsynced (durable=False): "
                                             "a kill on either side runs the step again on resume, its paid answers "
                                             "and side effects replayed from their own entries",
}


@dataclass(frozen=True)
class Step:
    function: str  # module path:qualified name
    what: str  # the primitive, e.g. os.replace
    line: int


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def _callee(call: ast.Call) -> str:
    """`os.replace`, `rename_noreplace`, `self.sync.sync`, ...: the call's dotted name, as written."""
    parts, node = [], call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _step_of(call: ast.Call) -> str | None:
    name = _callee(call)
    last = name.rsplit(".", 1)[-1]
    if name.startswith("os.") and last in OS_STEPS and name.count(".") == 1:
        return name
    if last in NAMED_STEPS:
        return last
    if name.endswith("sync.sync"):  # with write=: the group commit creates the file (the sidecar)
        return "GroupSync.sync(write=)" if any(k.arg == "write" for k in call.keywords) else "GroupSync.sync"
    if last in JOURNAL_WRITES and ("journal" in name or "memo" in name):
        return f"Journal.{last}"
    if last == "append" and call.args and isinstance(call.args[0], ast.Constant) \
            and call.args[0].value in TRANSITION_LINES and "audit" in name:
        return f"AuditLog.append({call.args[0].value!r})"
    return None


def _functions(module: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function with its qualified name; a nested function's calls are its own, not its parent's."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(module, "")
    return found


def _own_calls(function: ast.AST) -> list[ast.Call]:
    calls: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Call):
                calls.append(child)
            visit(child)

    visit(function)
    return calls


def _crash_calls() -> list[tuple[str, ast.Call, ast.Module]]:
    found = []
    for path, module in _modules():
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and _callee(node).rsplit(".", 1)[-1] in CRASH_CALLS:
                found.append((path, node, module))
    return found


def _named(call: ast.Call) -> str | None:
    literals = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return literals[-1] if literals else None


def _forwards(call: ast.Call, module: ast.Module) -> bool:
    """A wrapper passing its own parameter on (Store.crash_point(point) -> crash_point(config, point), or
    `lambda point: crash_point(config, point)` handed to the dedupe index)."""
    if not call.args or not isinstance(call.args[-1], ast.Name):
        return False
    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and \
                any(n is call for n in ast.walk(node)) and call.args[-1].id in {a.arg for a in node.args.args}:
            return True
    return False


def durable_steps() -> dict[str, list[Step]]:
    """Functions outside agentd/durable/ with a durable step: qualified name -> its steps."""
    found: dict[str, list[Step]] = {}
    for path, module in _modules():
        if path.startswith("agentd/durable/"):
            continue
        for qualname, function in _functions(module):
            steps = [Step(f"{path}:{qualname}", s, c.lineno) for c in _own_calls(function) if (s := _step_of(c))]
            if any(step.what not in SYNC_ONLY for step in steps):
                found[f"{path}:{qualname}"] = steps
    return found


def _with_crash_point() -> set[str]:
    """Functions with a crash point of their own, and helpers called only by such functions (by name,
    anywhere in agentd/: a helper of the same name called from elsewhere is not covered)."""
    covered, callers, names = set(), {}, set()
    for path, module in _modules():
        for qualname, function in _functions(module):
            name = f"{path}:{qualname}"
            names.add(name)
            called = {_callee(c).rsplit(".", 1)[-1] for c in _own_calls(function)}
            if called & CRASH_CALLS:
                covered.add(name)
            for short in called:
                callers.setdefault(short, set()).add(name)
    while True:  # a helper of a helper: until nothing more is covered
        more = {n for n in names - covered if (by := callers.get(n.rsplit(".", 1)[-1].rsplit(":", 1)[-1]))
                and by <= covered}
        if not more:
            return covered
        covered |= more


def test_every_crash_point_call_names_a_registered_point() -> None:
    unknown, unnamed = [], []
    for path, call, module in _crash_calls():
        name = _named(call)
        if name is None:
            if not _forwards(call, module):
                unnamed.append(f"{path}:{call.lineno}")
        elif name not in POINTS:
            unknown.append(f"{path}:{call.lineno} {name!r}")
    assert unknown == [], f"crash_point names not in agentd/durable/crash.py POINTS: {unknown}"
    assert unnamed == [], f"crash_point calls whose point is not a string literal (the sweep cannot see them): {unnamed}"


def test_every_registered_point_is_called_somewhere_with_a_sweep_scenario() -> None:
    called = {_named(call) for _, call, _ in _crash_calls()}
    assert sorted(set(POINTS) - called) == [], "registered crash points that no code reaches"
    assert {p.name: p.scenario for p in POINTS.values() if p.scenario not in SCENARIOS} == {}
    assert all(p.leaves.strip() and p.transition.strip() for p in POINTS.values())


def test_every_durable_step_outside_agentd_durable_has_a_crash_point_or_a_reason() -> None:
    steps, covered = durable_steps(), _with_crash_point()
    bare = {name: [f"{s.what} (line {s.line})" for s in found] for name, found in steps.items()
            if name not in covered and name not in ALLOWED}
    assert bare == {}, ("durable steps in functions with no crash point: add a crash_point (and a row in "
                        "agentd/durable/crash.py) or a reason in ALLOWED")
    stale = sorted(name for name in ALLOWED if name not in steps or name in covered)
    assert stale == [], "ALLOWED entries that no longer perform a bare durable step: remove them"
    assert all(len(reason) > 20 for reason in ALLOWED.values())


def test_the_write_order_document_names_every_registered_point() -> None:
    text = DOC.read_text()
    missing = sorted(name for name in POINTS if not re.search(rf"`{re.escape(name)}`", text))
    assert missing == [], f"crash points docs/durability.md does not describe: {missing}"
