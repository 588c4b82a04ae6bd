"""The pre-training corpus: structures, their chain sequences and dense zones in one HDF5 file.

`lba corpus` writes it; `lba pretrain --structures CORPUS.h5` reads it lazily (a folder of
structure files is turned into a temporary corpus first).

Layout (format ``lba-corpus``, version 1). S structures, A atoms, Z zones, Q chains:

    /                        attributes: format, format_version, lba_version, created,
                             sources (JSON list), and the zone settings: view_size_A,
                             max_pad_A, min_density_per_nm3, density_radius_A,
                             zone_spacing_A, bin_A, max_density_per_nm3
    /structures/name           (S,)      str      structure id: lower-case PDB code when the file
                                                  name starts with one, else the file stem;
                                                  files of one id are split together
    /structures/source         (S,)      str      the file (or file#complex) it was read from
    /structures/atom_offset    (S + 1,)  int64    structure i owns atoms [offset[i], offset[i+1])
    /structures/zone_offset    (S + 1,)  int64    ... and zones [offset[i], offset[i+1])
    /structures/chain_offset   (S + 1,)  int64    ... and chains [offset[i], offset[i+1])
    /atoms                     (A,)      `ATOM_DTYPE` records, heavy atoms (no hydrogens, no waters):
                                         xyz_A (3,) float32 Å; atomic_number uint8 (0 = unknown);
                                         occupancy float32 from the file, in [0, 1]
    /zones                     (Z,)      `ZONE_DTYPE` records: center_A (3,) float32, zone centre in
                                         the structure's frame, Å; direction_mask uint64, dense
                                         neighbour directions, bit j for
                                         `lba_cli.zones.NEIGHBOR_DIRECTIONS[j]`
    /chains/sequence           (Q,)      str      one-letter polymer sequences (>= 10 residues)

Atom and zone datasets are chunked and compressed, so a reader touches only the chunks of
the structure it samples; fields are stored as records so that one structure is two reads.
Every structure has at least one zone (structures without any are skipped and reported,
not written). Only `build_corpus` writes the file, to a temporary name renamed when
complete; readers open it read-only, lazily, once per process.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lba_cli.atomic import atomic_path, check_writable
from lba_cli.data.atoms import is_structure_file
from lba_cli.errors import DataError, LbaError
from lba_cli.zones import ZoneSettings, find_zones

__all__ = [
    "FORMAT_NAME",
    "CorpusReport",
    "Corpus",
    "build_corpus",
    "collect_structure_files",
    "structure_id",
    "is_corpus_file",
    "write_corpus_report",
    "ATOM_DTYPE",
    "ZONE_DTYPE",
]

FORMAT_NAME = "lba-corpus"
FORMAT_VERSION = 1
_CHUNK_ROWS = 4096
_CACHE_BYTES = 64 * 2**20
ATOM_DTYPE = np.dtype([("xyz_A", np.float32, (3,)), ("atomic_number", np.uint8), ("occupancy", np.float32)])
ZONE_DTYPE = np.dtype([("center_A", np.float32, (3,)), ("direction_mask", np.uint64)])
_READ_DATASETS = ("atoms", "zones")
_PDB_CODE = re.compile(r"^([0-9][0-9a-zA-Z]{3})(?:[_.\-]|$)")
_SETTINGS_ATTRS = ("view_size_A", "max_pad_A", "min_density_per_nm3", "density_radius_A", "zone_spacing_A", "bin_A",
                   "max_density_per_nm3")


def structure_id(path: Path) -> str:
    """``1A2K_r_u.pdb.gz`` -> ``1a2k``; other names -> the file name without extensions."""
    match = _PDB_CODE.match(Path(path).name)
    return match.group(1).lower() if match else Path(path).name.split(".")[0]


def collect_structure_files(paths: list[Path]) -> list[Path]:
    """Expand directories (recursively, sorted) into PDB / mmCIF / PDBQT files.

    Raises:
        DataError: for a missing path, or when no structure file is found.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"structures not found: {path}")
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_structure_file(p)))
        else:
            files.append(path)
    if not files:
        raise DataError(f"no structure files in {', '.join(map(str, paths))}\n"
                        "expected: .pdb, .ent, .cif, .mmcif or .pdbqt files (gzip allowed)")
    return files


def is_corpus_file(path: Path) -> bool:
    """True for an HDF5 file written by `build_corpus`."""
    path = Path(path)
    if not (path.is_file() and path.name.endswith((".h5", ".hdf5"))):
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_NAME
    except OSError:
        return False


@dataclass
class CorpusReport:
    """What `build_corpus` did.

    Attributes:
        output: the file written.
        num_structures: structures written.
        num_zones: zones written.
        num_atoms: atoms written.
        skipped: (source, reason) for every structure left out.
        elapsed_s: wall time.
    """

    output: Path
    num_structures: int = 0
    num_zones: int = 0
    num_atoms: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass
class _Read:
    name: str
    source: str
    xyz_A: np.ndarray | None = None
    atomic_number: np.ndarray | None = None
    occupancy: np.ndarray | None = None
    sequences: tuple[str, ...] = ()
    zone_center_A: np.ndarray | None = None
    direction_mask: np.ndarray | None = None
    skip_reason: str | None = None


def _zoned(read: _Read, settings: ZoneSettings) -> _Read:
    zones = find_zones(read.xyz_A, read.occupancy, settings)
    if zones.max_density_per_nm3 > settings.max_density_per_nm3:
        read.skip_reason = (f"atom density reaches {zones.max_density_per_nm3:.0f} atoms/nm³ (more than "
                            f"{settings.max_density_per_nm3:g}): overlapping copies, e.g. superimposed models?")
    elif not len(zones):
        read.skip_reason = (f"no zone: no point with at least {settings.min_density_per_nm3:g} atoms/nm³ within "
                            f"{settings.radius_A:g} Å that has a neighbour {settings.view_size_A:g}-"
                            f"{settings.view_size_A + settings.max_pad_A:g} Å away as dense (structure too small "
                            f"or too loose: {len(read.xyz_A)} heavy atoms)")
    else:
        read.zone_center_A, read.direction_mask = zones.center_A, zones.direction_mask
    return read


def _read_structure_file(path: Path, settings: ZoneSettings) -> _Read:
    from lba_cli.data.atoms import chain_sequences, read_structure, structure_atoms

    read = _Read(structure_id(path), str(path))
    try:
        structure = read_structure(path)
    except LbaError as error:
        read.skip_reason = str(error)
        return read
    atoms = structure_atoms(structure, with_occupancy=True)
    if atoms.height == 0:
        read.skip_reason = "no heavy atoms after removing hydrogens and waters"
        return read
    read.xyz_A = atoms.select("x_A", "y_A", "z_A").to_numpy().astype(np.float32)
    read.atomic_number = atoms["atomic_number"].to_numpy().astype(np.uint8)
    read.occupancy = np.clip(atoms["occupancy"].to_numpy(), 0.0, 1.0).astype(np.float32)
    read.sequences = tuple(chain_sequences(structure))
    return _zoned(read, settings)


def _iter_voxelize_file(path: Path, settings: ZoneSettings):
    """Receptors of the training split of an `lba voxelize` file that holds whole proteins."""
    from lba_cli.data.grids_h5 import ATOM_EXTENT_WHOLE, read_atom_extent, read_chain_sequences, read_grid_set

    if read_atom_extent(path) != ATOM_EXTENT_WHOLE:
        raise DataError(f"{path} is an lba voxelize file of ligand-centred crops, not whole proteins\n"
                        "its atoms are only those within reach of each ligand's box: as pre-training "
                        "structures they would make every view pair's answer obvious (the empty side)\n"
                        "do: give the structure files instead (e.g. the PDBbind *_protein.pdb files of the "
                        "training split), or a corpus from lba corpus")
    data = read_grid_set(path)
    _, _, sequences = read_chain_sequences(path)
    for row, complex_id in enumerate(data.ids):
        source = f"{path}#{complex_id}"
        if data.split[row] != "train":
            yield _Read(str(complex_id).lower(), source,
                        skip_reason=f"{data.split[row]} split of {path.name}: never used for pre-training")
            continue
        xyz, numbers, flags = data.atoms(row)
        read = _Read(str(complex_id).lower(), source, xyz[flags].astype(np.float32), numbers[flags].astype(np.uint8),
                     np.ones(int(flags.sum()), np.float32), tuple(sequences[row]))
        yield _zoned(read, settings)


def _worker_context():
    """Processes started from a clean server, not forked from this one: a fork of a process
    whose threads hold locks (BLAS, OpenMP, torch) can hang in the child."""
    import multiprocessing

    return multiprocessing.get_context("forkserver")


def _read_job(job: tuple[str, ZoneSettings]) -> _Read:
    return _read_structure_file(Path(job[0]), job[1])


class _Writer:
    """Appends structures to the resizable datasets of an open HDF5 file."""

    def __init__(self, f) -> None:
        import h5py

        text = h5py.string_dtype("utf-8")
        opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        self.f = f
        self.atoms = f.create_dataset("atoms", (0,), ATOM_DTYPE, maxshape=(None,), chunks=(_CHUNK_ROWS,), **opts)
        self.zones = f.create_dataset("zones", (0,), ZONE_DTYPE, maxshape=(None,), chunks=(_CHUNK_ROWS,), **opts)
        self.sequences = f.create_dataset("chains/sequence", (0,), text, maxshape=(None,), chunks=(1024,), **opts)
        self.names: list[str] = []
        self.sources: list[str] = []
        self.atom_offset, self.zone_offset, self.chain_offset = [0], [0], [0]

    @staticmethod
    def _append(dataset, values: np.ndarray) -> None:
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    def add(self, read: _Read) -> None:
        atoms = np.empty(len(read.xyz_A), ATOM_DTYPE)
        atoms["xyz_A"], atoms["atomic_number"], atoms["occupancy"] = read.xyz_A, read.atomic_number, read.occupancy
        zones = np.empty(len(read.zone_center_A), ZONE_DTYPE)
        zones["center_A"], zones["direction_mask"] = read.zone_center_A, read.direction_mask
        self._append(self.atoms, atoms)
        self._append(self.zones, zones)
        if read.sequences:
            self._append(self.sequences, np.array(read.sequences, dtype=object))
        self.names.append(read.name)
        self.sources.append(read.source)
        self.atom_offset.append(self.atom_offset[-1] + len(read.xyz_A))
        self.zone_offset.append(self.zone_offset[-1] + len(read.zone_center_A))
        self.chain_offset.append(self.chain_offset[-1] + len(read.sequences))

    def close(self) -> None:
        import h5py

        text = h5py.string_dtype("utf-8")
        s = self.f.require_group("structures")
        s.create_dataset("name", data=np.array(self.names, dtype=object), dtype=text)
        s.create_dataset("source", data=np.array(self.sources, dtype=object), dtype=text)
        for name in ("atom_offset", "zone_offset", "chain_offset"):
            s.create_dataset(name, data=np.array(getattr(self, name), dtype=np.int64))


def build_corpus(
    sources: list[Path],
    output: Path,
    settings: ZoneSettings = ZoneSettings(),
    *,
    workers: int | None = None,
    on_structure: Callable[[int, int, str], None] | None = None,
    report: Path | None = None,
) -> CorpusReport:
    """Read structures, find their zones and write a corpus file (see the module docstring).

    Args:
        sources: structure files (PDB, mmCIF, PDBQT, gzip or not), folders of them (searched
            recursively), or `lba voxelize` files that hold whole proteins (their training
            split only).
        output: the ``.h5`` to write (atomically).
        settings: how zones are found.
        workers: processes reading files in parallel (default: all CPUs). They are started
            by a fork server, so a script calling this needs the usual
            ``if __name__ == "__main__":`` guard.
        on_structure: called with (done, total, source) after each structure file.
        report: write every structure left out to this CSV (`write_corpus_report`), also
            when none has a zone and no corpus is written.

    Returns:
        A `CorpusReport` listing every structure left out and why.

    Raises:
        DataError: when a source is missing, a voxelize file holds cropped complexes, or no
            structure has a zone (only the report is written then).
        OutputError: when the output or the report can clearly not be written.
    """
    import time

    import h5py

    from lba_cli import __version__

    started = time.monotonic()
    sources = [Path(s) for s in sources]
    for path in (output, report):
        if path is not None:
            check_writable(path)
    h5_sources = [s for s in sources if s.name.endswith((".h5", ".hdf5"))]
    for path in h5_sources:
        if not path.is_file():
            raise DataError(f"structures not found: {path}")
        if is_corpus_file(path):
            raise DataError(f"{path} is already a corpus\nexpected: structure files or folders (give the corpus "
                            "file to lba pretrain --structures directly)")
    other = [s for s in sources if s not in h5_sources]
    files = collect_structure_files(other) if other else []
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = CorpusReport(output)
    total = len(files) + len(h5_sources)
    done = 0

    def take(read: _Read) -> None:
        if read.skip_reason is not None:
            result.skipped.append((read.source, read.skip_reason))
        else:
            writer.add(read)

    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["lba_version"] = __version__
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["sources"] = json.dumps([str(s) for s in sources])
        for name, value in asdict(settings).items():
            f.attrs[name] = np.nan if value is None else value
        writer = _Writer(f)
        for path in h5_sources:
            for read in _iter_voxelize_file(path, settings):
                take(read)
            done += 1
            if on_structure:
                on_structure(done, total, str(path))
        workers = max(1, workers or os.cpu_count() or 1)
        jobs = [(str(p), settings) for p in files]
        if workers == 1 or len(jobs) < 4:
            results = map(_read_job, jobs)
            pool = None
        else:
            pool = ProcessPoolExecutor(workers, mp_context=_worker_context())
            results = pool.map(_read_job, jobs, chunksize=4)
        try:
            for read in results:
                take(read)
                done += 1
                if on_structure:
                    on_structure(done, total, read.source)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        if not writer.names:
            if report is not None:
                write_corpus_report(report, result.skipped)
            shown = "\n".join(f"  {s}: {r.splitlines()[0]}" for s, r in result.skipped[:10])
            more = f"\n  ... and {len(result.skipped) - 10} more" if len(result.skipped) > 10 else ""
            where = (f"\nall {len(result.skipped)} listed with their reasons in {report}" if report is not None
                     else "\n(--report FILE.csv lists them all)" if len(result.skipped) > 10 else "")
            raise DataError(f"no structure with a dense zone in {', '.join(map(str, sources))}\n"
                            f"{len(result.skipped)} left out:\n{shown}{more}{where}")
        writer.close()
        result.num_structures = len(writer.names)
        result.num_zones = int(writer.zone_offset[-1])
        result.num_atoms = int(writer.atom_offset[-1])
    if report is not None:
        write_corpus_report(report, result.skipped)
    result.elapsed_s = time.monotonic() - started
    return result


def write_corpus_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    """Write the structures left out as CSV (columns source, reason), atomically.

    Raises:
        DataError: if the file cannot be written.
    """
    import csv

    try:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("source", "reason"))
            writer.writerows(skipped)
    except OSError as error:
        raise DataError(f"cannot write the corpus report {path}: {error.strerror or error}") from None


class Corpus:
    """A corpus file, read lazily: only names and offsets are held in memory.

    The HDF5 file is opened read-only on first access in each process (a DataLoader worker
    opens its own handle; the handle is never pickled).

    Args:
        path: a file written by `build_corpus`.

    Raises:
        DataError: if the file is missing or not a corpus.

    Attributes:
        names: str array of shape (S,): structure ids.
        sources: str array of shape (S,).
        atom_offset, zone_offset, chain_offset: int64 arrays of shape (S + 1,).
        settings: the `ZoneSettings` the zones were found with.
    """

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"corpus not found: {self.path}")
        try:
            f = h5py.File(self.path, "r")
        except OSError as error:
            raise DataError(f"cannot open {self.path} as HDF5: {error}") from None
        with f:
            if f.attrs.get("format") != FORMAT_NAME:
                raise DataError(f"{self.path} is HDF5 but not an lba corpus\nexpected: a file written by lba corpus")
            if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
                raise DataError(f"{self.path} has corpus format version {f.attrs['format_version']}; "
                                f"this lba reads up to {FORMAT_VERSION}")
            try:
                values = {name: f.attrs[name].item() for name in _SETTINGS_ATTRS}
                if values["density_radius_A"] != values["density_radius_A"]:  # NaN stands for None
                    values["density_radius_A"] = None
                self.settings = ZoneSettings(**values)
                s = f["structures"]
                self.names = s["name"].asstr()[...].astype(str)
                self.sources = s["source"].asstr()[...].astype(str)
                self.atom_offset = s["atom_offset"][...]
                self.zone_offset = s["zone_offset"][...]
                self.chain_offset = s["chain_offset"][...]
                missing = [name for name in (*_READ_DATASETS, "chains/sequence") if name not in f]
            except (KeyError, OSError, ValueError, TypeError) as error:
                raise DataError(f"{self.path} is a damaged lba corpus: {error}\n"
                                "do: rebuild it with lba corpus") from None
            if missing:
                raise DataError(f"{self.path} is a damaged lba corpus: no {', '.join(missing)}\n"
                                "do: rebuild it with lba corpus")
        self._file = None
        self._pid: int | None = None
        self._datasets: dict[str, Any] = {}
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._cache_bytes = 0
        self.cache_bytes_max = _CACHE_BYTES

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"], state["_pid"], state["_datasets"] = None, None, {}  # each worker opens its own handle
        state["_cache"], state["_cache_bytes"] = OrderedDict(), 0
        return state

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {name: self._file[name] for name in _READ_DATASETS}
            self._cache, self._cache_bytes = OrderedDict(), 0
        return self._datasets

    def close(self) -> None:
        """Close this process's handle (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid, self._datasets = None, None, {}
        self._cache, self._cache_bytes = OrderedDict(), 0

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open handle."""
        return self._file is not None and self._pid == os.getpid()

    def num_zones(self) -> np.ndarray:
        """Zones per structure: int64 array of shape (S,)."""
        return np.diff(self.zone_offset)

    def read_structure(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Atoms and zones of structure ``index``, from the file or this process's small cache.

        The cache keeps the most recently read structures up to ``cache_bytes_max`` bytes
        (64 MiB by default, whatever the corpus size), so that repeated draws from a small
        corpus do not decompress the same chunks again.

        Returns:
            xyz_A (N, 3) float32, atomic_number (N,) uint8, occupancy (N,) float32,
            zone center_A (Z, 3) float32, direction_mask (Z,) uint64.
        """
        cached = self._cache.get(index)
        if cached is not None and self._pid == os.getpid():
            self._cache.move_to_end(index)
            return cached
        d = self._handle()
        lo, hi = int(self.atom_offset[index]), int(self.atom_offset[index + 1])
        zlo, zhi = int(self.zone_offset[index]), int(self.zone_offset[index + 1])
        atoms, zones = d["atoms"][lo:hi], d["zones"][zlo:zhi]
        value = (np.ascontiguousarray(atoms["xyz_A"]), np.ascontiguousarray(atoms["atomic_number"]),
                 np.ascontiguousarray(atoms["occupancy"]), np.ascontiguousarray(zones["center_A"]),
                 np.ascontiguousarray(zones["direction_mask"]))
        size = sum(v.nbytes for v in value)
        if size <= self.cache_bytes_max:
            self._cache[index] = value
            self._cache_bytes += size
            while self._cache_bytes > self.cache_bytes_max:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= sum(v.nbytes for v in old)
        return value

    def read_atoms(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Atoms of structure ``index``: xyz_A (N, 3) float32, atomic_number (N,) uint8, occupancy (N,) float32."""
        return self.read_structure(index)[:3]

    def read_zones(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Zones of structure ``index``: center_A (Z, 3) float32, direction_mask (Z,) uint64."""
        return self.read_structure(index)[3:]

    def read_sequences(self) -> list[list[str]]:
        """Chain sequences of every structure (one list per structure)."""
        self._handle()
        f = self._file
        flat = f["chains/sequence"].asstr()[...].astype(str) if f["chains/sequence"].shape[0] else np.array([], str)
        return [list(flat[self.chain_offset[i]:self.chain_offset[i + 1]]) for i in range(len(self))]
