"""Files written whole or not at all: a temporary file beside the target, then a rename.

A reader never sees a half-written file, and a killed writer leaves the old file (or none)
in place: ``os.replace`` is atomic on POSIX and Windows when both paths are on one file
system, which a sibling temporary file guarantees.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lba_cli.errors import OutputError

__all__ = ["atomic_path", "write_text_atomic", "check_writable"]

# Failures that say where the file was to go is unwritable (not that the writer has a bug).
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
               errno.EEXIST, errno.ENOENT}


def _unwritable(path: Path, error: OSError) -> OutputError:
    """The one-line error for a file that cannot be written at ``path``."""
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    reason = f"{blocker} is a file, not a folder" if blocker is not None else (error.strerror or str(error))
    return OutputError(f"cannot write {path}: {reason}")


def check_writable(path: Path | str) -> None:
    """Fail early, before long work, when ``path`` can clearly not be written: one of its
    folders is a file, or ``path`` is a folder.

    Raises:
        OutputError: naming the path and what is in the way.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write {path}: {blocker} is a file, not a folder")


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name is hidden (``.name.<pid>.tmp<suffix>``) and keeps the suffix, for
    writers that choose a format by it (plotnine). The parent folder is created if needed.
    If the block raises, the temporary file is removed and ``path`` is left as it was.

    Example:
        ``with atomic_path(out) as tmp: frame.write_parquet(tmp)``

    Raises:
        OutputError: when the folder cannot be made or the file cannot be written there
            (a file where a folder should be, no permission, a full or read-only disk).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(path, error) from None
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno not in _UNWRITABLE:
            raise
        raise _unwritable(path, error) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
