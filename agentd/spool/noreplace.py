"""A rename that never replaces an existing file: renameat2(RENAME_NOREPLACE), or link + unlink.

os.rename silently replaces its target; a state file moved onto a taken name would
destroy another run's file. `rename_noreplace` raises FileExistsError instead.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Any

AT_FDCWD = -100
RENAME_NOREPLACE = 1
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)


def _load_renameat2() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()
_mode = {"renameat2": _renameat2 is not None}


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move `src` to `dst` atomically unless `dst` exists (FileExistsError then; src stays)."""
    if _mode["renameat2"]:
        result = _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE)
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in _UNSUPPORTED:
            raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst)) if code != errno.EEXIST \
                else FileExistsError(code, os.strerror(code), os.fspath(dst))
        _mode["renameat2"] = False  # this file system does not know the flag: link + unlink
    _link_then_unlink(src, dst)


def _link_then_unlink(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """link() fails with EEXIST on a taken name: the same guarantee, in two steps."""
    os.link(src, dst, follow_symlinks=False)
    try:
        os.unlink(src)
    except FileNotFoundError:
        pass  # someone else unlinked it meanwhile: dst holds the file either way
