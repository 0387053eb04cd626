"""Safe previews of a dropped file: text (HTML included) as escaped text, PDFs as their extracted
text, images only when their bytes are an allow-listed type. Nothing of the file ever runs."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from agentd.errors import DataError
from agentd.run.extract import _pdf, decode_text

PREVIEW_BYTES = 512 * 1024
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


def preview(path: Path, max_pdf_bytes: int) -> Preview:
    """What the item page shows of the file (computed outside the event loop by the caller)."""
    try:
        head, size = read_bounded(path, PREVIEW_BYTES)
    except OSError as exc:
        return Preview("none", note=f"the file cannot be read ({exc.__class__.__name__})")
    if image_type(head):
        return Preview("image", note=f"{size} bytes")
    if head.startswith(b"%PDF-") or path.suffix.lower() == ".pdf":
        return _pdf_preview(path, size, max_pdf_bytes)
    try:
        text = decode_text(head if size <= PREVIEW_BYTES else _utf8_prefix(head))
    except DataError as exc:
        return Preview("none", note=f"no text preview: {exc.detail or exc.reason}")
    note = "HTML shown as its source text; nothing in it runs" \
        if path.suffix.lower() in (".html", ".htm") or "<html" in text[:2000].lower() else ""
    if size > PREVIEW_BYTES:
        note = (note + "; " if note else "") + f"first {PREVIEW_BYTES // 1024} KiB of {size} bytes"
    return Preview("text", text=text, note=note)


def _pdf_preview(path: Path, size: int, max_pdf_bytes: int) -> Preview:
    if size > max_pdf_bytes:
        return Preview("none", note=f"PDF of {size} bytes: too large to preview")
    data, _ = read_bounded(path, max_pdf_bytes)
    try:
        document = _pdf(data)
    except DataError as exc:
        return Preview("none", note=f"PDF without a text preview: {exc.detail or exc.reason}")
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
