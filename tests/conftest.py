"""Shared fixtures: the real data in ../shared/data, isolated run directories, small datasets."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from lba_cli.train import NullReporter

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LBA_SHARED_DATA") or REPO.parent / "shared" / "data")
ATOM3D = SHARED / "atom3d_lba_demo" / "split-by-protein"
PDBBIND = SHARED / "pdbbind_demo"
PDBBIND_INDEX = SHARED / "pdbbind_index"
BM5 = SHARED / "proteins_bm5"
# Small real inputs that broke lba in real use, one folder per kind of fault (its README says how to run each).
FAULTS = Path(os.environ.get("LBA_SHARED_FAULTS") or REPO.parent / "shared" / "faults")

# A handful of real complexes for fast end-to-end tests: ATOM3D demo ids from each split.
TINY_IDS = ("1a30", "1bzc", "1e66", "1g2k", "1eby", "1o0h", "1bcu", "1c5z")
# Small, diverse pre-training structures from Docking Benchmark 5.
BM5_FILES = ("1A2K_r_u.pdb.gz", "1ACB_r_u.pdb.gz", "1AHW_r_u.pdb.gz", "1AK4_r_u.pdb.gz", "1AKJ_r_u.pdb.gz")


def _require_folder(folder: Path, what: str, variable: str) -> Path:
    """`folder` if it exists; otherwise skip the test, or fail it under CI (CI=true)."""
    if folder.is_dir():
        return folder
    message = f"{what} not found at {folder} (set {variable})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} -- under CI the {what} must be present")
    pytest.skip(message)


def require_shared() -> Path:
    """The shared data folder; skip without it, but fail under CI (CI=true)."""
    return _require_folder(SHARED, "real data", "LBA_SHARED_DATA")


def require_fault(name: str) -> Path:
    """One folder of ../shared/faults (read-only); skip without it, but fail under CI (CI=true)."""
    return _require_folder(FAULTS / name, "fault folder", "LBA_SHARED_FAULTS")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """No test touches real user dirs; no colour codes in captured output; seeded globals."""
    monkeypatch.setenv("LBA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LBA_HOME", str(tmp_path / "home"))
    for var in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    np.random.seed(0)


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_shared()


def make_pdbbind_subset(root: Path, ids: tuple[str, ...]) -> Path:
    """A PDBbind-layout folder with the given complexes (symlinked) and matching index files."""
    require_shared()
    root.mkdir(parents=True, exist_ok=True)
    (root / "index").mkdir(exist_ok=True)
    for complex_id in ids:
        (root / complex_id).symlink_to(PDBBIND / complex_id, target_is_directory=True)
    for name in ("INDEX_demo_PL_data.2021", "INDEX_demo_PL_name.2021"):
        lines = (PDBBIND / "index" / name).read_text().splitlines()
        kept = [l for l in lines if l.startswith("#") or l.split()[:1] and l.split()[0] in ids]
        (root / "index" / name).write_text("\n".join(kept) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_pdbbind(tmp_path_factory) -> Path:
    return make_pdbbind_subset(tmp_path_factory.mktemp("pdbbind") / "pdbbind_tiny", TINY_IDS)


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory, tiny_pdbbind) -> Path:
    """8 real complexes voxelized with a random split (at least one in val and test)."""
    from lba_cli.choices import SplitKind
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset

    path = tmp_path_factory.mktemp("h5") / "tiny.h5"
    build_dataset([tiny_pdbbind], path, GridConfig(), split=SplitKind.random, seed=0)
    return path


@pytest.fixture(scope="session")
def bm5_subset(tmp_path_factory) -> Path:
    require_shared()
    root = tmp_path_factory.mktemp("bm5")
    for name in BM5_FILES:
        (root / name).symlink_to(BM5 / name)
    return root


@pytest.fixture(scope="session")
def demo_h5s(tmp_path_factory) -> tuple[Path, Path]:
    """All 285 demo complexes voxelized from the ATOM3D LMDBs and from the PDBbind folders."""
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset

    require_shared()
    root = tmp_path_factory.mktemp("demo")
    build_dataset([ATOM3D], root / "atom3d.h5", GridConfig())
    build_dataset([PDBBIND], root / "pdbbind.h5", GridConfig())
    return root / "atom3d.h5", root / "pdbbind.h5"


# A model small enough to train in seconds on the coarse grid below (10 voxels of 2 Å).
TINY_MODEL = ("--arch", "resnet-bottleneck", "--width", "8", "--width", "16", "--epochs", "1", "--batch-size", "3",
              "--device", "cpu", "--quiet")
COARSE_GRID = {"box_size_voxels": 10, "resolution_A": 2.0}
# The same coarse grid and a tiny fine-tuning run, as command-line arguments.
TINY_GRID = ("--box-size", "10", "--resolution", "2")
TINY_TRAIN = ("--epochs", "1", "--batch-size", "4", "--width", "8", "--width", "16", "--device", "cpu", "-q")


class InterruptAt(NullReporter):
    """Sends SIGINT to this process at one (epoch, step), as a user pressing Ctrl-C would."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def step(self, *, epoch: int, step: int, **_) -> None:
        if (epoch, step) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="session")
def coarse_h5(tmp_path_factory, tiny_pdbbind) -> Path:
    """The 8 complexes of `tiny_pdbbind` on a coarse grid (fast tiny models), random split."""
    from lba_cli.choices import SplitKind
    from lba_cli.config import GridConfig
    from lba_cli.data.build import build_dataset

    path = tmp_path_factory.mktemp("coarse") / "coarse.h5"
    build_dataset([tiny_pdbbind], path, GridConfig(**COARSE_GRID), split=SplitKind.random, seed=0)
    return path


def write_block_pdb(path: Path, edge_A: float = 56.0, spacing_A: float = 2.63, seed: int = 0) -> Path:
    """A PDB file of carbon atoms on a jittered cubic lattice: a dense block (~55 atoms/nm³ at 2.63 Å)."""
    rng = np.random.default_rng(seed)
    axis = np.arange(0.0, edge_A, spacing_A)
    xyz = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)  # (X, Y, Z, 3) -> (N, 3)
    xyz = xyz + rng.uniform(-0.3, 0.3, xyz.shape)
    lines = [f"HETATM{(i % 99999) + 1:5d}  C   BLK A{(i % 9999) + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00"
             "           C" for i, (x, y, z) in enumerate(xyz)]
    path.write_text("\n".join(lines) + "\nEND\n")
    return path


@pytest.fixture(scope="session")
def block_corpus(tmp_path_factory) -> Path:
    """A corpus of two dense 56 Å blocks (ids blocka, blockb), zones for 21 Å views."""
    from lba_cli.corpus import build_corpus

    root = tmp_path_factory.mktemp("block")
    write_block_pdb(root / "blocka.pdb", seed=0)
    write_block_pdb(root / "blockb.pdb", seed=1)
    return build_corpus([root], root / "corpus.h5", workers=1).output


@pytest.fixture(scope="session")
def bm5_corpus(tmp_path_factory, bm5_subset) -> Path:
    """The corpus of the five BM5 receptors of `bm5_subset`."""
    from lba_cli.corpus import build_corpus

    return build_corpus([bm5_subset], tmp_path_factory.mktemp("bm5corpus") / "corpus.h5", workers=1).output
