"""Files written whole or not at all: a temporary file beside the target, then a rename.

A reader never sees a half-written file, and a killed writer leaves the old file (or none)
in place: ``os.replace`` is atomic on POSIX and Windows when both paths are on one file
system, which a sibling temporary file guarantees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic"]


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name is hidden (``.name.<pid>.tmp<suffix>``) and keeps the suffix, for
    writers that choose a format by it (plotnine). The parent folder is created if needed.
    If the block raises, the temporary file is removed and ``path`` is left as it was.

    Example:
        ``with atomic_path(out) as tmp: frame.write_parquet(tmp)``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
