"""The `step` audit line (a step execution's span) and the span_id on its log lines.

    async with step_record(audit.append, cid, workflow, name):
        ... the step and its guards ...

writes {correlation_id, workflow, step, status: ok|failed|review|paused, started_at,
duration_ms, error_class?} when the step ends, and binds `span_id` for structlog meanwhile.
A cancelled step (a drain deadline) writes nothing: the run resumes at the next start.
"""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import structlog

from agentd.audit import utcnow_iso
from agentd.errors import AgentdError, NeedsReview, Paused
from agentd.traces.ids import hex_span_id, step_span_id


@asynccontextmanager
async def step_record(append: Callable[..., Any], cid: str, workflow: str, name: str) -> AsyncIterator[None]:
    started_at, started = utcnow_iso(), time.monotonic()
    structlog.contextvars.bind_contextvars(span_id=hex_span_id(step_span_id(cid, name, started_at)))
    status, error_class = "failed", None
    try:
        yield
        status = "ok"
    except NeedsReview:
        status = "review"
        raise
    except Paused:
        status = "paused"
        raise
    except AgentdError as error:
        error_class = error.error_class
        raise
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except Exception:  # re-raised: the pipeline's ladder decides; the line records the class
        error_class = "internal"
        raise
    finally:
        structlog.contextvars.unbind_contextvars("span_id")
        if status != "cancelled":
            append("step", correlation_id=cid, workflow=workflow, step=name, status=status, started_at=started_at,
                   duration_ms=round((time.monotonic() - started) * 1000, 1), error_class=error_class)
