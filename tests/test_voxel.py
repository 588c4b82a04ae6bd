"""The voxelizer against a slow, obviously correct reference, and its symmetry properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lba_cli.config import GridConfig
from lba_cli.voxel import (
    axis_angle_rotation,
    make_channel_lookup,
    random_rotation,
    voxel_centers_A,
    voxelize,
    voxelize_batch,
)
from lba_cli.voxel.sphere_tables import HALF_OCTANT_TABLE_NODES, octant_fraction_table, quadrant_fraction_table

CARBON = 6


def reference_grid(xyz_A: np.ndarray, grid: GridConfig, samples: int = 160) -> np.ndarray:
    """Occupancy of one channel by brute force, independent of the fast path.

    For each atom and each voxel near it, the sphere's volume inside the voxel is the
    integral over the voxel's (y, z) face of the chord length of the sphere along x clipped
    to the voxel's x range: exact along x, a midpoint rule with ``samples``^2 points in
    (y, z). Divided by the sphere's volume, that is the atom's fraction in the voxel.

    Returns:
        float64 array of shape (L, L, L).
    """
    size, res, r = grid.box_size_voxels, grid.resolution_A, grid.radius_A
    edges = (np.arange(size + 1) - size / 2) * res
    out = np.zeros((size,) * 3)
    offsets = (np.arange(samples) + 0.5) / samples * res
    sphere = 4.0 / 3.0 * math.pi * r**3
    for cx, cy, cz in xyz_A:
        ranges = []
        for c in (cx, cy, cz):
            lo = max(int(np.floor((c - r) / res + size / 2)), 0)
            hi = min(int(np.floor((c + r) / res + size / 2)), size - 1)
            ranges.append(range(lo, hi + 1))
        for j in ranges[1]:
            ys = edges[j] + offsets
            for k in ranges[2]:
                zs = edges[k] + offsets
                h2 = r * r - (ys[:, None] - cy) ** 2 - (zs[None, :] - cz) ** 2
                half = np.sqrt(np.clip(h2, 0.0, None))
                for i in ranges[0]:
                    chord = np.clip(np.minimum(edges[i + 1], cx + half) - np.maximum(edges[i], cx - half), 0.0, None)
                    chord[h2 <= 0] = 0.0
                    out[i, j, k] += chord.sum() * (res / samples) ** 2 / sphere
    return out


def carbons(xyz: np.ndarray, grid: GridConfig) -> np.ndarray:
    return voxelize(xyz, np.full(len(xyz), CARBON), np.zeros(len(xyz), bool), grid, np.zeros(3))[0]


def test_octant_table_known_values():
    table = octant_fraction_table()
    n = table.shape[0]
    mid = n // 2
    assert table[0, 0, 0] == 1.0
    assert table[-1].max() == 0.0 and table[:, -1].max() == 0.0 and table[:, :, -1].max() == 0.0
    assert table[mid, mid, mid] == pytest.approx(1 / 8, abs=1e-7)  # one octant of the ball
    assert table[mid, 0, 0] == pytest.approx(1 / 2, abs=1e-7)  # a half ball
    a = np.linspace(-1, 1, n)[3 * n // 4]  # a spherical cap: (1 - a)^2 (2 + a) / 4
    assert table[3 * n // 4, 0, 0] == pytest.approx((1 - a) ** 2 * (2 + a) / 4, abs=1e-7)
    # symmetric under permutations of the axes (x is integrated, y and z are closed-form)
    assert np.abs(table - table.transpose(1, 0, 2)).max() < 1e-7
    assert np.abs(table - table.transpose(0, 2, 1)).max() < 1e-12


def test_half_domain_tables_agree_with_the_full_table():
    full = octant_fraction_table()
    half = octant_fraction_table(HALF_OCTANT_TABLE_NODES, lower=0.0)
    n = full.shape[0]
    # the half table over [0, 1] has the full table's spacing: its nodes are the full table's upper half
    assert np.abs(half - full[n // 2:, n // 2:, n // 2:]).max() < 1e-7
    quadrant = quadrant_fraction_table()
    m = quadrant.shape[0]
    assert quadrant[0, 0] == pytest.approx(1 / 4, abs=1e-9)  # a quarter ball
    assert np.abs(quadrant[::(m - 1) // (n // 2), ::(m - 1) // (n // 2)] - full[0, n // 2:, n // 2:]).max() < 1e-7


GRIDS = [
    GridConfig(),
    GridConfig(box_size_voxels=8, resolution_A=0.5, radius_A=0.5),  # atoms span 3 voxels per axis
    GridConfig(box_size_voxels=9, resolution_A=1.0, radius_A=1.2),
]


@pytest.mark.parametrize("grid", GRIDS, ids=["default", "radius-eq-voxel", "radius-gt-voxel"])
def test_fast_path_matches_reference_at_random_subvoxel_offsets(grid):
    rng = np.random.default_rng(7)
    half = grid.box_size_A / 2
    # Random atoms, some straddling the box border, plus atoms exactly on voxel faces/corners.
    xyz = rng.uniform(-half - grid.radius_A, half + grid.radius_A, size=(25, 3))
    face = (np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]]) - 0.5 * (grid.box_size_voxels % 2)) * grid.resolution_A
    xyz = np.concatenate([xyz, face])
    fast = carbons(xyz, grid)
    slow = reference_grid(xyz, grid)
    assert np.abs(fast - slow).max() < 1e-3


def test_fast_path_matches_reference_on_a_real_complex(tiny_h5):
    from lba_cli.data.grids_h5 import read_grid_set

    data = read_grid_set(tiny_h5)
    grid = data.grid
    xyz, numbers, flags = data.atoms(0)
    local = xyz - data.center_A[0]
    near = np.abs(local).max(axis=1) < grid.box_size_A / 2 + grid.radius_A
    fast = voxelize(xyz[near], np.full(near.sum(), CARBON), np.zeros(near.sum(), bool), grid, data.center_A[0])[0]
    slow = reference_grid(local[near], grid, samples=100)
    assert near.sum() > 300
    assert np.abs(fast - slow).max() < 1e-3


def test_whole_atom_adds_exactly_one_at_every_offset():
    grid = GridConfig()
    rng = np.random.default_rng(3)
    xyz = rng.uniform(-9.0, 9.0, size=(500, 3))
    coords = torch.from_numpy(xyz[:, None, :].astype(np.float32))  # one atom per grid
    grids = voxelize_batch(coords, torch.zeros(500, 1, dtype=torch.int64), None, grid)
    assert torch.allclose(grids.sum(dim=(1, 2, 3, 4)), torch.ones(500), atol=1e-5)


def test_grid_sum_is_the_number_of_atoms_inside(tiny_h5):
    """On real complexes: the sum over element channels = atoms wholly inside + partial fractions."""
    import h5py

    from lba_cli.data.grids_h5 import read_grid_set

    data = read_grid_set(tiny_h5)
    grid = data.grid
    with h5py.File(tiny_h5, "r") as f:
        stored = f["grids"][...]
    half = grid.box_size_A / 2
    for row in range(len(data)):
        xyz, _, flags = data.atoms(row)
        local = np.abs(xyz - data.center_A[row])
        inside = (local.max(axis=1) <= half - grid.radius_A).sum()
        touching = (local.max(axis=1) < half + grid.radius_A).sum()
        element_sum = stored[row, :-1].sum()
        assert inside - 1e-3 <= element_sum <= touching + 1e-3
        # the protein channel holds exactly the protein atoms' share
        assert stored[row, -1].sum() <= element_sum
    # atoms strictly inside (with margin) must be counted exactly: pick a complex and shrink
    xyz, numbers, flags = data.atoms(0)
    local = xyz - data.center_A[0]
    keep = np.abs(local).max(axis=1) <= half - grid.radius_A
    G = voxelize(xyz[keep], numbers[keep], flags[keep], grid, data.center_A[0])
    assert G[:-1].sum() == pytest.approx(keep.sum(), abs=1e-3)
    assert G[-1].sum() == pytest.approx(flags[keep].sum(), abs=1e-3)


def test_whole_voxel_translation_shifts_the_grid():
    grid = GridConfig(box_size_voxels=15)
    rng = np.random.default_rng(5)
    xyz = rng.uniform(-4, 4, size=(60, 3))
    base = carbons(xyz, grid)
    for axis, steps in ((0, 2), (1, -3), (2, 1)):
        shift = np.zeros(3)
        shift[axis] = steps * grid.resolution_A
        moved = carbons(xyz + shift, grid)
        assert np.allclose(moved, np.roll(base, steps, axis=axis), atol=1e-5)


def test_90_degree_rotation_rotates_the_grid():
    grid = GridConfig(box_size_voxels=15)
    rng = np.random.default_rng(6)
    xyz = rng.uniform(-5, 5, size=(60, 3))
    base = carbons(xyz, grid)
    # (x, y, z) -> (-y, x, z): grid[i, j, k] moves to grid[L-1-j, i, k] = rot90 over axes (0, 1)
    rotated = carbons(np.stack([-xyz[:, 1], xyz[:, 0], xyz[:, 2]], axis=1), grid)
    assert np.allclose(rotated, np.rot90(base, k=1, axes=(0, 1)), atol=1e-5)


def test_box_frame_rotation_argument():
    grid = GridConfig(box_size_voxels=11)
    xyz = np.array([[2.0, 0.0, 0.0]])
    rotation = axis_angle_rotation(np.array([0, 0, 1.0]), math.pi / 2)  # box x axis = structure y axis
    g = voxelize(xyz, [CARBON], [False], grid, np.zeros(3), rotation)[0]
    centers = voxel_centers_A(11, 1.0)
    i, j, k = np.unravel_index(np.argmax(g), g.shape)
    assert (centers[i], centers[j], centers[k]) == (0.0, -2.0, 0.0)


CHANNEL_CASES = [
    ("carbon", 6, False, "C"),
    ("nitrogen", 7, False, "N"),
    ("oxygen", 8, False, "O"),
    ("phosphorus", 15, False, "P"),
    ("sulfur", 16, False, "S,SE"),
    ("selenium-with-sulfur", 34, False, "S,SE"),
    ("chlorine-other", 17, False, "*"),
    ("zinc-other", 30, False, "*"),
    ("unknown-other", 0, False, "*"),
    ("protein-flag", 6, True, "C"),
]


@pytest.mark.parametrize("name,number,protein,channel", CHANNEL_CASES, ids=[c[0] for c in CHANNEL_CASES])
def test_channel_assignment(name, number, protein, channel):
    grid = GridConfig()
    g = voxelize(np.zeros((1, 3)), [number], [protein], grid, np.zeros(3))
    sums = g.sum(axis=(1, 2, 3))
    expected = np.zeros(grid.num_channels)
    expected[grid.channel_names.index(channel)] = 1.0
    if protein:
        expected[-1] = 1.0
    assert np.allclose(sums, expected, atol=1e-5)


def test_channel_lookup_without_wildcard_drops_other_elements():
    lookup = make_channel_lookup(GridConfig(channels="C;N;O"))
    assert lookup[6] == 0 and lookup[8] == 2 and lookup[17] == -1


def test_unknown_channel_element_is_a_config_error():
    from lba_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown element"):
        make_channel_lookup(GridConfig(channels="C;Qq;*"))


def test_random_rotations_are_proper_and_uniform():
    rng = np.random.default_rng(0)
    mats = np.stack([random_rotation(rng) for _ in range(4000)])
    assert np.allclose(np.einsum("nij,nkj->nik", mats, mats), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(mats), 1.0)
    # Uniform on SO(3): the image of a fixed vector is uniform on the sphere (mean ~ 0),
    # and the trace has mean 0 (E[1 + 2 cos θ] = 0 under the Haar measure).
    assert np.abs(mats[:, :, 0].mean(axis=0)).max() < 0.05
    assert abs(np.trace(mats, axis1=1, axis2=2).mean()) < 0.05


def test_cpu_kernel_and_tensor_path_agree_on_real_complexes(tiny_h5):
    """The compiled CPU loop and the tensor path (used on CUDA) give the same grids."""
    from lba_cli.data.dataset import AffinityDataset, collate_atoms
    from lba_cli.data.grids_h5 import read_grid_set
    from lba_cli.voxel.occupancy import _voxelize_cpu, _voxelize_torch

    data = read_grid_set(tiny_h5)
    dataset = AffinityDataset(tiny_h5, "train", data.grid, seed=1, rotate=True, grid_set=data)
    batch = collate_atoms([dataset[i] for i in range(len(dataset))])
    args = (batch["xyz_A"], batch["channel"], batch["is_protein"], data.grid, None)
    compiled, tensor = _voxelize_cpu(*args), _voxelize_torch(*args)
    assert compiled.shape == tensor.shape == (len(dataset), 7, 21, 21, 21)
    assert torch.allclose(compiled, tensor, atol=2e-6)
    assert compiled[:, -1].sum() > 100  # the protein channel is filled on both paths


@pytest.mark.parametrize("symbol", ["CL", "Cl", "cl"])
def test_element_case_does_not_matter(symbol):
    from lba_cli.data.atoms import atomic_number

    assert atomic_number(symbol) == 17


def test_hydrogens_and_waters_are_dropped_unless_kept(shared):
    from lba_cli.data.atoms import read_structure_atoms

    pocket = shared / "pdbbind_demo" / "1a30" / "1a30_pocket.pdb"
    default = read_structure_atoms(pocket)
    with_h = read_structure_atoms(pocket, keep_hydrogens=True)
    with_water = read_structure_atoms(pocket, keep_water=True)
    assert 1 not in default["atomic_number"].to_list()
    assert 1 in with_h["atomic_number"].to_list() and with_h.height > default.height
    assert with_water.height > default.height  # the pocket file has crystal waters


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_voxelizer_matches_the_cpu_kernel(tiny_h5):
    from lba_cli.data.dataset import AffinityDataset, collate_atoms
    from lba_cli.data.grids_h5 import read_grid_set

    data = read_grid_set(tiny_h5)
    dataset = AffinityDataset(tiny_h5, "train", data.grid, seed=2, rotate=True, grid_set=data)
    batch = collate_atoms([dataset[i] for i in range(len(dataset))])
    cpu = voxelize_batch(batch["xyz_A"], batch["channel"], batch["is_protein"], data.grid)
    cuda = voxelize_batch(batch["xyz_A"].cuda(), batch["channel"].cuda(), batch["is_protein"].cuda(), data.grid)
    assert torch.allclose(cpu, cuda.cpu(), atol=1e-5)
