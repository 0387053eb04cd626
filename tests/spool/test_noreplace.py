"""rename_noreplace (agentd.spool.noreplace): a move that never replaces a file, with renameat2 or link+unlink."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from agentd.spool import noreplace
from agentd.spool.noreplace import rename_noreplace

MODES = ["renameat2", "link_unlink"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test runs with renameat2 (when the kernel has it) and with the link+unlink fallback."""
    saved = dict(noreplace._mode)
    if request.param == "renameat2":
        if noreplace._renameat2 is None:
            pytest.skip("this libc has no renameat2: only the link+unlink fallback can run here")
        noreplace._mode["renameat2"] = True
    else:
        noreplace._mode["renameat2"] = False
    yield request.param
    noreplace._mode.clear()
    noreplace._mode.update(saved)


def test_moves_a_file_onto_a_free_name(tmp_path: Path, mode: str) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"run A")
    inode = src.stat().st_ino
    rename_noreplace(src, dst)
    assert not src.exists()
    assert dst.read_bytes() == b"run A" and dst.stat().st_ino == inode
    assert dst.stat().st_nlink == 1  # the fallback leaves no second link behind


def test_onto_an_existing_file_raises_and_both_keep_their_content(tmp_path: Path, mode: str) -> None:
    # Given another run's file at the target name
    src, dst = tmp_path / "mine", tmp_path / "theirs"
    src.write_bytes(b"mine")
    dst.write_bytes(b"theirs")
    # When a move onto it is tried, Then it is refused and nothing is lost
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert src.read_bytes() == b"mine"
    assert dst.read_bytes() == b"theirs"
    assert src.stat().st_nlink == 1 and dst.stat().st_nlink == 1


def test_onto_an_existing_symlink_or_dangling_link_raises(tmp_path: Path, mode: str) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dangling)
    assert os.readlink(dangling) == str(tmp_path / "nowhere") and src.read_bytes() == b"data"


def test_a_fifo_is_moved_as_a_fifo(tmp_path: Path, mode: str) -> None:
    src, dst = tmp_path / "pipe", tmp_path / "moved-pipe"
    os.mkfifo(src)
    rename_noreplace(src, dst)  # must not open it: opening a FIFO with no writer would block
    assert not src.exists()
    assert dst.is_fifo()


def test_a_fifo_onto_a_taken_name_raises(tmp_path: Path, mode: str) -> None:
    src, dst = tmp_path / "pipe", tmp_path / "taken"
    os.mkfifo(src)
    dst.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        rename_noreplace(src, dst)
    assert src.is_fifo() and dst.read_bytes() == b"keep"


def test_a_symlink_is_moved_itself_not_its_target(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "target.txt"
    target.write_bytes(b"the target")
    link, moved = tmp_path / "link", tmp_path / "moved-link"
    link.symlink_to(target)
    rename_noreplace(link, moved)
    assert not link.is_symlink() and not link.exists()
    assert moved.is_symlink() and os.readlink(moved) == str(target)
    assert target.read_bytes() == b"the target" and target.stat().st_nlink == 1


def test_a_dangling_symlink_is_moved(tmp_path: Path, mode: str) -> None:
    link, moved = tmp_path / "link", tmp_path / "moved"
    link.symlink_to(tmp_path / "gone")
    rename_noreplace(link, moved)
    assert moved.is_symlink() and os.readlink(moved) == str(tmp_path / "gone")
    assert not os.path.lexists(link)


def test_a_missing_source_raises_file_not_found(tmp_path: Path, mode: str) -> None:
    with pytest.raises(FileNotFoundError):
        rename_noreplace(tmp_path / "absent", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_paths_with_undecodable_bytes_work(tmp_path: Path, mode: str) -> None:
    src = tmp_path / os.fsdecode(b"scan-\xff.pdf")
    dst = tmp_path / os.fsdecode(b"moved-\xfe.pdf")
    src.write_bytes(b"x")
    rename_noreplace(src, dst)
    assert dst.read_bytes() == b"x" and not src.exists()
