"""`lba download atom3d-lba`: fetch, verify and unpack the official ATOM3D LBA archives.

The archives are files of the ATOM3D record on Zenodo (DOI 10.5281/zenodo.4914718):
``LBA-split-by-sequence-identity-30.tar.gz`` and ``-60``. The record's API lists each file's
size and MD5 checksum; the download is verified against it, resumes a partial ``.part``
file with an HTTP Range request, and is unpacked only when complete and correct.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lba_cli.errors import DataError

__all__ = ["ATOM3D_RECORD_URL", "ARCHIVES", "RemoteFile", "find_remote_file", "download_file", "download_atom3d_lba"]

ATOM3D_RECORD_URL = "https://zenodo.org/api/records/4914718"
ARCHIVES = {"30": "LBA-split-by-sequence-identity-30.tar.gz", "60": "LBA-split-by-sequence-identity-60.tar.gz"}
_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """A file of a Zenodo record: name, download URL, size in bytes, MD5 hex digest."""

    name: str
    url: str
    size: int
    md5: str


def find_remote_file(record_url: str, name: str) -> RemoteFile:
    """Look a file up in a Zenodo record's API answer.

    Raises:
        DataError: if the record cannot be fetched or does not hold the file.
    """
    try:
        with urllib.request.urlopen(record_url, timeout=_TIMEOUT_S) as response:
            record = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DataError(f"cannot fetch the record {record_url}: {error}\nexpected: network access to Zenodo, "
                        "or --record-url of a mirror") from None
    for entry in record.get("files", []):
        if entry.get("key") == name:
            algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
            if algorithm != "md5":
                raise DataError(f"{name}: the record gives no MD5 checksum ({entry.get('checksum')!r})")
            url = entry.get("links", {}).get("self") or f"{record_url}/files/{name}/content"
            return RemoteFile(name, url, int(entry.get("size", 0)), digest)
    names = ", ".join(e.get("key", "?") for e in record.get("files", [])[:10])
    raise DataError(f"{record_url} holds no file {name}\nit holds: {names}")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(remote: RemoteFile, destination: Path,
                  on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Download ``remote`` to ``destination``, resuming ``destination.part`` if present.

    Args:
        remote: what to fetch.
        destination: the final path; written only when the MD5 checksum matches.
        on_progress: called with (bytes so far, total bytes).

    Raises:
        DataError: on a network error (the ``.part`` file is kept for the next try) or a
            checksum mismatch (the ``.part`` file is deleted).
    """
    destination = Path(destination)
    if destination.exists() and _md5(destination) == remote.md5:
        return destination
    part = destination.with_name(destination.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            if done and response.status != 206:  # the server ignored the Range: start over
                done = 0
            with open(part, "ab" if done else "wb") as handle:
                while block := response.read(_CHUNK):
                    handle.write(block)
                    done += len(block)
                    if on_progress is not None:
                        on_progress(done, remote.size)
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"download of {remote.name} stopped at {done} of {remote.size} bytes: {error}\n"
                        "run the same command again to resume") from None
    if remote.size and done < remote.size:  # the connection closed early without an error
        raise DataError(f"download of {remote.name} stopped at {done} of {remote.size} bytes\n"
                        "run the same command again to resume")
    digest = _md5(part)
    if digest != remote.md5:
        part.unlink()
        raise DataError(f"{remote.name}: MD5 {digest} does not match the record's {remote.md5}; the partial file was "
                        "removed, run the command again")
    os.replace(part, destination)
    return destination


def download_atom3d_lba(split: str, output_dir: Path, record_url: str = ATOM3D_RECORD_URL,
                        on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Fetch, verify and unpack an ATOM3D LBA archive.

    Args:
        split: ``30`` or ``60`` (sequence-identity cutoff of the split).
        output_dir: where the archive and its contents go.
        record_url: the Zenodo record API URL (or a mirror answering the same JSON).
        on_progress: see `download_file`.

    Returns:
        The unpacked split root to give to ``lba voxelize`` (``split-by-sequence-identity-NN``).

    Raises:
        DataError: on an unknown split, a network error, a bad checksum or a bad archive.
    """
    if split not in ARCHIVES:
        raise DataError(f"unknown split {split!r}\nexpected: 30 or 60 (sequence identity, %)")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    remote = find_remote_file(record_url, ARCHIVES[split])
    archive = download_file(remote, output_dir / remote.name, on_progress)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(output_dir, filter="data")  # refuses absolute paths and links out of output_dir
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"cannot unpack {archive}: {error}") from None
    root = output_dir / f"split-by-sequence-identity-{split}"
    if not root.is_dir():
        roots = sorted(p.parent.parent.parent for p in output_dir.glob("*/data/*/data.mdb"))
        if not roots:
            raise DataError(f"{archive} unpacked, but no ATOM3D LMDB data is in {output_dir}")
        root = roots[0]
    return root
