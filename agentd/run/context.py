"""What a step sees: `Run`, the public face of one file's run, over the runtime's own RunCore.

A workflow author gets `Run` (the file, its text, ask, tool, earlier outputs, the log,
the cost so far) and nothing of the daemon. The gateway, the tools and the guards work
on RunCore, which holds the journal and the claim.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from agentd import logs
from agentd.errors import DataError
from agentd.run.asking import ask, call_tool
from agentd.run.extract import Document, extract
from agentd.durable.journal import MISSING, Journal
from agentd.spool.store import Claim
from agentd.workflows import step_name

if TYPE_CHECKING:
    from agentd.config import Config

log = logs.get("agentd.run")


@dataclass
class RunCore:
    """The runtime's side of a run: identity, claim, journal and the parts that act for it."""

    cid: str
    workflow: str
    config: "Config"
    claim: Claim
    journal: Journal
    ask_model: Callable[..., Any] | None = None  # (core, request, key) -> answer: the gateway
    tools: Any = None  # the ToolBox, when tools are configured
    audit: Any = None  # for built-in steps that record their own states (the agent step)
    allowed_tools: frozenset[str] = frozenset()
    outputs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    data: bytes = b""
    sha256: str | None = None
    document: Document | None = None
    models_used: list[dict[str, str]] = field(default_factory=list)
    asks: int = 0
    extract_text: Callable[..., Any] | None = None  # (name, data) -> Document, off the event loop

    @property
    def path(self) -> Path:
        return self.claim.data

    @property
    def original_name(self) -> str:
        return self.claim.original_name

    @property
    def cost_usd(self) -> Decimal:
        return self.journal.cost_usd

    @property
    def memo(self) -> Journal:
        """What the gateway keeps for this run (agentd.llm.memo.Memo): the run's journal."""
        return self.journal

    def note_model(self, provider: str, model: str) -> None:
        entry = {"provider": provider, "model": model}
        if entry not in self.models_used:
            self.models_used.append(entry)

    def next_ask_key(self) -> str:
        self.asks += 1
        return f"{self.step}:ask:{self.asks}"

    def journaled(self, key: str) -> Any:
        return self.journal.get(key)

    async def text(self) -> str:
        if self.document is None:
            if self.extract_text is not None:
                self.document = await self.extract_text(Path(self.original_name), self.data)
            else:
                self.document = extract(Path(self.original_name), self.data)
        return self.document.text


class Run:
    """One file's run as a step sees it. Steps are `async def name(run: Run) -> output`."""

    __slots__ = ("_core",)

    def __init__(self, core: RunCore):
        self._core = core

    # -- identity and the file ----------------------------------------------------------
    @property
    def correlation_id(self) -> str:
        return self._core.cid

    cid = correlation_id

    @property
    def workflow(self) -> str:
        return self._core.workflow

    @property
    def step(self) -> str:
        """The name of the step that is running."""
        return self._core.step

    @property
    def file(self) -> Path:
        """The claimed file (read it, never move it: the spool owns it)."""
        return self._core.path

    @property
    def name(self) -> str:
        """The name the file was dropped as."""
        return self._core.original_name

    original_name = name

    @property
    def data(self) -> bytes:
        return self._core.data

    @property
    def sha256(self) -> str | None:
        return self._core.sha256

    @property
    def config(self) -> "Config":
        """The daemon's configuration (read-only)."""
        return self._core.config

    async def text(self) -> str:
        """The extracted text of the file (DataError when it has none)."""
        return await self._core.text()

    @property
    def document(self) -> Document:
        """The extracted document (kind, meta); after `await run.text()`."""
        if self._core.document is None:
            raise DataError("no_text", "call `await run.text()` before reading run.document")
        return self._core.document

    # -- earlier steps -----------------------------------------------------------------
    def output(self, step: Any) -> Any:
        """The output of an earlier step, by its name or by the step function itself."""
        name = step if isinstance(step, str) else step_name(step)
        if name not in self._core.outputs:
            raise KeyError(f"step {name!r} has no output (yet) in workflow {self._core.workflow}")
        return self._core.outputs[name]

    @property
    def outputs(self) -> Mapping[str, Any]:
        return MappingProxyType(self._core.outputs)

    # -- acting --------------------------------------------------------------------------
    async def ask(self, *, task: str, system: str, document: str, schema: dict[str, Any],
                  instructions: str = "", max_tokens: int | None = None,
                  tools: tuple[dict[str, Any], ...] = ()) -> Any:
        """A schema-checked model answer; paid once, replayed from the journal after a crash."""
        return await ask(self._core, task=task, system=system, document=document, schema=schema,
                         instructions=instructions, max_tokens=max_tokens, tools=tools)

    async def tool(self, name: str, /, **params: Any) -> Any:
        """Call an allowed tool (see agentd.tools); refused calls raise PolicyError."""
        return await call_tool(self._core, name, params)

    # -- what it cost, and the log ---------------------------------------------------------
    @property
    def cost_usd(self) -> Decimal:
        """What this run's model calls cost so far (across restarts)."""
        return self._core.cost_usd

    @property
    def models_used(self) -> list[dict[str, str]]:
        return list(self._core.models_used)

    @property
    def log(self) -> Any:
        """A structlog logger bound to this run and step."""
        return log.bind(step=self._core.step)

    @property
    def directory(self) -> Any:
        """The party directory (AGENTD_HOME/data/directory.csv), or None when there is none."""
        tools = self._core.tools
        return tools.directory if tools is not None else None

    @property
    def state(self) -> dict[str, Any]:
        """Scratch space for this run's steps (not journaled)."""
        return self._core.state

    def __repr__(self) -> str:
        return f"Run({self._core.cid[:8]}, {self._core.workflow}, step={self._core.step!r})"


__all__ = ["Run", "RunCore", "MISSING", "step_name"]
