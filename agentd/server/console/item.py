"""One review item: its page (preview, result form, reason, trace, lease), its file for an
inline image, and the POSTs that decide it or release its lease."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from agentd.server import review
from agentd.server.console import forms, queue
from agentd.server.console.app import Console, changing, console_of, message, page, viewing
from agentd.server.console.auth import ADMIN, Session
from agentd.server.console.leases import Lease
from agentd.server.console.preview import IMAGE_BYTES, PREVIEW_TIMEOUT_S, image_type, preview, read_bounded
from agentd.server.console.trace import run_events
from agentd.spool.layout import SIDECAR

IDENT = r"{ident:[0-9a-fA-F]{6,32}}"


async def _find(request: web.Request) -> tuple[Path, dict[str, Any]]:
    """The item (looked for in a thread: it reads review/'s sidecars), or an HTTP answer: 404
    unknown, 409 already decided."""
    console = console_of(request)
    await console.desk.settle()
    try:
        return await asyncio.to_thread(review.find, console.config().home, request.match_info["ident"])
    except review.AlreadyDecided as exc:
        raise _answer(request, 409, "Already decided", str(exc)) from None
    except review.ReviewError as exc:
        raise _answer(request, 404, "Not in the queue", str(exc)) from None


def _answer(request: web.Request, status: int, title: str, text: str) -> web.HTTPException:
    response = message(request, status, title, text)
    error = web.HTTPException(text=response.text, content_type="text/html")
    error.set_status(status)
    error.headers.update({k: v for k, v in response.headers.items() if k.lower() != "content-length"})
    return error


def _lease(console: Console, session: Session, cid: str) -> Lease | None:
    """Opening an item as a reviewer holds it (an expired lease is free); a viewer holds nothing."""
    now = console.clock()
    if session.user.can_decide:
        return console.leases.acquire(cid, session.user.name, now, console.config().review_lease_s)
    return console.leases.current(cid, now)


async def item_page(request: web.Request, session: Session, status: int = 200, errors: dict[str, str] | None = None,
                    problem: str = "", form: Any = None) -> web.StreamResponse:
    console = console_of(request)
    config = console.config()
    sidecar, meta = await _find(request)
    cid = str(meta.get("correlation_id"))
    data = sidecar.with_name(sidecar.name[: -len(SIDECAR)])
    lease = await asyncio.to_thread(_lease, console, session, cid)  # a SQLite commit: not on the loop
    shown = await preview(data, config.max_file_bytes, min(PREVIEW_TIMEOUT_S, config.extract_timeout_s),
                          config.extract_memory_mb)
    events = await asyncio.to_thread(run_events, config.logs_dir, cid)
    schema = console.schema_of(str(meta.get("workflow")))
    result = meta.get("result")
    values = dict(form) if form is not None else {}
    row = queue.row_of(meta, config.review_sla_s, console.clock())
    return page(request, "item.html", status=status, meta=meta, cid=cid, row=row, lease=lease,
                mine=lease is None or lease.holder == session.user.name, admin=session.user.role == ADMIN,
                preview=shown, events=events, fields=forms.fields(schema, result), values=values,
                errors=errors or {}, error_for=forms.error_for_field, problem=problem,
                unplaced=_unplaced(errors or {}, schema, result),
                candidates=review.candidates(meta), details=_details(meta), result=result)


def _unplaced(errors: dict[str, str], schema: dict[str, Any] | None, result: Any) -> list[tuple[str, str]]:
    """Errors with no input to stand beside (shown at the top)."""
    placed = {f.path for f in forms.fields(schema, result)}
    return [(path, why) for path, why in errors.items()
            if path not in placed and f"{path}.0" not in placed]


def _details(meta: dict[str, Any]) -> list[tuple[str, str]]:
    keys = ("detail", "confidence", "threshold", "why", "refused_tools", "pending_tool_call", "pending_tool_calls")
    return [(k, str(meta[k])) for k in keys if meta.get(k) not in (None, "", [])]


async def decide(request: web.Request, session: Session) -> web.StreamResponse:
    console = console_of(request)
    sidecar, meta = await _find(request)
    cid = str(meta.get("correlation_id"))
    lease = await asyncio.to_thread(_lease, console, session, cid)  # a SQLite commit: not on the loop
    if lease is not None and lease.holder != session.user.name:
        return message(request, 409, "Held by another reviewer",
                       f"{lease.holder} holds this item until {queue.iso(lease.until)}; it cannot be decided now.")
    form = await request.post()
    approve = "choice" in form or form.get("action") == "approve"
    if not approve and form.get("action") != "reject":
        return message(request, 400, "No decision", "Use Approve, Reject or Choose.")
    choice = _int(form.get("choice"))
    options = review.candidates(meta)
    if approve and options and choice is None:
        return await item_page(request, session, 400, form=form, problem=f"Choose one of the {len(options)} "
                               "candidates (or reject): approving needs a choice.")
    schema = console.schema_of(str(meta.get("workflow")))
    edits, errors = forms.edits_from(form, schema, meta.get("result")) if approve else ({}, {})  # type: ignore[arg-type]
    if errors:
        return await item_page(request, session, 422, errors=errors, form=form)
    try:
        await console.desk.decide(sidecar, meta, approve, choice, str(form.get("reason", "")), session.user.name,
                                  edits, schema)
    except review.AlreadyDecided as exc:
        return message(request, 409, "Already decided", str(exc))
    except review.EditError as exc:
        return await item_page(request, session, 422, errors=exc.errors, form=form)
    except review.ReviewError as exc:
        return await item_page(request, session, 400, problem=str(exc), form=form)
    await asyncio.to_thread(console.leases.release, cid)
    raise web.HTTPSeeOther(f"/review?decided={cid}")


def _int(value: Any) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


async def release(request: web.Request, session: Session) -> web.StreamResponse:
    """A reviewer lets go of their own lease; an admin breaks anyone's (audited)."""
    console = console_of(request)
    _, meta = await _find(request)
    cid = str(meta.get("correlation_id"))
    lease = console.leases.current(cid, console.clock())
    if lease is not None and lease.holder != session.user.name:
        if session.user.role != ADMIN:
            return message(request, 403, "Not yours", f"Only an admin can break {lease.holder}'s lease.")
        await console.record("review_lease_broken", correlation_id=cid, by=session.user.name, holder=lease.holder)
    await asyncio.to_thread(console.leases.release, cid)
    raise web.HTTPSeeOther("/review")


async def item_file(request: web.Request, session: Session) -> web.StreamResponse:
    """The item's own file, only as an allow-listed image type sniffed from its bytes."""
    sidecar, _ = await _find(request)
    data = sidecar.with_name(sidecar.name[: -len(SIDECAR)])
    try:
        body, size = await asyncio.to_thread(read_bounded, data, IMAGE_BYTES)
    except OSError:
        raise web.HTTPNotFound() from None
    content_type = image_type(body[:16])
    if content_type is None or size > IMAGE_BYTES:
        return web.Response(status=415, text="not an image this console shows")
    return web.Response(body=body, headers={"Content-Type": content_type, "Content-Disposition": "inline",
                                            "Content-Security-Policy": "default-src 'none'; sandbox"})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"/review/{IDENT}", viewing(item_page))
    app.router.add_get(f"/review/{IDENT}/file", viewing(item_file))
    app.router.add_post(f"/review/{IDENT}/decide", changing(decide))
    app.router.add_post(f"/review/{IDENT}/release", changing(release))
