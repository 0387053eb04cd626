"""Text in any common encoding is decoded (charset-normalizer when it is not UTF-8); binary stays undecodable."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentd.errors import DataError
from agentd.run import isolated
from agentd.run.extract import DETECT_SAMPLE_BYTES, NeedsDetection, decode_text_as, extract

LETTER = ("Sehr geehrte Damen und Herren, die Rechnung über 1.234,56 € ist fällig. "
          "Mit freundlichen Grüßen")
JAPANESE = ("拝啓 時下ますますご清栄のこととお慶び申し上げます。下記の通り請求書を送付いたします。"
            "ご請求金額は12,345円です。お支払期限は12月25日です。敬具")
FRENCH = "Madame, Monsieur, veuillez trouver ci-joint la facture numéro 42. À régler avant le 3 décembre. Hélène"
CP1252_NAMES = {"cp1252", "windows-1252"}


def test_a_windows_1252_german_letter_is_read_as_cp1252() -> None:
    document = extract(Path("brief.txt"), LETTER.encode("cp1252"))
    assert document.text == LETTER and "Grüßen" in document.text and "€" in document.text
    assert document.meta["encoding"] in CP1252_NAMES


def test_latin_1_french_text_keeps_its_accents() -> None:
    text, encoding = decode_text_as(FRENCH.encode("latin-1"))
    assert text == FRENCH
    assert encoding in CP1252_NAMES | {"latin_1", "iso8859_1", "iso8859_15"}


def test_shift_jis_japanese_text() -> None:
    text, encoding = decode_text_as(JAPANESE.encode("shift_jis"))
    assert text == JAPANESE and encoding in {"shift_jis", "cp932", "shift_jis_2004", "shift_jisx0213"}


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf_16_and_32_with_a_bom(codec: str) -> None:
    data = LETTER.encode(codec) if codec != "utf-16-be" else b"\xfe\xff" + LETTER.encode(codec)
    text, encoding = decode_text_as(data)
    assert text == LETTER and encoding.replace("_", "-").startswith(codec[:6])


def test_utf_16_without_a_bom_is_detected() -> None:
    text, encoding = decode_text_as((LETTER * 3).encode("utf-16-le"))
    assert text == LETTER * 3 and encoding.startswith("utf_16")


def test_utf_8_with_a_bom_keeps_the_bom_out_of_the_text() -> None:
    document = extract(Path("bom.md"), b"\xef\xbb\xbf" + LETTER.encode())
    assert document.text == LETTER and not document.text.startswith("\ufeff")
    assert document.meta["encoding"] == "utf-8-sig"


def test_ordinary_utf_8_says_utf_8_and_never_asks_charset_normalizer(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentd.run.extract as ex

    monkeypatch.setattr(ex, "_detect", lambda data: pytest.fail("UTF-8 must not be detected"))
    document = extract(Path("note.txt"), "Grüße, 1.234,56 €".encode())
    assert (document.text, document.meta["encoding"]) == ("Grüße, 1.234,56 €", "utf-8")


@pytest.mark.parametrize("data", [
    os.urandom(4096),
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(200) + os.urandom(300),
    bytes(range(256)) * 4,
    bytes(range(1, 32)) * 50 + b"\xff\xfe\x81",  # control characters, no NULs, not UTF-8
])
def test_binary_content_stays_undecodable(data: bytes) -> None:
    with pytest.raises(DataError) as caught:
        extract(Path("blob.txt"), data)
    assert caught.value.reason == "undecodable"


def test_utf_8_with_nuls_is_binary() -> None:
    with pytest.raises(DataError) as caught:
        decode_text_as(b"abc\x00\x00\x00\x00def\x00\x01\x02" * 50)
    assert caught.value.reason == "undecodable"


def test_detection_on_a_big_file_sees_a_bounded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import charset_normalizer

    seen: list[int] = []
    real = charset_normalizer.from_bytes
    monkeypatch.setattr(charset_normalizer, "from_bytes", lambda b, *a, **k: (seen.append(len(b)), real(b, *a, **k))[1])
    big = (LETTER + "\n").encode("cp1252") * 60_000  # ~6 MB
    started = time.perf_counter()
    text, encoding = decode_text_as(big)
    assert encoding in CP1252_NAMES and text.endswith("Grüßen\n") and len(text) == len(big)
    assert seen and max(seen) <= DETECT_SAMPLE_BYTES
    assert time.perf_counter() - started < 5


def test_a_sample_cut_never_splits_a_shift_jis_character() -> None:
    big = (JAPANESE + "\n").encode("shift_jis") * (DETECT_SAMPLE_BYTES // 150)
    text, encoding = decode_text_as(big)
    assert "\ufffd" not in text and text.startswith(JAPANESE)


def test_inline_decoding_on_the_loop_never_detects() -> None:
    with pytest.raises(NeedsDetection):
        extract(Path("brief.txt"), LETTER.encode("cp1252"), detect=False)
    assert extract(Path("note.txt"), b"plain", detect=False).meta["encoding"] == "utf-8"


async def test_a_small_non_utf_8_file_is_detected_in_a_parser_process() -> None:
    started = isolated.POOL.started
    try:
        document = await isolated.extract_isolated("brief.txt", LETTER.encode("cp1252"), 10)
        assert document.text == LETTER and document.meta["encoding"] in CP1252_NAMES
        assert isolated.POOL.started == started + 1  # not on the loop
        document = await isolated.extract_isolated("note.txt", LETTER.encode(), 10)
        assert document.meta["encoding"] == "utf-8"
        with pytest.raises(DataError) as caught:
            await isolated.extract_isolated("blob.txt", os.urandom(4096), 10)
        assert caught.value.reason == "undecodable"
    finally:
        await isolated.POOL.close()
