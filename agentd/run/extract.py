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


DETECT_SAMPLE_BYTES = 64 << 10  # what charset-normalizer sees of a big file: its cost stays bounded
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")


class NeedsDetection(Exception):
    """Not UTF-8 and no BOM: the encoding must be detected (in a parser process, not on the loop)."""


def _binary(text: str) -> bool:
    """NULs, or more than 1 % control characters (or replacement marks): not text."""
    return "\x00" in text or len(_CONTROLS.findall(text)) > len(text) / 100


def _sample(data: bytes) -> bytes:
    """At most DETECT_SAMPLE_BYTES, cut after a line end so a multi-byte character is not split."""
    if len(data) <= DETECT_SAMPLE_BYTES:
        return data
    sample = data[:DETECT_SAMPLE_BYTES]
    cut = sample.rfind(b"\n")
    if cut > DETECT_SAMPLE_BYTES // 2:
        sample = data[:cut + 1]
    if b"\x00" in sample and len(sample) % 2:
        sample = data[:len(sample) + 1]  # UTF-16 without a BOM: whole code units
    return sample


def _detect(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes

    results = from_bytes(_sample(data))
    best = results.best()
    if best is None or best.encoding in ("ascii", "utf_8"):  # not UTF-8 (that was tried): no plausible text
        raise DataError("undecodable", "binary content: no text encoding fits the bytes")
    encoding = best.encoding
    # a tie among single-byte code pages goes to Windows-1252, the one Western offices write
    # (charset-normalizer calls a short German letter cp1250 and a French one cp1250 or cp1006)
    if any("cp1252" in m.could_be_from_charset and m.chaos <= best.chaos and m.coherence >= best.coherence - 0.01
           for m in results):
        encoding = "cp1252"
    try:
        text = data.decode(encoding, "replace")
    except LookupError:
        raise DataError("undecodable", f"no decoder for the detected encoding {encoding}") from None
    if _binary(text):
        raise DataError("undecodable", f"binary content (read as {encoding} it is not text)")
    return text, encoding


def decode_text_as(data: bytes, detect: bool = True) -> tuple[str, str]:
    """The text and its encoding: a BOM's, else UTF-8 (the fast path), else what charset-normalizer
    detects (NeedsDetection instead when `detect` is false); DataError undecodable for binary content."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                break  # a false mark: let the detection judge the bytes
            if "\x00" in text:
                raise DataError("undecodable", "binary content (NUL bytes) in a text file")
            return text, encoding
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if not detect:
            raise NeedsDetection() from None
        return _detect(data)
    if "\x00" in text:
        if not detect:
            raise NeedsDetection()
        return _detect(data)  # UTF-16 without a BOM is valid UTF-8 full of NULs
    return text, "utf-8"


def decode_text(data: bytes) -> str:
    """Text in any common encoding (see decode_text_as); binary content is undecodable."""
    return decode_text_as(data)[0]


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


def extract(path: Path, data: bytes, detect: bool = True) -> Document:
    """The document's text; DataError with a reason when there is none to be had (NeedsDetection
    when `detect` is false and a text file is not UTF-8: the caller sends it to a parser process)."""
    if not data:
        raise DataError("empty", "the file is empty")
    suffix = path.suffix.lower()
    if suffix in PDF_TYPES or data.startswith(b"%PDF-"):
        return _pdf(data)
    if suffix in IMAGE_TYPES:
        raise DataError("needs_ocr", f"{suffix} images need the ocr tool (ALLOWED_SERVICES=ocr)")
    if suffix in EMAIL_TYPES:
        return _email(data)
    text, encoding = decode_text_as(data, detect)
    if suffix in HTML_TYPES or (suffix == "" and text.lstrip()[:15].lower().startswith(("<!doctype html", "<html"))):
        body, title = html_to_text(text)
        return Document(text=body, kind="html", meta={"title": title, "encoding": encoding} if title
                        else {"encoding": encoding})
    kind = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".tsv": "csv",
            ".json": "json"}.get(suffix, "text")
    if not text.strip():
        raise DataError("empty", "the file has no text")
    return Document(text=text, kind=kind, meta={"encoding": encoding})
