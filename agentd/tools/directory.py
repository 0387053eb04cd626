"""The party directory (AGENTD_HOME/data/directory.csv): links a document's party to a known entry.

Format: a UTF-8 CSV with the header `id,name,email,aliases`; `aliases` holds alternative
names separated by `|`. A party matches an entry when its normalised name equals the
entry's name or one of its aliases, or when one of the document's e-mail addresses is
the entry's e-mail. One match links the party, none makes it "new", several are
"ambiguous" and go to a human with the candidates. The file is re-read when it changes.
"""
from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.errors import ToolError

FILE = "directory.csv"
COLUMNS = ("id", "name", "email", "aliases")
LEGAL_FORMS = frozenset({"inc", "ltd", "llc", "gmbh", "ag", "sa", "sarl", "bv", "nv", "corp", "co", "plc",
                         "limited", "incorporated", "corporation", "company", "kg", "srl", "spa", "oy", "ab"})


def normalize(name: str) -> str:
    """Case, accents, punctuation, spacing and a trailing legal form do not tell parties apart."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    words = re.sub(r"[^\w]+", " ", text).split()
    while len(words) > 1 and words[-1] in LEGAL_FORMS:
        words.pop()
    return " ".join(words)


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    email: str
    aliases: tuple[str, ...]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k for k in (normalize(self.name), *(normalize(a) for a in self.aliases)) if k)

    def card(self, matched_on: list[str]) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "matched_on": matched_on}


class Directory:
    def __init__(self, path: Path):
        self.path = path
        self.entries: list[Entry] = []
        self._stamp: tuple[int, int, int] | None = None

    def refresh(self) -> None:
        """Re-read the CSV if it changed since the last read (mtime, size or inode)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.entries, self._stamp = [], None
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self.entries = self._read()
            self._stamp = stamp

    def _read(self) -> list[Entry]:
        try:
            text = self.path.read_text("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ToolError("directory_unreadable", f"{self.path}: {exc.__class__.__name__}") from None
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in ("id", "name") if c not in header]
        if missing:
            raise ToolError("directory_invalid", f"{self.path}: the header must be {','.join(COLUMNS)} "
                                                 f"(missing {', '.join(missing)})")
        reader.fieldnames = header
        entries = []
        for row in reader:
            ident = (row.get("id") or "").strip()
            if not ident:
                continue
            aliases = tuple(a.strip() for a in (row.get("aliases") or "").split("|") if a.strip())
            entries.append(Entry(ident, (row.get("name") or "").strip(), (row.get("email") or "").strip(), aliases))
        return entries

    def resolve(self, party: str, entities: dict[str, Any] | None = None) -> dict[str, Any]:
        """{"status": "linked", id, name, email} | {"status": "new"} | {"status": "ambiguous", candidates}."""
        self.refresh()
        wanted = normalize(party or "")
        emails = {str(e).strip().casefold() for e in (entities or {}).get("emails") or [] if str(e).strip()}
        found: list[dict[str, Any]] = []
        for entry in self.entries:
            matched_on = []
            if wanted and wanted in entry.keys:
                matched_on.append("name")
            if entry.email and entry.email.casefold() in emails:
                matched_on.append("email")
            if matched_on:
                found.append(entry.card(matched_on))
        if not found:
            return {"status": "new", "party": party}
        if len(found) == 1:
            return {"status": "linked", **found[0]}
        return {"status": "ambiguous", "party": party, "candidates": found}
