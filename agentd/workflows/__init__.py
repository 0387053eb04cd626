"""Workflows: a named sequence of async steps. Built-ins here; users add their own modules."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

Step = Callable[[Any], Awaitable[Any]]
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Workflow:
    """`steps` run in order with one RunContext; the last step's output is the result.

    `tools` is the workflow's own allowlist; a tool also needs ALLOWED_SERVICES.
    """

    name: str
    steps: tuple[Step, ...]
    tools: frozenset[str] = field(default_factory=frozenset)
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"workflow name {self.name!r}: use lower-case letters, digits, - and _")
        if not self.steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "tools", frozenset(self.tools))
        for step in self.steps:
            if not inspect.iscoroutinefunction(step):
                raise ValueError(f"workflow {self.name!r}: step {step!r} must be an async function")

    def step_names(self) -> list[str]:
        return [step_name(s) for s in self.steps]


def step_name(step: Step) -> str:
    return getattr(step, "step_name", None) or getattr(step, "__name__", "step")


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
