"""A workflow author's API: `from agentd import Workflow, step, Run`, per-step options, earlier outputs by
step or name, offline rules declared with the workflow, and nothing of the daemon's internals on Run."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentd import Run, Workflow, step
from tests.helpers import cli, sidecar_for

WORKFLOW_FILE = Path(__file__).with_name("api_workflow.py")


def test_a_workflow_of_the_public_api_runs_with_its_own_offline_rules_and_step_timeout(home: Path) -> None:
    # Given three files for a user workflow that only imports agentd's public API
    folder = home / "incoming" / "counts"
    folder.mkdir(parents=True)
    (folder / "short.txt").write_text("three little words")
    (folder / "long.txt").write_text("word " * 60)
    (folder / "slow.txt").write_text("a slow one")
    # When the daemon drains them
    done = cli(home, "run", "--burst", AGENTD_WORKFLOWS=str(WORKFLOW_FILE))
    assert done.returncode == 0, done.stderr
    # Then the offline answer is the workflow's own rule, earlier outputs were found by step and by name,
    short = sidecar_for(home, "short.txt")
    assert short["outcome"] == "archived"
    assert short["result"] == {"words": 3, "shout": "THREE LITTLE WORDS", "read_as": "short.txt",
                               "cost_so_far": 0.0, "internals_hidden": True}
    # NeedsReview routes, and the step's own timeout_s (0.5 s, not the 300 s default) ends the slow one
    assert sidecar_for(home, "long.txt")["reason"] == "long_document"
    slow = sidecar_for(home, "slow.txt")
    assert (slow["outcome"], slow["reason"], slow["error_class"]) == ("failed", "step_timeout", "internal")
    assert "0.5s" in slow["detail"]


def test_step_options_are_checked_when_the_workflow_is_defined() -> None:
    with pytest.raises(ValueError, match="async"):
        step(lambda run: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s"):
        @step(timeout_s=0)
        async def never(run: Run) -> None: ...

    @step(name="same")
    async def first(run: Run) -> None: ...

    @step(name="same")
    async def second(run: Run) -> None: ...

    with pytest.raises(ValueError, match="share a name"):
        Workflow("twice", steps=(first, second))
