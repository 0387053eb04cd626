"""Middleware around a run, its steps, its model calls and its tool calls (dramatiq's shape).

A guard overrides the hooks it needs; every hook is a no-op here. Before-hooks run in
the list's order, after-hooks in reverse, so a guard's after-hook sees what the guards
inside it did. `Guards.why_not(kind)` is the one gate: may work of this kind (a claim,
a step, a model call, a tool call) start now, and if not, why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

if TYPE_CHECKING:
    from agentd.llm.base import LLMRequest, LLMResponse, ProviderError
    from agentd.run.context import RunCore

Kind = Literal["claim", "step", "model", "tool"]


@dataclass
class Ask:
    """One structured ask of a step (its attempts, re-asks and fallbacks inside)."""

    run: "RunCore"
    request: "LLMRequest"
    answer: Any = None
    restore: Callable[[Any], Any] = field(default=lambda value: value)


@dataclass
class ModelCall:
    """One HTTP request to a model: reserved before, settled and metered after."""

    run: "RunCore"
    request: "LLMRequest"
    provider: str
    model: str
    attempt: int
    worst_usd: Decimal = Decimal(0)
    tokens_bound: int = 0  # the input tokens the reservation assumed
    reservation: Any = None
    intent: str = ""  # its intent in the run's memo (a paid call's, written before the request left)
    sent: bool = False  # the request left (False: refused after its reservation, nothing to meter)
    started: float = field(default_factory=time.monotonic)
    started_at: str = ""
    response: "LLMResponse | None" = None
    error: "ProviderError | None" = None
    status: str = "ok"
    tokens_in: int = 0
    tokens_out: int = 0
    cached_in: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_known: bool = True
    latency_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)  # for traces: max_tokens, finish reason, ...


@dataclass
class ToolCall:
    """One tool call of a step (or one the model proposed)."""

    run: "RunCore"
    name: str
    params: Any
    key: str = ""
    proposed_by: str = "workflow"
    status: str = "error"
    latency_ms: float = 0.0
    result: Any = None


class Guard:
    """No-op hooks; a guard overrides what it needs. Raise in a before-hook to stop the work."""

    def configure(self, config: Any) -> None:
        """The configuration was (re)loaded (SIGHUP)."""

    def blocks(self, kind: Kind) -> str | None:
        """Why work of `kind` may not start now (None: this guard lets it)."""
        return None

    def step_timeout_s(self, run: "RunCore", step: Any) -> float | None:
        """The most a step may take, or None for no opinion."""
        return None

    def before_run(self, run: "RunCore") -> None:
        """A run starts (or resumes) its steps."""

    def after_run(self, run: "RunCore", decision: Any) -> None:
        """A run's outcome was decided."""

    def before_step(self, run: "RunCore", step: str) -> None:
        """A step is about to run (not for steps replayed from the journal)."""

    def after_step(self, run: "RunCore", step: str, status: str, started_at: str, duration_ms: float,
                   error: BaseException | None = None) -> None:
        """A step ended: status ok, failed, review or paused."""

    def before_ask(self, ask: Ask) -> None:
        """A step asks the model (the request may be rewritten, e.g. redacted)."""

    def after_ask(self, ask: Ask) -> None:
        """The ask has its answer (it may be rewritten, e.g. restored)."""

    def before_model_call(self, call: ModelCall) -> None:
        """One request is about to go to a model."""

    def after_model_call(self, call: ModelCall) -> None:
        """One request to a model ended (answered, failed, timed out or cancelled), or never left (not sent)."""

    def before_model_send(self, call: ModelCall) -> None:
        """The request leaves now: its reservation held, its intent durable (a last look at the gate)."""

    def before_tool_call(self, call: ToolCall) -> None:
        """A tool call is about to run."""

    def before_tool_effect(self, call: ToolCall) -> None:
        """The tool acts now, after its waits (rate limit, the intent's fsync): a last look at the gate."""

    def after_tool_call(self, call: ToolCall) -> None:
        """A tool call ended."""


HOOKS = tuple(f"{when}_{what}" for what in ("run", "step", "ask", "model_call", "tool_call")
              for when in ("before", "after")) + ("before_model_send", "before_tool_effect")


class Guards:
    """The ordered guard list and the emitters the pipeline, the gateway and the tools call."""

    def __init__(self, guards: Iterable[Guard] = (),
                 extra_gates: Iterable[Callable[[Kind, bool], str | None]] = ()):
        self.items: tuple[Guard, ...] = tuple(guards)
        self.extra_gates = list(extra_gates)
        # each hook's overriding methods, in emit order (a no-op hook is not called at all)
        self._hooks: dict[str, tuple[Callable[..., None], ...]] = {}
        for name in HOOKS:
            ordered = self.items if name.startswith("before_") else tuple(reversed(self.items))
            self._hooks[name] = tuple(getattr(g, name) for g in ordered
                                      if getattr(type(g), name) is not getattr(Guard, name))

    def configure(self, config: Any) -> None:
        for guard in self.items:
            guard.configure(config)

    def of(self, kind: type) -> Any:
        """The guard of this class in the list, or None."""
        return next((g for g in self.items if isinstance(g, kind)), None)

    def why_not(self, kind: Kind, busy: bool = False) -> str | None:
        """The gate: None when work of `kind` may start now, else the first reason.

        `busy`: runs are in flight (a model on trial takes one file at a time)."""
        for guard in self.items:
            reason = guard.blocks(kind)
            if reason:
                return reason
        for gate in self.extra_gates:
            reason = gate(kind, busy)
            if reason:
                return reason
        return None

    def step_timeout_s(self, run: "RunCore", step: Any) -> float | None:
        limits = [t for t in (g.step_timeout_s(run, step) for g in self.items) if t is not None]
        return min(limits) if limits else None

    def before(self, hook: str, *args: Any) -> None:
        for method in self._hooks["before_" + hook]:
            method(*args)

    def after(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for method in self._hooks["after_" + hook]:
            method(*args, **kwargs)
