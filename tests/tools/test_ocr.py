"""The ocr tool through the real tesseract binary: a generated PNG and an image-only PDF read back."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentd.errors import ToolError
from tests.tools.scans import scanned_pdf, text_png
from tests.tools.support import Harness, config

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract not installed (scripts/test-deps installs tesseract-ocr)")


def _ocr_run(tmp_path: Path, name: str, data: bytes, **overrides: object) -> tuple[Harness, object]:
    harness = Harness(config(tmp_path, allowed_services=frozenset({"ocr"}), **overrides))
    return harness, harness.context(name=name, data=data, allowed={"ocr"})


@needs_tesseract
async def test_a_png_with_known_text_is_read_back_by_tesseract(tmp_path: Path) -> None:
    png = text_png(tmp_path / "scan.png", "HELLO WORLD").read_bytes()
    harness, ctx = _ocr_run(tmp_path, "scan.png", png)

    result = await ctx.tool("ocr")

    assert " ".join(result["text"].split()) == "HELLO WORLD"
    assert result["pages"] == 1
    assert harness.events("tool_call")[-1]["status"] == "ok"
    assert [p.name for p in ctx.file.parent.iterdir() if p.name.startswith(".ocr-")] == []


@needs_tesseract
async def test_a_scanned_pdf_is_rasterised_and_read_or_names_what_is_missing(tmp_path: Path) -> None:
    pdf = scanned_pdf(tmp_path / "scan.pdf", "HELLO WORLD").read_bytes()
    _, ctx = _ocr_run(tmp_path, "scan.pdf", pdf)
    if shutil.which("pdftoppm") is None:
        with pytest.raises(ToolError) as missing:
            await ctx.tool("ocr")
        assert "pdftoppm not found: install poppler-utils" in missing.value.detail
        return
    result = await ctx.tool("ocr", max_pages=1)
    assert " ".join(result["text"].split()) == "HELLO WORLD" and result["pages"] == 1


async def test_a_missing_tesseract_is_a_tool_error_naming_the_package_and_variable(tmp_path: Path) -> None:
    _, ctx = _ocr_run(tmp_path, "scan.png", b"\x89PNG", tesseract="/nonexistent/tesseract")
    with pytest.raises(ToolError) as missing:
        await ctx.tool("ocr")
    assert missing.value.error_class == "tool"
    assert "tesseract not found" in missing.value.detail and "tesseract-ocr" in missing.value.detail
    assert "TESSERACT_CMD" in missing.value.detail


@needs_tesseract
async def test_a_file_tesseract_cannot_read_is_a_tool_error_with_its_message(tmp_path: Path) -> None:
    _, ctx = _ocr_run(tmp_path, "-rf.png", b"this is not an image")
    with pytest.raises(ToolError) as failed:
        await ctx.tool("ocr")
    assert failed.value.reason == "ocr_failed" and "tesseract exited" in failed.value.detail


async def test_the_model_may_choose_the_language_but_never_a_path(tmp_path: Path) -> None:
    harness, ctx = _ocr_run(tmp_path, "scan.png", b"")
    assert harness.box.refusal(ctx._core, "ocr", {"language": "deu+eng"}) is None
    assert harness.box.refusal(ctx._core, "ocr", {"path": "/etc/shadow"}) is not None
    assert harness.box.refusal(ctx._core, "ocr", {"language": "eng; rm -rf /"}) is not None
