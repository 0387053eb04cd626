"""Hostile documents that are expensive to parse: a slow PDF, a PDF decompression bomb, a slow HTML page.

Shared by the extraction tests and bench/loop_lag.py. Each is small on disk and built in well
under a second; what it costs is the parser's CPU time or memory.
"""
from __future__ import annotations

import zlib
from tests.tools.scans import pdf_of

TEXT_OPERATOR = b"1 0 0 1 10 10 Tm (word) Tj "


def pdf(pages: list[list[bytes]]) -> bytes:
    """A PDF with one page per entry; each page's /Contents is an array of its (encoded) stream objects."""
    n_pages = sum(1 for _ in pages)
    streams = [stream for page in pages for stream in page]
    first_page, first_stream = 3, 3 + n_pages
    font = first_stream + len(streams)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
                   b" ".join(b"%d 0 R" % (first_page + i) for i in range(n_pages)), n_pages)]
    index = first_stream
    for page in pages:
        refs = b" ".join(b"%d 0 R" % (index + j) for j in range(len(page)))
        index += len(page)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                       b"/Resources << /Font << /F1 %d 0 R >> >> /Contents [%s] >>" % (font, refs))
    objects += streams
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return pdf_of(objects)


def stream(content: bytes, flate: bool = False) -> bytes:
    data = zlib.compress(content, 9) if flate else content
    return (b"<< %s/Length %d >>\nstream\n" % (b"/Filter /FlateDecode " if flate else b"", len(data))
            + data + b"\nendstream")


def text_pdf(text: str) -> bytes:
    """A small ordinary one-page PDF whose text layer is `text`."""
    return pdf([[stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text.encode("latin-1"))]])


def slow_pdf(operators: int = 100_000) -> bytes:
    """Many text operators in one content stream: 100,000 (2.7 MB) take pypdf about 4 s of CPU."""
    return pdf([[stream(b"BT /F1 12 Tf " + TEXT_OPERATOR * operators + b"ET")]])


def bomb_pdf(pages: int = 12, inflated_bytes: int = 70_000_000) -> bytes:
    """A decompression bomb under pypdf's per-stream limit: each page's stream inflates to 70 MB.

    About 70 KB per page on disk; the parser keeps every inflated page, so 12 pages need over 800 MB.
    """
    bomb = stream(b" " * inflated_bytes, flate=True)
    return pdf([[bomb] for _ in range(pages)])


def slow_html(tags: int = 8_000) -> bytes:
    """Unclosed tags: html.parser rescans them over and over; 5,000 (15 KB) take about 2.6 s, 10,000 about 16 s."""
    return b"<html><body>" + b"<a " * tags


def rules_bomb_text() -> bytes:
    """40 KB of plain text that made the offline provider's regexes quadratic (about 6 s of CPU before)."""
    return (b"A1" * 5000 + b"\n" + b"1," * 5000 + b"\n" + b"A&" * 5000 + b"\n"
            + b"from: " + b"\n" * 5000 + b"!\n")


def company_names_text(count: int = 3000) -> bytes:
    """40 KB of distinct company names, one a line: the party rules compare every name with every
    other (about a second of CPU), so they run in a parser process, under LLM_TIMEOUT_S."""
    import random
    import string
    rng = random.Random(1)
    names = ("".join([rng.choice(string.ascii_uppercase), *rng.choices(string.ascii_lowercase, k=6)]) + " GmbH"
             for _ in range(count))
    return "\n".join(names).encode()[:40_000]
