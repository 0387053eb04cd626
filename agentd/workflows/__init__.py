"""Workflows: a named sequence of typed async steps. The built-ins live here; users add their own modules.

    from agentd import Run, Workflow, step

    @step(timeout_s=30)
    async def check(run: Run) -> dict:
        text = await run.text()
        return await run.ask(task="check", system="...", document=text, schema=SCHEMA)

    WORKFLOW = Workflow("checks", steps=[check], offline_rules={"check": lambda document: {...}})
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
StepFn = Callable[[Any], Awaitable[Any]]
F = TypeVar("F", bound=StepFn)


def step(fn: F | None = None, *, name: str | None = None, timeout_s: float | None = None) -> Any:
    """Mark an async function as a step: `@step`, or `@step(name=..., timeout_s=...)` for its options."""
    def mark(function: F) -> F:
        if not inspect.iscoroutinefunction(function):
            raise ValueError(f"step {function!r} must be an async function")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"step {function.__name__}: timeout_s must be positive")
        function.step_name = name or function.__name__  # type: ignore[attr-defined]
        function.timeout_s = timeout_s  # type: ignore[attr-defined]
        return function
    return mark(fn) if fn is not None else mark


def step_name(fn: StepFn) -> str:
    return getattr(fn, "step_name", None) or getattr(fn, "__name__", "step")


@dataclass(frozen=True)
class Workflow:
    """`steps` run in order with one Run; the last step's output is the result.

    `tools` is the workflow's own allowlist (a tool also needs ALLOWED_SERVICES);
    `offline_rules` answer its asks by task name when LLM_PROVIDER=offline;
    `output_schema` describes its result (the review console builds its form from it;
    properties marked `"readOnly": true` are shown but not editable).
    """

    name: str
    steps: tuple[StepFn, ...]
    tools: frozenset[str] = field(default_factory=frozenset)
    description: str = ""
    offline_rules: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"workflow name {self.name!r}: use lower-case letters, digits, - and _")
        if not self.steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "tools", frozenset(self.tools))
        object.__setattr__(self, "offline_rules", dict(self.offline_rules))
        names = [step_name(s) for s in self.steps]
        for fn in self.steps:
            if not inspect.iscoroutinefunction(fn):
                raise ValueError(f"workflow {self.name!r}: step {fn!r} must be an async function")
        if len(set(names)) != len(names):
            raise ValueError(f"workflow {self.name!r}: two steps share a name ({', '.join(names)})")

    def step_names(self) -> list[str]:
        return [step_name(s) for s in self.steps]


def builtin() -> list[Workflow]:
    from agentd.workflows.agent import AGENT
    from agentd.workflows.triage import TRIAGE
    return [TRIAGE, AGENT]


def _module(spec: str) -> Any:
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        name = f"agentd_user_{path.stem}"
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or loader.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module
        loader.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def load(specs: Iterable[str]) -> dict[str, Workflow]:
    """Built-ins plus every Workflow found in the named modules (or .py files)."""
    found = {w.name: w for w in builtin()}
    for spec in specs:
        module = _module(spec)
        listed = getattr(module, "WORKFLOWS", None)
        items = list(listed) if listed is not None else [
            v for v in vars(module).values() if isinstance(v, Workflow)]
        if not items:
            raise ImportError(f"{spec} defines no Workflow")
        for workflow in items:
            found[workflow.name] = workflow
    return found


def offline_rules(workflows: Mapping[str, Workflow]) -> dict[str, Callable[[str], Any]]:
    """Every workflow's offline answers by task name (for the offline provider).

    A workflow that replaces a built-in one keeps the built-in's rules for the tasks it does not answer."""
    rules: dict[str, Callable[[str], Any]] = {}
    for workflow in [*builtin(), *workflows.values()]:
        rules.update(workflow.offline_rules)
    return rules
