"""The party directory: one match links, none is new, several are ambiguous; edits are picked up."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentd.errors import ToolError
from agentd.tools.directory import Directory, normalize
from tests.tools.support import Harness, config

CSV = ("id,name,email,aliases\n"
       "c-100,Acme Widgets Ltd,billing@acme-widgets.example,\n"
       "c-200,ACME Widgets Limited,accounts@acme-uk.example,Acme Widgets Ltd|Acme UK\n"
       "c-300,Nordwind GmbH,info@nordwind.example,Nordwind\n"
       "c-400,Jane Smith,jane@smith.example,\n")


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    path = tmp_path / "directory.csv"
    path.write_text(CSV)
    return Directory(path)


def test_names_match_whatever_their_case_punctuation_and_legal_form() -> None:
    assert normalize("ACME Widgets, Ltd.") == normalize("acme widgets") == "acme widgets"
    assert normalize("Société Générale SA") == "societe generale"


def test_one_match_links_the_party(directory: Directory) -> None:
    link = directory.resolve("NORDWIND", {"emails": []})
    assert link["status"] == "linked" and link["id"] == "c-300" and link["name"] == "Nordwind GmbH"


def test_an_email_in_the_document_links_the_party(directory: Directory) -> None:
    link = directory.resolve("", {"emails": ["Jane@Smith.example"]})
    assert link["status"] == "linked" and link["id"] == "c-400" and link["matched_on"] == ["email"]


def test_no_match_is_a_new_party(directory: Directory) -> None:
    assert directory.resolve("Globex Corp", {"emails": ["x@globex.example"]})["status"] == "new"


def test_several_matches_are_ambiguous_with_every_candidate(directory: Directory) -> None:
    link = directory.resolve("Acme Widgets Ltd", {"emails": []})
    assert link["status"] == "ambiguous"
    assert [(c["id"], c["name"], c["email"]) for c in link["candidates"]] == [
        ("c-100", "Acme Widgets Ltd", "billing@acme-widgets.example"),
        ("c-200", "ACME Widgets Limited", "accounts@acme-uk.example")]


def test_an_edited_file_is_read_again(directory: Directory) -> None:
    assert directory.resolve("Globex", {})["status"] == "new"
    directory.path.write_text(CSV + "c-500,Globex,,\n")
    stamp = directory.path.stat().st_mtime_ns + 1_000_000
    os.utime(directory.path, ns=(stamp, stamp))
    assert directory.resolve("Globex", {})["id"] == "c-500"


def test_a_file_without_the_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "directory.csv"
    path.write_text("who,mail\nAcme,a@b.example\n")
    with pytest.raises(ToolError) as bad:
        Directory(path).resolve("Acme", {})
    assert "id,name,email,aliases" in bad.value.detail


def test_the_toolbox_has_a_directory_only_once_the_csv_exists(tmp_path: Path) -> None:
    harness = Harness(config(tmp_path))
    assert harness.box.directory is None
    (tmp_path / "data" / "directory.csv").write_text(CSV)
    assert harness.box.directory is not None
    assert harness.box.directory.resolve("Acme UK", {})["id"] == "c-200"
