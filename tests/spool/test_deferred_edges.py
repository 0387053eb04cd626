"""Deferrals at the edges: strikes kept until the file is claimed, a malformed record holds nothing back."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentd.spool.deferred import FILE, Deferrals
from tests.spool.test_deferred import NOW, Clock


def test_strikes_are_kept_until_the_file_is_claimed_even_after_its_time(tmp_path: Path) -> None:
    # Given file A deferred after a retryable model failure (its first strike), until NOW+5
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    a, b = incoming / "a.pdf", incoming / "b.pdf"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    clock = Clock()
    deferrals = Deferrals(tmp_path / "state", clock)
    deferrals.defer(a, NOW + 5, "model_unavailable", strikes=1)
    # When A's time passes while it waits its turn (a backlog), and another file B is deferred meanwhile
    clock.now = NOW + 6
    deferrals.defer(b, NOW + 20, "model_unavailable", strikes=1)
    # Then A, claimed now, still brings its strike (else it is retried for ever instead of failing)
    assert deferrals.take(os.fspath(a), os.lstat(a).st_ino) == 1


@pytest.mark.parametrize("content", ["[]", '"text"', '{"all_until": "soon"}', '{"all_until": null}',
                                     '{"files": 3}'])
def test_a_malformed_record_holds_nothing_back_instead_of_crashing(tmp_path: Path, content: str) -> None:
    # the module's contract: an unreadable state/deferred.json holds nothing back (the files are in incoming/)
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE).write_text(content)
    deferrals = Deferrals(state, Clock())
    assert deferrals.held_until() is None
    assert deferrals.until("/incoming/x", 1) is None
