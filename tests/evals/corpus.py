"""Inputs and billing for the eval tests: a mixed corpus (text, e-mail, HTML, CSV, JSON, PDF, an
image) and token counts the fake server bills as OpenAI does (o200k_base, chat framing)."""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

from agentd.evals.tokens import encoding
from tests.fakewire import Seen
from tests.tools.scans import pdf_of

ENCODING = encoding("o200k_base")
PARAGRAPH = ("Invoice {n} from ACME Widgets Ltd. for the services of November. The amount due is "
             "$1,{n:03d}.50, payable by 2026-12-15 to billing@acme.example. Please pay by bank transfer; "
             "questions go to Jane Doe at the accounts department. ")


def billed_usage(seen: Seen, value: Any) -> tuple[int, int]:
    """What OpenAI bills: each message's tokens plus 3 of framing, 3 to prime the reply, the
    response_format schema; the answer's own tokens as output."""
    messages = seen.body.get("messages") or []
    prompt = sum(3 + len(ENCODING.encode(str(m.get("content") or ""))) for m in messages) + 3
    schema = (seen.body.get("response_format") or {}).get("json_schema")
    if schema:
        prompt += len(ENCODING.encode(json.dumps(schema)))
    return prompt, len(ENCODING.encode(json.dumps(value)))


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose text layer is `text` (one line per line of text)."""
    lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.splitlines()]
    stream = "BT /F1 10 Tf 40 800 Td 12 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    body = zlib.compress(stream.encode("latin-1"))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
                b"/Resources << /Font << /F1 5 0 R >> >> >>"),
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    return pdf_of(objects)


def text(paragraphs: int, start: int = 0) -> str:
    return "".join(PARAGRAPH.format(n=start + i) for i in range(paragraphs))


def mixed_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; returns name -> kind ("text" for the plain-text files)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, str]] = {
        "short-note.txt": (text(3).encode(), "text"),
        "invoice.txt": (text(12, 100).encode(), "text"),
        "long-report.txt": (text(60, 200).encode(), "text"),
        "rechnung.txt": ("Rechnung Nr. 4711 der Müller & Söhne GmbH über 1.234,56 € — zahlbar bis "
                         "15.12.2026. Grüße aus Köln, Jürgen Groß. ".encode() * 12, "text"),
        "mail.eml": (b"From: Jane Doe <jane@acme.example>\nSubject: Invoice 7\n\n" + text(5).encode(), "email"),
        "page.html": (f"<html><head><title>Invoice</title></head><body><p>{text(6)}</p></body></html>".encode(),
                      "html"),
        "rows.csv": (("id,party,amount\n" + "".join(f"{i},ACME Ltd,{i}.50\n" for i in range(80))).encode(), "csv"),
        "order.json": (json.dumps({"order": [{"sku": f"W-{i}", "qty": i} for i in range(40)]}).encode(), "json"),
        "scan.pdf": (minimal_pdf(text(4).replace(". ", ".\n")), "pdf"),
        "photo.png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "image"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: kind for name, (_, kind) in files.items()}


def drop_copies(source: Path, incoming: Path) -> None:
    for path in sorted(source.iterdir()):
        shutil.copyfile(path, incoming / path.name)
