"""Safe previews of a dropped file: text (HTML included) as escaped text, PDFs as their extracted
text (parsed in the isolated parser pool, with a deadline and a memory limit: a hostile PDF shows
"preview unavailable: ..." and never holds up the daemon), images only when their bytes are an
allow-listed type. Nothing of the file ever runs."""
from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from agentd.errors import DataError, InternalError
from agentd.run.extract import decode_text
from agentd.run.isolated import POOL

PREVIEW_BYTES = 512 * 1024
PREVIEW_TIMEOUT_S = 5.0  # a page waits at most this for a PDF's text (or AGENTD_EXTRACT_TIMEOUT_S if shorter)
PARSER_WAIT_S = 5.0  # at most this for a parser process free of the runs' files (or started)
UNAVAILABLE = {  # the parser process was stopped: what the page says instead of the text
    "extract_timeout": "reading this PDF took over {timeout_s:g} s; the parser was stopped",
    "extract_memory_limit": "reading this PDF needed more than {memory_mb} MB; the parser was stopped",
    "extract_crashed": "the parser process died reading this PDF",
}
IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = (  # magic bytes -> Content-Type; SVG (it can carry script) is never one of them
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class Preview:
    kind: str            # text | image | none
    text: str = ""
    note: str = ""


def read_bounded(path: Path, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes of a regular file (never through a symlink) and its full size."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError("not a regular file")
        chunks, left = [], limit
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st.st_size
    finally:
        os.close(fd)


def image_type(head: bytes) -> str | None:
    for magic, content_type in IMAGE_TYPES:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


async def preview(path: Path, max_pdf_bytes: int, timeout_s: float = PREVIEW_TIMEOUT_S,
                  memory_mb: int | None = None) -> Preview:
    """What the item page shows of the file: read in a thread, a PDF parsed in the isolated parser
    pool (agentd.run.isolated) within `timeout_s` and `memory_mb`, never in the daemon."""
    try:
        head, size = await asyncio.to_thread(read_bounded, path, PREVIEW_BYTES)
    except OSError as exc:
        return Preview("none", note=f"the file cannot be read ({exc.__class__.__name__})")
    if image_type(head):
        return Preview("image", note=f"{size} bytes")
    if head.startswith(b"%PDF-") or path.suffix.lower() == ".pdf":
        return await _pdf_preview(path, size, max_pdf_bytes, timeout_s, memory_mb)
    return await asyncio.to_thread(_text_preview, path, head, size)


def _text_preview(path: Path, head: bytes, size: int) -> Preview:
    try:
        text = decode_text(head if size <= PREVIEW_BYTES else _utf8_prefix(head))
    except DataError as exc:
        return Preview("none", note=f"no text preview: {exc.detail or exc.reason}")
    note = "HTML shown as its source text; nothing in it runs" \
        if path.suffix.lower() in (".html", ".htm") or "<html" in text[:2000].lower() else ""
    if size > PREVIEW_BYTES:
        note = (note + "; " if note else "") + f"first {PREVIEW_BYTES // 1024} KiB of {size} bytes"
    return Preview("text", text=text, note=note)


async def _pdf_preview(path: Path, size: int, max_pdf_bytes: int, timeout_s: float,
                       memory_mb: int | None) -> Preview:
    if size > max_pdf_bytes:
        return Preview("none", note=f"PDF of {size} bytes: too large to preview")
    try:
        data, _ = await asyncio.to_thread(read_bounded, path, max_pdf_bytes)
        async with asyncio.timeout(timeout_s + PARSER_WAIT_S):  # the parsers may all be busy with runs
            document = await POOL.preview(data, timeout_s, memory_mb)
    except TimeoutError:
        return Preview("none", note="preview unavailable: no parser process was free in time; reload to try again")
    except OSError as exc:
        return Preview("none", note=f"the file cannot be read ({exc.__class__.__name__})")
    except DataError as exc:
        if exc.reason in UNAVAILABLE:
            return Preview("none", note="preview unavailable: " + UNAVAILABLE[exc.reason].format(
                timeout_s=timeout_s, memory_mb=POOL.memory_mb))
        return Preview("none", note=f"PDF without a text preview: {exc.detail or exc.reason}")
    except InternalError as exc:  # no parser process could be started
        return Preview("none", note=f"preview unavailable: {exc.detail}")
    return Preview("text", text=document.text, note=f"text extracted from a PDF of {document.meta.get('pages')} pages")


def _utf8_prefix(data: bytes) -> bytes:
    """A cut at PREVIEW_BYTES may split a UTF-8 sequence: drop the partial tail."""
    for cut in range(len(data), max(0, len(data) - 4), -1):
        try:
            data[:cut].decode("utf-8")
            return data[:cut]
        except UnicodeDecodeError:
            continue
    return data
