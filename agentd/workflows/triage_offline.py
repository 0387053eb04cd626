"""The triage workflow's offline answer, by a name a parser process imports: the rules (and their
compiled patterns, about 20 ms and a few hundred KB) load where they run, not in the daemon."""
from __future__ import annotations

from typing import Any


def offline_triage(document: str) -> dict[str, Any]:
    from agentd.workflows.triage_rules import triage

    return triage(document)
