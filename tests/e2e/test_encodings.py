"""A real daemon reads text in the encodings people drop (issue 24, point 3) and still fails binary content."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, sidecar_for, wait_until

LETTER = ("Sehr geehrte Damen und Herren, die Rechnung über 1.234,56 € ist fällig. "
          "Mit freundlichen Grüßen")
JAPANESE = "拝啓 下記の通り請求書を送付いたします。ご請求金額は12,345円です。お支払期限は12月25日です。敬具"
FRENCH = "Madame, Monsieur, veuillez trouver ci-joint la facture numéro 42. À régler avant le 3 décembre. Hélène"


def _done(home: Path, name: str) -> dict:
    return wait_until(lambda: sidecar_for(home, name), timeout=20, message=f"{name!r} finished")


def test_letters_in_common_encodings_are_archived_with_their_encoding(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    files = {
        "brief-cp1252.txt": (LETTER.encode("cp1252"), {"cp1252", "windows-1252"}, "Grüßen"),
        "brief-utf16.txt": (LETTER.encode("utf-16"), {"utf-16", "utf_16"}, "Grüßen"),
        "brief-bom.txt": (b"\xef\xbb\xbf" + LETTER.encode(), {"utf-8-sig", "utf_8_sig"}, "Grüßen"),
        "seikyu-sjis.txt": (JAPANESE.encode("shift_jis"), {"shift_jis", "cp932"}, "請求書"),
        "facture-latin1.txt": (FRENCH.encode("latin-1"), {"cp1252", "latin_1", "iso8859_1", "iso8859_15"}, "numéro"),
        "note-utf8.txt": (LETTER.encode(), {"utf-8"}, "Grüßen"),
    }
    for name, (data, _, _) in files.items():
        (home / "incoming" / name).write_bytes(data)
    for name, (_, encodings, word) in files.items():
        meta = _done(home, name)
        assert meta["outcome"] in ("archived", "review") and meta.get("reason") != "undecodable", (name, meta)
        result = meta["result"]
        assert result["encoding"] in encodings, (name, result)
        assert word in result["summary"], (name, result["summary"])
        assert not result["summary"].startswith("\ufeff")
    assert _done(home, "brief-cp1252.txt")["outcome"] == "archived"


def test_binary_blobs_in_text_files_still_fail_undecodable(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    blobs = {"random.txt": os.urandom(8192),
             "image.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(100) + os.urandom(400)}
    for name, data in blobs.items():
        (home / "incoming" / name).write_bytes(data)
    for name in blobs:
        meta = _done(home, name)
        assert (meta["outcome"], meta["reason"], meta["error_class"]) == ("failed", "undecodable", "data"), meta
