"""The CPU kernel of the voxelizer, compiled with Numba.

Same arithmetic as `lba_cli.voxel.occupancy._fractions_two_per_axis` (see there and the
module docstring of `lba_cli.voxel.occupancy`), written as one loop over atoms so that each atom's 8
fractions are computed in registers and added straight into its grid. Grids of a batch are
filled in parallel (one grid per task, so no two threads write the same voxel). Used for
CPU tensors when every atom touches at most 2 voxels per axis (2 r <= resolution); the
torch path serves CUDA and larger radii. Compiled on first use and cached on disk by Numba.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["voxelize_into"]


@numba.njit(cache=True, inline="always")
def _lower_weight(t, n):
    pos = t * (n - 1)
    index = min(int(pos), n - 2)
    return index, pos - index


@numba.njit(cache=True, inline="always")
def _bilinear(table, a, b):
    n = table.shape[0]
    ia, wa = _lower_weight(a, n)
    ib, wb = _lower_weight(b, n)
    top = table[ia, ib] + (table[ia, ib + 1] - table[ia, ib]) * wb
    bottom = table[ia + 1, ib] + (table[ia + 1, ib + 1] - table[ia + 1, ib]) * wb
    return top + (bottom - top) * wa


@numba.njit(cache=True, inline="always")
def _trilinear(table, a, b, c):
    n = table.shape[0]
    ia, wa = _lower_weight(a, n)
    ib, wb = _lower_weight(b, n)
    ic, wc = _lower_weight(c, n)
    v00 = table[ia, ib, ic] + (table[ia, ib, ic + 1] - table[ia, ib, ic]) * wc
    v01 = table[ia, ib + 1, ic] + (table[ia, ib + 1, ic + 1] - table[ia, ib + 1, ic]) * wc
    v10 = table[ia + 1, ib, ic] + (table[ia + 1, ib, ic + 1] - table[ia + 1, ib, ic]) * wc
    v11 = table[ia + 1, ib + 1, ic] + (table[ia + 1, ib + 1, ic + 1] - table[ia + 1, ib + 1, ic]) * wc
    v0 = v00 + (v01 - v00) * wb
    v1 = v10 + (v11 - v10) * wb
    return v0 + (v1 - v0) * wa


@numba.njit(cache=True, parallel=True, nogil=True)
def voxelize_into(xyz, channel, is_protein, weights, resolution, radius, octant, quadrant, protein_channel, out):
    """Fill ``out`` with every atom's voxel fractions.

    Args:
        xyz: float32 (B, N, 3), box frame, Å.
        channel: int64 (B, N), -1 to skip.
        is_protein: bool (B, N).
        weights: float32 (B, N).
        resolution, radius: Å, with 2 * radius <= resolution.
        octant: float32 (n, n, n) table of V over [0, 1]^3.
        quadrant: float32 (m, m) table of Q over [0, 1]^2.
        protein_channel: add protein atoms to the last channel too.
        out: float32 (B, C, L, L, L); zeroed here, one grid at a time by the thread that
            fills it, so the grid is still in cache when its atoms are added.
    """
    batch, num_atoms = channel.shape
    num_channels = out.shape[1]
    size = out.shape[2]
    radius_voxels = radius / resolution
    inverse_radius = 1.0 / radius_voxels
    reach = size * resolution / 2 + radius
    for b in numba.prange(batch):
        out[b] = 0.0
        low = np.empty(3, np.int64)
        mirror = np.empty(3, np.int64)
        u = np.empty(3, np.float32)
        frac = np.empty(8, np.float32)
        for a in range(num_atoms):
            ch = channel[b, a]
            if ch < 0:
                continue
            if abs(xyz[b, a, 0]) >= reach or abs(xyz[b, a, 1]) >= reach or abs(xyz[b, a, 2]) >= reach:
                continue
            for axis in range(3):
                pos = xyz[b, a, axis] / resolution + size / 2
                first = math.floor(pos - radius_voxels)
                offset = (first + 1.0 - pos) * inverse_radius
                offset = min(max(offset, -1.0), 1.0)
                low[axis] = int(first)
                mirror[axis] = 1 if offset < 0 else 0
                u[axis] = abs(offset)
            ux, uy, uz = u[0], u[1], u[2]
            v = _trilinear(octant, ux, uy, uz)
            q_xy = _bilinear(quadrant, ux, uy)
            q_xz = _bilinear(quadrant, ux, uz)
            q_yz = _bilinear(quadrant, uy, uz)
            gx = (1.0 - ux) ** 2 * (2.0 + ux) * 0.25
            gy = (1.0 - uy) ** 2 * (2.0 + uy) * 0.25
            gz = (1.0 - uz) ** 2 * (2.0 + uz) * 0.25
            frac[0] = 1.0 - gx - gy - gz + q_xy + q_xz + q_yz - v
            frac[1] = gz - q_xz - q_yz + v
            frac[2] = gy - q_xy - q_yz + v
            frac[3] = q_yz - v
            frac[4] = gx - q_xy - q_xz + v
            frac[5] = q_xz - v
            frac[6] = q_xy - v
            frac[7] = v
            weight = weights[b, a]
            to_protein = protein_channel and is_protein[b, a]
            for corner in range(8):
                # corner bits (x, y, z) name upper/lower in the mirrored frame
                i = low[0] + (((corner >> 2) & 1) ^ mirror[0])
                j = low[1] + (((corner >> 1) & 1) ^ mirror[1])
                k = low[2] + ((corner & 1) ^ mirror[2])
                if i < 0 or i >= size or j < 0 or j >= size or k < 0 or k >= size:
                    continue
                value = frac[corner] * weight
                out[b, ch, i, j, k] += value
                if to_protein:
                    out[b, num_channels - 1, i, j, k] += value
