"""Tables of the fraction of a ball's volume in an octant and a quadrant.

V(a, b, c) is the fraction of a unit ball's volume in {x > a, y > b, z > c}; Q(a, b) =
V(a, b, -1). Both are tabulated once per process by integrating, along x, the closed-form
area of a disk cut by a quadrant, with Gauss-Legendre quadrature split at the kinks of the
integrand (node error < 1e-7), then read back by (tri)linear interpolation in
`lba_cli.voxel.occupancy`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["OCTANT_TABLE_NODES", "HALF_OCTANT_TABLE_NODES", "QUADRANT_TABLE_NODES", "octant_fraction_table",
           "quadrant_fraction_table"]

OCTANT_TABLE_NODES = 129  # over [-1, 1]^3, for radii above half a voxel
HALF_OCTANT_TABLE_NODES = 65  # over [0, 1]^3, the same spacing; 1.1 MB in float32, cache-resident
QUADRANT_TABLE_NODES = 257
_GAUSS_LEGENDRE_NODES = 4


def _disk_quadrant_area(rho: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Area of {y^2 + z^2 <= rho^2, y > b, z > c} (closed form; arrays broadcast)."""
    rho, b, c = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), b, c)
    rho2 = rho * rho
    safe_rho = np.maximum(rho, 1e-300)

    def segment(y_min: np.ndarray) -> np.ndarray:  # area with y > y_min
        t = np.clip(y_min / safe_rho, -1.0, 1.0)
        return rho2 * (np.arccos(t) - t * np.sqrt(1.0 - t * t))

    def primitive(y: np.ndarray) -> np.ndarray:  # integral of sqrt(rho^2 - y^2) dy
        return 0.5 * (y * np.sqrt(np.maximum(rho2 - y * y, 0.0)) + rho2 * np.arcsin(np.clip(y / safe_rho, -1.0, 1.0)))

    abs_c = np.abs(c)
    half_width = np.sqrt(np.maximum(rho2 - abs_c * abs_c, 0.0))
    y0 = np.clip(b, -half_width, half_width)
    above = primitive(half_width) - primitive(y0) - abs_c * (half_width - y0)  # z > |c|
    # For c < 0: {z > c} is everything minus the mirror image of {z > |c|}.
    return np.where(c >= 0, above, segment(b) - above)


def _integrate_octant_column(b: np.ndarray, c: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Integral of the disk-quadrant area over each interval [nodes[i], nodes[i+1]] of x.

    Args:
        b, c: float64 arrays of shape (M, M): the y and z bounds.
        nodes: float64 array of shape (n,), increasing, in [-1, 1].

    Returns:
        float64 array of shape (n - 1, M, M).
    """
    gl_x, gl_w = np.polynomial.legendre.leggauss(_GAUSS_LEGENDRE_NODES)
    lo, hi = nodes[:-1], nodes[1:]
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    x = mid[:, None] + half[:, None] * gl_x  # (n-1, G)
    rho = np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0))
    area = _disk_quadrant_area(rho[:, None, None, :], b[None, :, :, None], c[None, :, :, None])
    pieces = (area * gl_w).sum(-1) * half[:, None, None]

    # The integrand has kinks where the cross-section radius equals |b|, |c| or |(b, c)|;
    # intervals holding one are integrated again, split at the kinks.
    kinks = np.stack([s * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
                      for r2 in (b * b, c * c, b * b + c * c) for s in (1.0, -1.0)], axis=-1)  # (M, M, 6)
    inside = (kinks[None] > lo[:, None, None, None]) & (kinks[None] < hi[:, None, None, None])
    ii, jj, kk = np.nonzero(inside.any(-1))
    seg_lo, seg_hi = lo[ii][:, None], hi[ii][:, None]
    bounds = np.sort(np.concatenate([seg_lo, seg_hi, np.clip(kinks[jj, kk], seg_lo, seg_hi)], axis=-1), axis=-1)
    s_half = (bounds[:, 1:] - bounds[:, :-1]) / 2  # (K, 7)
    s_mid = (bounds[:, 1:] + bounds[:, :-1]) / 2
    xs = s_mid[..., None] + s_half[..., None] * gl_x  # (K, 7, G)
    rs = np.sqrt(np.clip(1.0 - xs * xs, 0.0, 1.0))
    area = _disk_quadrant_area(rs, b[jj, kk][:, None, None], c[jj, kk][:, None, None])
    pieces[ii, jj, kk] = ((area * gl_w).sum(-1) * s_half).sum(-1)
    return pieces


@functools.lru_cache(maxsize=4)
def octant_fraction_table(num_nodes: int = OCTANT_TABLE_NODES, lower: float = -1.0) -> np.ndarray:
    """Tabulate V(a, b, c), the fraction of a unit ball's volume in {x > a, y > b, z > c}.

    Args:
        num_nodes: nodes per axis, evenly spaced over [lower, 1].
        lower: -1 for the whole domain; 0 for the half the mirrored fast path needs.

    Returns:
        float64 array of shape (n, n, n); entry [i, j, k] is V at (g[i], g[j], g[k]) with
        g = linspace(lower, 1, n). V(-1, -1, -1) = 1, V(0, 0, 0) = 1/8, and V = 0 wherever a
        coordinate is 1.
    """
    grid = np.linspace(lower, 1.0, num_nodes)
    b, c = np.meshgrid(grid, grid, indexing="ij")
    pieces = _integrate_octant_column(b, c, grid)
    table = np.zeros((num_nodes,) * 3)
    table[:-1] = np.cumsum(pieces[::-1], axis=0)[::-1]  # integrate from x = a up to x = 1
    table /= 4.0 / 3.0 * math.pi
    if lower == -1.0:
        table[0, 0, 0] = 1.0  # exact; removes quadrature round-off
    return table


@functools.lru_cache(maxsize=4)
def quadrant_fraction_table(num_nodes: int = QUADRANT_TABLE_NODES, lower: float = 0.0) -> np.ndarray:
    """Tabulate Q(a, b) = V(a, b, -1), the fraction of a unit ball in {x > a, y > b}.

    Returns:
        float64 array of shape (n, n) over g = linspace(lower, 1, n) in both axes.
    """
    grid = np.linspace(lower, 1.0, num_nodes)
    b = grid[:, None]
    pieces = _integrate_octant_column(b, np.full_like(b, -1.0), grid)[:, :, 0]
    table = np.zeros((num_nodes, num_nodes))
    table[:-1] = np.cumsum(pieces[::-1], axis=0)[::-1]
    return table / (4.0 / 3.0 * math.pi)
