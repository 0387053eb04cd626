"""The ocr tool: the tesseract binary reads the run's own image or scanned PDF (subprocess, no shell).

The file is always the run's claimed file: a model may choose the language and the page
limit, never a path. A scanned PDF is first rasterised with pdftoppm (poppler-utils).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from agentd.errors import ToolError
from agentd.tools.base import Invocation, Tool

MAX_PAGES = 50
MAX_TEXT_CHARS = 200_000
PDF_DPI = 300
STDERR_TAIL_CHARS = 300

PARAMETERS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "language": {"type": "string", "pattern": "^[A-Za-z_]{3,16}(\\+[A-Za-z_]{3,16}){0,3}$",
                     "description": "tesseract language code(s), e.g. eng or deu+eng (default eng)"},
        "max_pages": {"type": "integer", "minimum": 1, "maximum": MAX_PAGES,
                      "description": f"scanned PDFs: read at most this many pages (default {MAX_PAGES})"},
    },
}


async def run_process(argv: list[str], timeout_s: float, what: str) -> bytes:
    """Run `argv` (no shell), return its stdout; killed at the timeout; a non-zero exit is a ToolError."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                start_new_session=True)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        raise ToolError("ocr_timeout", f"{what} took over {timeout_s:g}s and was killed") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL_CHARS:]
        raise ToolError("ocr_failed", f"{what} exited with {proc.returncode}: {tail}")
    return out


def _binary(command: str, missing: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise ToolError("ocr_unavailable", missing)
    return found


def _is_pdf(path: Path, data: bytes) -> bool:
    if data:
        return data.startswith(b"%PDF-")
    with open(path, "rb") as fh:
        return fh.read(5) == b"%PDF-"


async def _rasterize(pdf: Path, workdir: Path, max_pages: int, timeout_s: float) -> list[Path]:
    pdftoppm = _binary("pdftoppm", "pdftoppm not found: install poppler-utils to OCR scanned PDFs")
    await run_process([pdftoppm, "-r", str(PDF_DPI), "-gray", "-png", "-f", "1", "-l", str(max_pages),
                       str(pdf), str(workdir / "page")], timeout_s, "pdftoppm")
    pages = sorted(workdir.glob("page*.png"))
    if not pages:
        raise ToolError("ocr_failed", "pdftoppm produced no pages")
    return pages


async def run(inv: Invocation) -> dict[str, object]:
    tesseract = _binary(inv.config.tesseract, f"tesseract not found ({inv.config.tesseract!r}): "
                                              "install tesseract-ocr or set TESSERACT_CMD")
    ctx = inv.ctx
    source = Path(os.path.abspath(ctx.path))  # absolute: a name starting with "-" is never an option
    language = inv.params.get("language", "eng")
    max_pages = int(inv.params.get("max_pages", MAX_PAGES))
    workdir = Path(tempfile.mkdtemp(prefix=".ocr-", dir=source.parent))
    try:
        pages = [source]
        if _is_pdf(source, getattr(ctx, "data", b"")):
            pages = await _rasterize(source, workdir, max_pages, inv.timeout_s)
        texts = []
        for page in pages:
            out = await run_process([tesseract, str(page), "stdout", "-l", language], inv.timeout_s, "tesseract")
            texts.append(out.decode("utf-8", "replace").strip())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = "\n\f\n".join(texts)
    return {"text": text[:MAX_TEXT_CHARS], "pages": len(pages), "chars": len(text),
            "truncated": len(text) > MAX_TEXT_CHARS}


TOOL = Tool(name="ocr", description="Read the text of this run's image or scanned PDF with OCR (tesseract). "
                                    "The file is always the document being processed.",
            parameters=PARAMETERS, run=run, rate_per_min=30.0)
