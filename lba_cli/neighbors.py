"""Neighbor location: the self-supervised pre-training task.

A home view is a cubic box in a densely packed region of a structure; the neighbour view is
a box of the same size whose centre lies across one of the home box's 6 faces, at a centre
distance of ``L * resolution + padding``. The model sees both grids and predicts the face.
Both views share one uniformly random orientation of the structure; in training, the
padding gets uniform noise and the neighbour view is turned about its own centre by up to
``angle_deg``. Validation pairs are fixed (the same every epoch) and noise-free.

`FACE_DIRECTIONS` is the one table that gives labels their meaning, in the home view's box
frame (array axes X, Y, Z of a (C, X, Y, Z) grid): label k means the neighbour's centre is at
``home_center + distance * FACE_DIRECTIONS[k]`` in that frame.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lba_cli.config import GridConfig, NeighborConfig
from lba_cli.data.atoms import is_structure_file, read_structure_atoms
from lba_cli.errors import DataError, LbaError
from lba_cli.seeding import Stream, sample_rng
from lba_cli.voxel import axis_angle_rotation, make_channel_lookup, random_rotation

__all__ = [
    "FACE_DIRECTIONS",
    "FACE_NAMES",
    "Structure",
    "structure_id",
    "collect_structure_files",
    "load_structures",
    "split_structures",
    "sample_view_pair",
    "NeighborPairs",
]

FACE_DIRECTIONS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
FACE_NAMES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")
_MAX_TRIES = 64
_PDB_CODE = re.compile(r"^([0-9][0-9a-zA-Z]{3})(?:[_.\-]|$)")


@dataclass
class Structure:
    """Atoms of one pre-training structure.

    Attributes:
        name: structure id (lower-case PDB code when the file name starts with one).
        xyz_A: float32 array of shape (N, 3), Å.
        atomic_number: uint8 array of shape (N,).
    """

    name: str
    xyz_A: np.ndarray
    atomic_number: np.ndarray


def structure_id(path: Path) -> str:
    """``1A2K_r_u.pdb.gz`` -> ``1a2k``; other names -> the file name without extensions."""
    match = _PDB_CODE.match(path.name)
    return match.group(1).lower() if match else path.name.split(".")[0]


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
                        "expected: .pdb, .ent, .cif, .mmcif or .pdbqt files (gzip allowed), or an lba voxelize .h5")
    return files


def load_structures(
    paths: list[Path],
    grid: GridConfig,
    exclude_ids: frozenset[str] = frozenset(),
    on_file: Callable[[Path], None] | None = None,
) -> tuple[list[Structure], list[tuple[str, str]]]:
    """Read pre-training structures: structure files, folders of them, or `lba voxelize` files.

    From an `lba voxelize` file, the protein atoms of each complex are one structure.

    Args:
        paths: files or folders.
        grid: hydrogens and waters are dropped unless it keeps them.
        exclude_ids: structure ids (lower case) to leave out, e.g. downstream val/test proteins.
        on_file: called with each file as it is read (for progress).

    Returns:
        The structures, and (path, reason) for every file left out.

    Raises:
        DataError: when no structure remains.
    """
    from lba_cli.data.grids_h5 import read_grid_set

    structures: list[Structure] = []
    skipped: list[tuple[str, str]] = []
    matched: set[str] = set()
    h5_files = [Path(p) for p in paths if str(p).endswith((".h5", ".hdf5"))]
    other = [Path(p) for p in paths if not str(p).endswith((".h5", ".hdf5"))]
    for path in h5_files:
        data = read_grid_set(path)
        for row, complex_id in enumerate(data.ids):
            if complex_id.lower() in exclude_ids:
                matched.add(complex_id.lower())
                skipped.append((f"{path}#{complex_id}", "excluded by --exclude-ids"))
                continue
            xyz, numbers, flags = data.atoms(row)
            structures.append(Structure(str(complex_id), xyz[flags], numbers[flags]))
    for path in collect_structure_files(other) if other else []:
        if on_file is not None:
            on_file(path)
        sid = structure_id(path)
        names = {sid.lower(), path.name.split(".")[0].lower()}  # PDB code or file stem (1acb, 1acb_r_u)
        if names & exclude_ids:
            matched |= names & exclude_ids
            skipped.append((str(path), "excluded by --exclude-ids"))
            continue
        try:
            atoms = read_structure_atoms(path, keep_hydrogens=grid.keep_hydrogens, keep_water=grid.keep_water)
        except LbaError as error:
            skipped.append((str(path), str(error)))
            continue
        xyz = atoms.select("x_A", "y_A", "z_A").to_numpy().astype(np.float32)
        structures.append(Structure(sid, xyz, atoms["atomic_number"].to_numpy()))
    unmatched = sorted(exclude_ids - matched)
    if unmatched:
        skipped.append(("--exclude-ids", f"{len(unmatched)} of {len(exclude_ids)} ids match no structure "
                                         f"(e.g. {', '.join(unmatched[:5])}); ids are lower-case PDB codes or file "
                                         "stems"))
    if not structures:
        raise DataError("no pre-training structure could be read\n" +
                        "\n".join(f"{p}: {r}" for p, r in skipped[:10]))
    return structures, skipped


def split_structures(structures: list[Structure], val_fraction: float, seed: int) -> tuple[list[Structure],
                                                                                           list[Structure]]:
    """Hold out whole structures (all files of one id together) for validation.

    Returns:
        (train, val), each non-empty when there are at least two ids.
    """
    names = sorted({s.name for s in structures})
    rng = sample_rng(seed, Stream.SPLIT, 0, 0)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    num_val = min(max(1, round(val_fraction * len(names))), len(names) - 1) if len(names) > 1 else 0
    val_names = set(shuffled[:num_val])
    train = [s for s in structures if s.name not in val_names]
    val = [s for s in structures if s.name in val_names] or train
    return train, val


def _count_within(tree: Any, point: np.ndarray, radius: float) -> int:
    return int(tree.query_ball_point(point, radius, return_length=True))


def sample_view_pair(
    structure: Structure,
    tree: Any,
    rng: np.random.Generator,
    grid: GridConfig,
    *,
    padding_A: float,
    angle_deg: float,
    min_density_per_nm3: float,
) -> dict[str, Any]:
    """Draw one home/neighbour pair from a structure.

    The home centre is a random atom position jittered by up to half a voxel; it and the
    neighbour centre must both have at least ``min_density_per_nm3`` atoms per nm³ within
    half a box edge (the sphere inscribed in a view). Each failed try redraws the centre and
    the orientation; after `_MAX_TRIES` the densest pair drawn is used (``density_ok`` False).

    Args:
        structure: the atoms.
        tree: a ``scipy.spatial.cKDTree`` over ``structure.xyz_A``.
        rng: this sample's generator.
        grid: view size, resolution and radius.
        padding_A: gap between the two boxes, Å.
        angle_deg: the neighbour view is turned about its own centre by this angle, around
            a uniformly random axis.
        min_density_per_nm3: density threshold.

    Returns:
        ``home_xyz_A``, ``neighbor_xyz_A`` (N, 3) float32 in each view's box frame,
        ``home_atomic_number``, ``neighbor_atomic_number`` (N,) uint8, ``label`` (int, a row
        of `FACE_DIRECTIONS`), ``density_ok`` (bool).
    """
    half = grid.box_size_A / 2
    needed = min_density_per_nm3 / 1000.0 * (4.0 / 3.0 * math.pi * half**3)
    distance = grid.box_size_A + padding_A
    label = int(rng.integers(len(FACE_DIRECTIONS)))
    best = None
    for _ in range(_MAX_TRIES):
        # Each try redraws the orientation and the home centre; the label stays, so labels
        # remain uniform whatever the structure's shape.
        rotation = random_rotation(rng)
        atom = structure.xyz_A[rng.integers(len(structure.xyz_A))].astype(np.float64)
        home = atom + rng.uniform(-0.5, 0.5, 3) * grid.resolution_A
        neighbor = home + distance * (rotation @ FACE_DIRECTIONS[label])  # box frame -> structure frame
        density = min(_count_within(tree, home, half), _count_within(tree, neighbor, half))
        if best is None or density > best[0]:
            best = (density, home, neighbor, rotation)
        if density >= needed:
            break
    density, home, neighbor, rotation = best
    neighbor_rotation = rotation
    if angle_deg > 0:
        turn = axis_angle_rotation(rng.standard_normal(3), math.radians(angle_deg))
        neighbor_rotation = turn @ rotation  # turn the neighbour box about its own centre
    views = {}
    for name, center, frame in (("home", home, rotation), ("neighbor", neighbor, neighbor_rotation)):
        index = np.asarray(tree.query_ball_point(center, grid.reach_A), dtype=np.int64)
        views[f"{name}_xyz_A"] = ((structure.xyz_A[index] - center) @ frame).astype(np.float32)
        views[f"{name}_atomic_number"] = structure.atomic_number[index]
    return {**views, "label": label, "density_ok": bool(density >= needed)}


class NeighborPairs(Dataset):
    """An epoch of neighbor-location view pairs.

    Args:
        structures: the structures to draw from, each with probability proportional to its
            number of atoms.
        grid: view settings.
        task: padding, angle, sizes, density and curriculum.
        seed: run seed.
        train: training pairs (new every epoch, with noise) or validation pairs (fixed,
            noise-free: padding ``pad_min_A``, no turn).
    """

    def __init__(self, structures: list[Structure], grid: GridConfig, task: NeighborConfig, seed: int,
                 train: bool) -> None:
        self.structures = structures
        self.grid = grid
        self.task = task
        self.seed = seed
        self.train = train
        self.epoch = 0
        self._lookup = make_channel_lookup(grid)
        self._trees: dict[int, Any] = {}
        sizes = np.array([len(s.xyz_A) for s in structures], dtype=np.float64)
        self._cumulative = np.cumsum(sizes) / sizes.sum()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_trees"] = {}  # rebuilt lazily in each worker
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose pairs `__getitem__` draws (ignored for validation)."""
        self.epoch = epoch

    def noise_scale(self) -> float:
        """1, or the curriculum's ramp from 0 to 1 over ``curriculum_epochs``."""
        if not self.task.curriculum_epochs:
            return 1.0
        return min(1.0, self.epoch / self.task.curriculum_epochs)

    def __len__(self) -> int:
        return self.task.epoch_size if self.train else self.task.val_size

    def _tree(self, index: int) -> Any:
        tree = self._trees.get(index)
        if tree is None:
            from scipy.spatial import cKDTree

            tree = self._trees[index] = cKDTree(self.structures[index].xyz_A)
        return tree

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.train:
            rng = sample_rng(self.seed, Stream.TRAIN, self.epoch, index)
        else:
            rng = sample_rng(self.seed, Stream.VAL, 0, index)
        # A structure is drawn with probability proportional to its atom count, so that
        # every atom is equally likely to seed a home view.
        which = min(int(np.searchsorted(self._cumulative, rng.random(), side="right")), len(self.structures) - 1)
        task = self.task
        scale = self.noise_scale() if self.train else 0.0
        padding = task.pad_min_A + scale * rng.uniform(0.0, task.pad_max_A - task.pad_min_A)
        angle = scale * rng.uniform(0.0, task.angle_deg)
        pair = sample_view_pair(self.structures[which], self._tree(which), rng, self.grid, padding_A=padding,
                                angle_deg=angle, min_density_per_nm3=task.min_density_per_nm3)
        item: dict[str, Any] = {"label": pair["label"], "index": index, "density_ok": pair["density_ok"]}
        for view in ("home_", "neighbor_"):
            xyz = pair[view + "xyz_A"]
            item[view + "xyz_A"] = xyz
            item[view + "channel"] = self._lookup[pair[view + "atomic_number"]]
            item[view + "is_protein"] = np.ones(len(xyz), dtype=bool)
        return item
