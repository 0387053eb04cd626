"""Text extraction from dropped documents: txt, md, csv, json, eml, html and PDF."""
from __future__ import annotations

import email
import io
import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from agentd.errors import DataError

TEXT_TYPES = {".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".log", ".xml", ".yaml", ".yml", ""}
HTML_TYPES = {".html", ".htm"}
EMAIL_TYPES = {".eml"}
PDF_TYPES = {".pdf"}
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp", ".pnm"}


@dataclass
class Document:
    text: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a PDF's text layer may hold half of a surrogate pair: keep the text, mark the broken character
        self.text = self.text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), or UTF-16 with a BOM; anything else is undecodable."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError("undecodable", "the file starts with a UTF-16 mark but is not UTF-16") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError("undecodable", f"not UTF-8 text (byte {exc.start}: "
                                           f"{data[exc.start:exc.start + 1]!r})") from None
    if "\x00" in text:
        raise DataError("undecodable", "binary content (NUL bytes) in a text file")
    return text


class _TextOfHTML(HTMLParser):
    SKIP = {"script", "style", "head", "noscript"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    parser = _TextOfHTML()
    parser.feed(markup)
    parser.close()
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip(), parser.title.strip()


def _header(message: Message, name: str) -> str:
    raw = message.get(name)
    if raw is None:
        return ""
    try:
        return str(make_header(decode_header(str(raw)))).strip()
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return str(raw).strip()


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    try:
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _email(data: bytes) -> Document:
    # the compat32 parser: email.policy.default re-parses headers over and over (15x slower)
    message = email.message_from_bytes(data)
    meta: dict[str, Any] = {k: _header(message, k) for k in ("from", "to", "subject", "date")}
    if not any(meta.values()):
        raise DataError("unreadable_email", "no e-mail headers found")
    plain = html = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or (part.get("Content-Disposition") or "").lower().startswith("attachment"):
            attachments.append(str(make_header(decode_header(filename))) if filename else "(unnamed)")
        elif part.get_content_type() == "text/plain" and plain is None:
            plain = _part_text(part)
        elif part.get_content_type() == "text/html" and html is None:
            html = _part_text(part)
    text = plain if plain is not None else (html_to_text(html)[0] if html else "")
    if attachments:
        meta["attachments"] = attachments
    header = "\n".join(f"{k.capitalize()}: {v}" for k, v in meta.items() if k != "attachments" and v)
    return Document(text=f"{header}\n\n{text.strip()}", kind="email", meta=meta)


def _pdf(data: bytes) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DataError("encrypted_pdf", "the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DataError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DataError("unreadable_pdf", f"{exc.__class__.__name__}: {str(exc)[:200]}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    meta = {"pages": len(pages)}
    if not text.strip():
        raise DataError("no_text", "the PDF has no text layer (a scan needs the ocr tool)", **meta)
    return Document(text=text, kind="pdf", meta=meta)


def extract(path: Path, data: bytes) -> Document:
    """The document's text; DataError with a reason when there is none to be had."""
    if not data:
        raise DataError("empty", "the file is empty")
    suffix = path.suffix.lower()
    if suffix in PDF_TYPES or data.startswith(b"%PDF-"):
        return _pdf(data)
    if suffix in IMAGE_TYPES:
        raise DataError("needs_ocr", f"{suffix} images need the ocr tool (ALLOWED_SERVICES=ocr)")
    if suffix in EMAIL_TYPES:
        return _email(data)
    text = decode_text(data)
    if suffix in HTML_TYPES or (suffix == "" and text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))):
        body, title = html_to_text(text)
        return Document(text=body, kind="html", meta={"title": title} if title else {})
    kind = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".tsv": "csv",
            ".json": "json"}.get(suffix, "text")
    if not text.strip():
        raise DataError("empty", "the file has no text")
    return Document(text=text, kind=kind)
