"""Trace and span ids derived from a run's correlation id, so a span re-sent is the same span.

The trace id is the correlation id itself (both are 128 bits). A span id is the first 64
bits of sha256 over the correlation id and what names the span (the run, a step execution
by its start time, an audit line by its seq). The pipeline uses `step_span_id` to put the
running step's span id on its log lines; the exporter derives the same value from the
`step` audit line.
"""
from __future__ import annotations

import hashlib

SPAN_ID_HEX = 16


def trace_id(cid: str) -> int:
    """The run's trace id as an int (the correlation id read as 32 hex digits)."""
    value = int(cid, 16)
    if not 0 < value < 1 << 128:
        raise ValueError(f"not a 128-bit correlation id: {cid!r}")
    return value


def span_id(cid: str, *parts: object) -> int:
    """A stable non-zero 64-bit span id for `parts` within the run `cid`."""
    text = ":".join([cid, *(str(part) for part in parts)])
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()[:8], "big")
    return value or 1


def root_span_id(cid: str) -> int:
    return span_id(cid, "run")


def step_span_id(cid: str, step: str, started_at: str) -> int:
    """One execution of a step: a step run again after a pause or a crash is another span."""
    return span_id(cid, "step", step, started_at)


def hex_span_id(value: int) -> str:
    return f"{value:0{SPAN_ID_HEX}x}"
