"""Atoms -> voxel grids: exact hard-sphere occupancy, batched, on any torch device.

Grid geometry. A grid has L voxels per side of edge ``resolution_A``; voxel
(i, j, k) is centred at ``((i, j, k) - (L - 1) / 2) * resolution_A`` from the box centre, and
arrays are laid out ``(C, X, Y, Z)`` (``(B, C, X, Y, Z)`` for batches). Coordinates given to
the voxelizer are already in the box frame: ``local = (xyz - center) @ rotation``.

Fill rule. Each atom is a hard sphere of radius ``radius_A``; it adds its weight (1 by
default) times the exact fraction of its volume that lies inside each voxel it overlaps. So
a grid sums to the number of atoms inside it, and an atom wholly inside the box adds exactly 1.

How the fraction is computed. Let V(a, b, c) be the fraction of a unit ball's volume in the
octant {x > a, y > b, z > c} (tabulated in `lba_cli.voxel.sphere_tables`). The fraction of a
sphere inside a box is the inclusion-exclusion sum of V over the box's 8 corners
(coordinates relative to the centre, in radii, clamped to [-1, 1]); the fractions of one
atom are differences of the same table values, so they telescope to exactly 1.

The default atom (2 r <= resolution) is cut by at most one voxel face per axis. Its 8
fractions then follow from one octant lookup V(u), three quadrant lookups Q and three
closed-form caps, at face offsets u mirrored to [0, 1] (mirrored atoms give exactly
mirrored grids); the error is below 1e-4 of an atom per voxel. On the CPU that arithmetic
runs as a compiled loop (`lba_cli.voxel._cpu_kernel`, Numba); on other devices, and for larger
radii, as tensor operations over the whole batch.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from lba_cli.config import GridConfig
from lba_cli.elements import element_number
from lba_cli.errors import ConfigError
from lba_cli.voxel.sphere_tables import (
    HALF_OCTANT_TABLE_NODES,
    OCTANT_TABLE_NODES,
    QUADRANT_TABLE_NODES,
    octant_fraction_table,
    quadrant_fraction_table,
)

__all__ = [
    "make_channel_lookup",
    "voxelize_batch",
    "voxelize",
    "voxel_centers_A",
]

_MAX_ATOMIC_NUMBER = 118


@functools.lru_cache(maxsize=8)
def _octant_table_on(device: torch.device, lower: float, num_nodes: int) -> torch.Tensor:
    """The octant table over [lower, 1]^3, flat float32 on ``device``."""
    return torch.as_tensor(octant_fraction_table(num_nodes, lower), dtype=torch.float32, device=device).reshape(-1)


@functools.lru_cache(maxsize=8)
def _quadrant_table_on(device: torch.device) -> torch.Tensor:
    """The quadrant table over [0, 1]^2, flat float32 on ``device``."""
    return torch.as_tensor(quadrant_fraction_table(), dtype=torch.float32, device=device).reshape(-1)


def make_channel_lookup(grid: GridConfig) -> np.ndarray:
    """Map atomic numbers to element-group channels.

    Args:
        grid: its ``channels`` group element symbols (already upper-case); ``*`` takes
            every element not named, including unknown ones (atomic number 0).

    Returns:
        int64 array of shape (119,): the channel of each atomic number 0..118, or -1 for
        elements in no channel (possible only without a ``*`` group).

    Raises:
        ConfigError: if a group names something that is not an element symbol.
    """
    lookup = np.full(_MAX_ATOMIC_NUMBER + 1, -1, dtype=np.int64)
    wildcard = None
    for index, group in enumerate(grid.channels):
        for symbol in group:
            if symbol == "*":
                wildcard = index
                continue
            number = element_number(symbol)
            if number == 0:
                raise ConfigError(f"unknown element in channels: {symbol!r}\n"
                                  "expected: element symbols such as C, N, CL, SE, or * for the rest")
            lookup[number] = index
    if wildcard is not None:
        lookup[lookup < 0] = wildcard
    return lookup


def voxel_centers_A(box_size_voxels: int, resolution_A: float) -> np.ndarray:
    """Voxel centre coordinates along one axis of the box frame.

    Returns:
        float64 array of shape (L,): ``(i - (L - 1) / 2) * resolution_A`` for i in 0..L-1, Å.
    """
    return (np.arange(box_size_voxels) - (box_size_voxels - 1) / 2) * resolution_A


def voxelize_batch(
    coords_A: torch.Tensor,
    channel_index: torch.Tensor,
    is_protein: torch.Tensor | None,
    grid: GridConfig,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Voxelize a batch of atom sets, each already in its box frame.

    Runs on the device of ``coords_A``: on the CPU through a compiled loop over atoms (Numba),
    elsewhere (CUDA) as tensor operations over all atoms of the batch at once.

    Args:
        coords_A: float tensor of shape (B, N, 3): atom centres relative to the box centre, in
            the box's axes, Å. Padding atoms may hold anything finite.
        channel_index: int64 tensor of shape (B, N): each atom's element-group channel
            (`make_channel_lookup`), or -1 for padding and for atoms in no channel.
        is_protein: bool tensor of shape (B, N), or None. When ``grid.protein_channel``,
            protein atoms also fill the last channel.
        grid: box size, resolution, atom radius and channels.
        weights: float tensor of shape (B, N) (default 1): what each atom adds, e.g. occupancy.

    Returns:
        float32 tensor of shape (B, C, L, L, L), C = ``grid.num_channels``: per voxel, the sum
        over atoms of weight x the fraction of the atom's sphere inside the voxel.
    """
    if coords_A.device.type == "cpu" and 2 * grid.radius_A <= grid.resolution_A and _cpu_kernel() is not None:
        return _voxelize_cpu(coords_A, channel_index, is_protein, grid, weights)
    return _voxelize_torch(coords_A, channel_index, is_protein, grid, weights)


def _voxelize_torch(coords_A: torch.Tensor, channel_index: torch.Tensor, is_protein: torch.Tensor | None,
                    grid: GridConfig, weights: torch.Tensor | None) -> torch.Tensor:
    """`voxelize_batch` as tensor operations on any device; same arguments and result."""
    device = coords_A.device
    batch, num_atoms, _ = coords_A.shape
    size, res, radius = grid.box_size_voxels, grid.resolution_A, grid.radius_A
    num_channels = grid.num_channels
    volume = size**3
    out = torch.zeros(batch * num_channels * volume, dtype=torch.float32, device=device)

    # Keep real atoms that can reach the box; everything after this is per kept atom.
    flat_xyz = coords_A.reshape(-1, 3)
    flat_channel = channel_index.reshape(-1)
    reach = size * res / 2 + radius
    keep = (flat_channel >= 0) & (flat_xyz.abs().amax(dim=1) < reach)
    atom = keep.nonzero().squeeze(1)  # (M,) indices into the flattened (B * N) atoms
    if atom.numel() == 0:
        return out.view(batch, num_channels, size, size, size)
    xyz = flat_xyz.index_select(0, atom).to(torch.float32)  # (M, 3)
    channel = flat_channel.index_select(0, atom)
    batch_index = torch.div(atom, num_atoms, rounding_mode="floor")

    # Atoms along the last axis from here on, so that every per-axis slice is contiguous.
    grid_pos = (xyz * (1.0 / res) + size / 2).t().contiguous()  # (M, 3) -> (3, M), voxel units from the box corner
    if 2 * radius <= res:
        frac, voxel = _fractions_two_per_axis(grid_pos, radius / res)
    else:
        frac, voxel = _fractions_any_radius(grid_pos, radius / res)
    # Voxels outside the box get nothing: zero their share and clamp their index.
    inside = ((voxel >= 0) & (voxel < size)).to(frac.dtype)  # (3, K, M)
    values = frac * (inside[0, :, None, None] * inside[1, None, :, None] * inside[2, None, None, :])  # (K, K, K, M)
    if weights is not None:
        values = values * weights.reshape(-1).index_select(0, atom).to(torch.float32)
    voxel = voxel.clamp(0, size - 1)
    # Flat output index = ((b * C + channel) * L + i) * L + j) * L + k, built axis by axis.
    start = (batch_index * num_channels + channel) * volume  # (M,)
    x_part = voxel[0] * (size * size) + start  # (K, M)
    target = (x_part[:, None, None] + voxel[1, None, :, None] * size) + voxel[2, None, None, :]  # (K, K, K, M)
    out.scatter_add_(0, target.reshape(-1), values.reshape(-1))
    if grid.protein_channel and is_protein is not None:
        protein = is_protein.reshape(-1).index_select(0, atom)
        if bool(protein.any()):
            # Every kept atom scatters again into the protein channel, ligand atoms with weight 0:
            # cheaper than selecting the protein atoms.
            to_protein = (num_channels - 1 - channel) * volume  # (M,)
            out.scatter_add_(0, (target + to_protein).reshape(-1), (values * protein.to(values.dtype)).reshape(-1))
    return out.view(batch, num_channels, size, size, size)


@functools.lru_cache(maxsize=1)
def _cpu_kernel():
    """The compiled CPU kernel, or None when Numba is unavailable (the torch path is used)."""
    try:
        from lba_cli.voxel._cpu_kernel import voxelize_into
    except ImportError:  # pragma: no cover - numba is a dependency; this keeps lba usable without it
        return None
    return voxelize_into


def _voxelize_cpu(coords_A: torch.Tensor, channel_index: torch.Tensor, is_protein: torch.Tensor | None,
                  grid: GridConfig, weights: torch.Tensor | None) -> torch.Tensor:
    """`voxelize_batch` on the CPU through the compiled kernel; same arguments and result."""
    batch, num_atoms, _ = coords_A.shape
    size = grid.box_size_voxels
    out = torch.empty(batch, grid.num_channels, size, size, size, dtype=torch.float32)  # the kernel zeroes it
    octant, quadrant = _float32_tables()
    flags = is_protein.numpy() if is_protein is not None else np.zeros((batch, num_atoms), dtype=bool)
    w = weights.to(torch.float32).numpy() if weights is not None else np.ones((batch, num_atoms), np.float32)
    _cpu_kernel()(coords_A.to(torch.float32).contiguous().numpy(), channel_index.to(torch.int64).contiguous().numpy(),
                  np.ascontiguousarray(flags), np.ascontiguousarray(w), float(grid.resolution_A), float(grid.radius_A),
                  octant, quadrant, bool(grid.protein_channel and is_protein is not None), out.numpy())
    return out


@functools.lru_cache(maxsize=1)
def _float32_tables() -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(octant_fraction_table(HALF_OCTANT_TABLE_NODES, 0.0), dtype=np.float32),
            np.ascontiguousarray(quadrant_fraction_table(), dtype=np.float32))


def _fractions_two_per_axis(grid_pos: torch.Tensor, radius_voxels: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel fractions of atoms that touch at most 2 voxels per axis (2r <= resolution).

    Along each axis the sphere is cut by one voxel face at most, at offset u (in radii,
    clamped to [-1, 1]) from its centre. Each axis with u < 0 is mirrored first, so every
    lookup is at u >= 0 (the tables need only [0, 1], and mirrored atoms give mirrored grids
    exactly). With V the octant table, Q the quadrant table and G(a) = (1 - a)^2 (2 + a) / 4
    the cap above x = a, the 8 fractions follow by inclusion-exclusion, e.g.
    f(+,+,+) = V(u), f(-,+,+) = Q(u_y, u_z) - V(u); they sum to 1 exactly.

    Args:
        grid_pos: float32 tensor of shape (3, M): atom centres in voxel units from the box corner.
        radius_voxels: atom radius in voxels (<= 0.5).

    Returns:
        frac: float32 tensor of shape (2, 2, 2, M), indexed by lower/upper voxel per axis.
        voxel: int64 tensor of shape (3, 2, M): the lower and upper voxel index per axis.
    """
    device = grid_pos.device
    lower = torch.floor(grid_pos - radius_voxels)  # (3, M)
    u = ((lower + 1.0 - grid_pos) * (1.0 / radius_voxels)).clamp_(-1.0, 1.0)  # offset of the face between them
    mirrored = (u < 0).to(torch.int64)
    u = u.abs()
    v = _trilinear(_octant_table_on(device, 0.0, HALF_OCTANT_TABLE_NODES), HALF_OCTANT_TABLE_NODES, u, 0.0)  # (M,)
    pairs = torch.stack([u[_PAIR_FIRST], u[_PAIR_SECOND]])  # (2, 3, M): the (x, y), (x, z), (y, z) pairs
    q_xy, q_xz, q_yz = _bilinear(_quadrant_table_on(device), QUADRANT_TABLE_NODES, pairs, 0.0)  # (3, M)
    gx, gy, gz = (1.0 - u) ** 2 * (2.0 + u) * 0.25  # caps above each face, (M,) each
    frac = torch.stack([
        1.0 - gx - gy - gz + q_xy + q_xz + q_yz - v,  # (lower, lower, lower)
        gz - q_xz - q_yz + v,                         # (lower, lower, upper)
        gy - q_xy - q_yz + v,                         # (lower, upper, lower)
        q_yz - v,                                     # (lower, upper, upper)
        gx - q_xy - q_xz + v,                         # (upper, lower, lower)
        q_xz - v,                                     # (upper, lower, upper)
        q_xy - v,                                     # (upper, upper, lower)
        v,                                            # (upper, upper, upper)
    ]).view(2, 2, 2, -1)  # (8, M) -> (2, 2, 2, M), lower/upper in the mirrored frame
    # Undo the mirroring on the indices: on a mirrored axis, "upper" is the lower voxel.
    side = torch.arange(2, device=device)[None, :, None]
    voxel = lower.to(torch.int64)[:, None, :] + (side ^ mirrored[:, None, :])  # (3, 2, M)
    return frac, voxel


_PAIR_FIRST = [0, 0, 1]
_PAIR_SECOND = [1, 2, 2]


def _fractions_any_radius(grid_pos: torch.Tensor, radius_voxels: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel fractions for any radius: V at every corner of the K^3 voxels, then differences.

    Args, returns: see `_fractions_two_per_axis`, with K = ceil(2r / res) + 1 voxels per axis
    in place of 2.
    """
    span = int(math.ceil(2 * radius_voxels - 1e-9)) + 1
    first_voxel = torch.floor(grid_pos - radius_voxels)  # (3, M)
    offsets = torch.arange(span + 1, device=grid_pos.device, dtype=torch.float32)[None, :, None]  # faces 0..K
    t = ((first_voxel[:, None, :] + offsets - grid_pos[:, None, :]) / radius_voxels).clamp_(-1.0, 1.0)  # (3, K+1, M)
    corner_v = _interpolate_octant(t.permute(2, 0, 1), grid_pos.device).permute(1, 2, 3, 0)  # (K+1, K+1, K+1, M)
    frac = corner_v[:-1] - corner_v[1:]
    frac = frac[:, :-1] - frac[:, 1:]
    frac = frac[:, :, :-1] - frac[:, :, 1:]  # (K, K, K, M)
    voxel = first_voxel.to(torch.int64)[:, None, :] + torch.arange(span, device=grid_pos.device)[None, :, None]
    return frac.contiguous(), voxel  # voxel: (3, K, M)


def _lower_and_weight(t: torch.Tensor, n: int, lower: float) -> tuple[torch.Tensor, torch.Tensor]:
    pos = (t - lower) * ((n - 1) / (1.0 - lower))
    index = pos.floor().clamp_(0, n - 2)
    return index.to(torch.int64), pos - index


def _bilinear(table: torch.Tensor, n: int, points: torch.Tensor, lower: float) -> torch.Tensor:
    """Bilinear interpolation of a flat (n * n) table over [lower, 1]^2.

    Args:
        points: float tensor of shape (2, ...): first and second coordinates.

    Returns:
        float tensor of shape (...).
    """
    index, weight = _lower_and_weight(points, n, lower)  # (2, ...) each
    base = index[0] * n + index[1]
    corners = torch.stack([base, base + 1, base + n, base + n + 1])  # (4, ...)
    values = table.index_select(0, corners.reshape(-1)).view(corners.shape)
    top = values[0] + (values[1] - values[0]) * weight[1]
    bottom = values[2] + (values[3] - values[2]) * weight[1]
    return top + (bottom - top) * weight[0]


def _trilinear(table: torch.Tensor, n: int, u: torch.Tensor, lower: float) -> torch.Tensor:
    """Trilinear interpolation of a flat (n^3) table over [lower, 1]^3 at points u of shape (3, M)."""
    index, weight = _lower_and_weight(u, n, lower)  # (3, M) each
    base = (index[0] * n + index[1]) * n + index[2]
    offsets = torch.tensor([0, 1, n, n + 1, n * n, n * n + 1, n * n + n, n * n + n + 1], device=u.device)
    values = table.index_select(0, (offsets[:, None] + base).reshape(-1)).view(2, 2, 2, -1)  # (x, y, z, M)
    along_z = values[:, :, 0] + (values[:, :, 1] - values[:, :, 0]) * weight[2]  # (2, 2, M)
    along_y = along_z[:, 0] + (along_z[:, 1] - along_z[:, 0]) * weight[1]  # (2, M)
    return along_y[0] + (along_y[1] - along_y[0]) * weight[0]


def _interpolate_octant(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """V at every combination of one plane offset per axis, by trilinear interpolation.

    Args:
        t: float32 tensor of shape (M, 3, P): plane offsets in radii, in [-1, 1].

    Returns:
        float32 tensor of shape (M, P, P, P): V(t[:, 0, i], t[:, 1, j], t[:, 2, k]).
    """
    table = _octant_table_on(device, -1.0, OCTANT_TABLE_NODES)
    n = OCTANT_TABLE_NODES
    lower, w1 = _lower_and_weight(t, n, -1.0)  # (M, 3, P) each
    w0 = 1.0 - w1
    ix, iy, iz = lower[:, 0], lower[:, 1], lower[:, 2]  # (M, P)
    result = torch.zeros(t.shape[0], t.shape[2], t.shape[2], t.shape[2], device=device)
    for dx, wx in ((0, w0[:, 0]), (1, w1[:, 0])):
        for dy, wy in ((0, w0[:, 1]), (1, w1[:, 1])):
            for dz, wz in ((0, w0[:, 2]), (1, w1[:, 2])):
                index = (((ix + dx)[:, :, None, None] * n + (iy + dy)[:, None, :, None]) * n
                         + (iz + dz)[:, None, None, :])
                weight = wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]
                result += weight * table[index]
    return result


def voxelize(
    coords_A: np.ndarray,
    atomic_numbers: np.ndarray,
    is_protein: np.ndarray,
    grid: GridConfig,
    center_A: np.ndarray,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Voxelize one atom set on the CPU; a convenience over `voxelize_batch`.

    Args:
        coords_A: float array of shape (N, 3), Å, in the structure's frame.
        atomic_numbers: integer array of shape (N,); 0 for unknown elements.
        is_protein: bool array of shape (N,).
        grid: see `voxelize_batch`.
        center_A: float array of shape (3,): the box centre, Å.
        rotation: float array of shape (3, 3) (default identity): the box axes are its columns,
            so ``local = (coords_A - center_A) @ rotation``.

    Returns:
        float32 array of shape (C, L, L, L).
    """
    local = np.asarray(coords_A, dtype=np.float64) - np.asarray(center_A, dtype=np.float64)
    if rotation is not None:
        local = local @ rotation
    channel = make_channel_lookup(grid)[np.asarray(atomic_numbers, dtype=np.int64)]
    grids = voxelize_batch(
        torch.from_numpy(local.astype(np.float32))[None],
        torch.from_numpy(channel)[None],
        torch.from_numpy(np.asarray(is_protein, dtype=bool))[None],
        grid,
    )
    return grids[0].numpy()
