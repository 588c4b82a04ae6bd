"""Provenance of a run: the software, machine and data it was made with, and the data check.

A run's ``provenance.json`` (written by the process that trains the run, atomically):

    data      one entry per data file or folder the run reads (written once, at creation):
              field        the config field that names it (``finetune.data_path``, ``structures``)
              path         absolute path when the run was made
              kind         ``file`` or ``folder``
              sha256       see ``method``
              method       how ``sha256`` was computed (`FILE_METHOD` or `FOLDER_METHOD`)
              size_bytes   total size of the file or of the folder's files
              num_files    files in a folder (1 for a file)
    sessions  one entry per process that trained the run: the one that created it
              (``event: created``) and each ``--resume`` (``event: resumed``), each with
              at, argv, lba_version, python, platform, packages (torch, numpy, gemmi, rdkit,
              polars, h5py, scipy versions), cuda (torch's CUDA version or null), device
              ({type, name}), git ({commit, dirty} of the lba checkout, or null when lba
              is not run from a git checkout), host, and for a resume the settings it changed
              (``changes``: dotted name -> [old, new], from epoch N).

Every command that uses a run's data calls `check_run_data`, the one place where a file is
compared with what the run recorded: a data file that was rewritten since (``lba voxelize``
again, another split) would silently change what the run's numbers mean.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from lba_cli.atomic import write_text_atomic
from lba_cli.errors import DataChangedError, DataError

__all__ = ["PROVENANCE_NAME", "FILE_METHOD", "FOLDER_METHOD", "PACKAGES", "hash_data_path", "run_data_paths",
           "data_records", "environment", "git_state", "write_provenance", "add_session", "read_provenance",
           "check_run_data"]

PROVENANCE_NAME = "provenance.json"
FILE_METHOD = "sha256 of the file's bytes"
FOLDER_METHOD = ("sha256 over the sorted relative paths, sizes and byte sha256 of every file below the folder "
                 "(hidden files left out)")
PACKAGES = ("torch", "numpy", "gemmi", "rdkit", "polars", "h5py", "scipy")
_CHUNK = 1 << 20


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """SHA-256 of a file's bytes; cached per (path, size, mtime, inode), so replicates and
    several runs on one file in one process hash it once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def hash_data_path(path: Path | str) -> dict[str, Any]:
    """Fingerprint a data file or folder.

    A file is hashed by its bytes (`FILE_METHOD`). A folder (of structure files) is hashed
    over the contents of every file below it (`FOLDER_METHOD`): a copy elsewhere, with new
    modification times, hashes the same; a changed, added or removed file does not.

    Returns:
        ``{"path", "kind", "sha256", "method", "size_bytes", "num_files"}`` (path absolute).

    Raises:
        DataError: if the path does not exist.
    """
    path = Path(os.path.abspath(path))
    if path.is_file():
        return {"path": str(path), "kind": "file", "sha256": _sha256(path), "method": FILE_METHOD,
                "size_bytes": path.stat().st_size, "num_files": 1}
    if not path.is_dir():
        raise DataError(f"data not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    digest = hashlib.sha256()
    size = 0
    for file in files:
        file_size = file.stat().st_size
        size += file_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_size}\0{_sha256(file)}\n".encode())
    return {"path": str(path), "kind": "folder", "sha256": digest.hexdigest(), "method": FOLDER_METHOD,
            "size_bytes": size, "num_files": len(files)}


def run_data_paths(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config field, path) of every data file or folder a run reads, from its config dict:
    the fine-tuning file (``finetune.data_path``), or the pre-training structures (files,
    folders or corpus files) and the files whose val/test proteins it kept out."""
    out: list[tuple[str, str]] = []
    tune = config.get("finetune") or {}
    if tune.get("data_path"):
        out.append(("finetune.data_path", str(tune["data_path"])))
    out.extend(("structures", str(p)) for p in config.get("structures") or ())
    out.extend(("exclude_similar_to", str(p)) for p in config.get("exclude_similar_to") or ())
    return out


def data_records(config: dict[str, Any]) -> list[dict[str, Any]]:
    """`hash_data_path` of each of `run_data_paths`, with its ``field``."""
    return [{"field": name, **hash_data_path(path)} for name, path in run_data_paths(config)]


@functools.cache
def git_state() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout lba runs from; None when it is not run from
    one (an installed wheel) or git is missing. ``dirty``: tracked files differ from the commit."""
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=here)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _package_version(name: str) -> str | None:
    for dist in (name, f"{name}-pypi"):  # RDKit was long published as rdkit-pypi
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: Any = None) -> dict[str, Any]:
    """What one process runs with: versions of lba, Python and `PACKAGES`, CUDA, the device,
    the git state of lba, the host and the command line.

    Args:
        device: the ``torch.device`` the run trains on (None: not known).
    """
    from lba_cli import __version__

    info: dict[str, Any] = {"lba_version": __version__, "python": platform.python_version(),
                            "platform": platform.platform(), "packages": {p: _package_version(p) for p in PACKAGES},
                            "cuda": None, "device": None, "git": git_state(), "host": socket.gethostname(),
                            "argv": list(sys.argv)}
    if "torch" in sys.modules:
        import torch

        info["cuda"] = torch.version.cuda
        if device is not None:
            if device.type == "cuda":
                index = device.index if device.index is not None else torch.cuda.current_device()
                info["device"] = {"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index)}
            else:
                info["device"] = {"type": device.type, "name": _cpu_name()}
    return info


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# `run` below is an `lba_cli.runs.Run` (not imported: the store imports this module).
def read_provenance(run: Any) -> dict[str, Any] | None:
    """A run's ``provenance.json`` (None for runs made before lba recorded it).

    Raises:
        DataError: if the file exists but is not JSON.
    """
    path = run.path / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is not readable JSON: {error}") from None


def _write(run: Any, provenance: dict[str, Any]) -> None:
    write_text_atomic(run.path / PROVENANCE_NAME, json.dumps(provenance, indent=2, sort_keys=True))


def write_provenance(run: Any, device: Any = None, data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write a new run's ``provenance.json``: its data fingerprints and its first session.

    Args:
        run: the run just created.
        device: the training device.
        data: `data_records` already computed (default: computed from the run's config).
    """
    provenance = {"format_version": 1, "data": data if data is not None else data_records(run.config),
                  "sessions": [{"event": "created", "at": _now(), **environment(device)}]}
    _write(run, provenance)
    return provenance


def add_session(run: Any, device: Any = None, changes: dict[str, Any] | None = None,
                data: list[dict[str, Any]] | None = None) -> None:
    """Append a ``resumed`` session (with the settings it changed) to ``provenance.json``;
    ``data`` replaces the data entries (a moved file: same fingerprint, new path)."""
    provenance = read_provenance(run) or {"format_version": 1, "data": [], "sessions": []}
    if data is not None:
        provenance["data"] = data
    session = {"event": "resumed", "at": _now(), **environment(device)}
    if changes:
        session["changes"] = changes
    provenance["sessions"].append(session)
    _write(run, provenance)


def check_run_data(run: Any, *, force: bool = False, moved: dict[str, str] | None = None,
                   fields: tuple[str, ...] | None = None) -> list[str]:
    """Check that the data a run recorded is unchanged: the one check every command that uses
    a run's data makes (evaluate, ``--resume``, leakage checks against the training split).

    Each recorded file or folder is hashed again (`hash_data_path`) and compared with the
    fingerprint in the run's ``provenance.json``.

    Args:
        run: the run.
        force: on a mismatch, return a warning instead of raising.
        moved: recorded path -> the path where that data is now (a moved file is fine when
            its contents are the same).
        fields: only entries of these config fields (e.g. ``("finetune.data_path",)``).

    Returns:
        Messages for the user: mismatches let through by ``force``, or a note that the run
        recorded no fingerprints (runs made by an older lba).

    Raises:
        DataChangedError: when a file or folder differs from what the run recorded (and not
            ``force``).
        DataError: when the data is gone.
    """
    provenance = read_provenance(run)
    if provenance is None:
        return [f"run {run.id} records no data fingerprints (made by an older lba): cannot check that its data is "
                "unchanged"]
    messages = []
    for entry in provenance.get("data", []):
        if fields is not None and entry.get("field") not in fields:
            continue
        where = Path((moved or {}).get(entry["path"], entry["path"]))
        if not where.exists():
            moved_hint = ("lba finetune NEW.h5 --resume RUN" if entry["field"] == "finetune.data_path"
                          else "lba pretrain --structures NEW... --resume RUN")
            raise DataError(f"data of run {run.id} not found: {where}\n"
                            f"expected: the {entry['kind']} the run was trained on ({entry['field']}, sha256 "
                            f"{entry['sha256'][:12]}…); put it back, or give its new place when resuming "
                            f"({moved_hint})")
        now = hash_data_path(where)
        if now["sha256"] == entry["sha256"]:
            continue
        detail = (f"{where} changed since run {run.id} recorded it ({entry['field']}):\n"
                  f"  recorded: sha256 {entry['sha256'][:16]}…, {entry['size_bytes']:,} bytes"
                  f"{'' if entry['kind'] == 'file' else ', ' + str(entry['num_files']) + ' files'}\n"
                  f"  now:      sha256 {now['sha256'][:16]}…, {now['size_bytes']:,} bytes"
                  f"{'' if now['kind'] == 'file' else ', ' + str(now['num_files']) + ' files'}")
        if not force:
            raise DataChangedError(detail + "\nexpected: the data the run was trained on (a file written again by "
                                            "`lba voxelize` can hold other complexes or other splits); restore it, "
                                            "or add --force to go on with the changed data")
        messages.append(detail + "\n  going on because of --force: results do not describe the data the run was "
                                 "trained on")
    return messages
