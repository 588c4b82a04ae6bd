"""Dense zones of a structure: where neighbor-location view pairs may be drawn.

A *zone* is a candidate home-view centre whose surroundings are densely packed with atoms,
together with the set of neighbour directions along which the neighbour view's centre is
densely packed too. Pairs drawn only from zones cannot be solved by "which side is empty".

The recipe follows the original neighbor-location work (zones precomputed once per
structure; atom density from atoms binned into 2 Å voxels and smoothed with a sphere, read
by trilinear interpolation; a zone kept only with at least one dense neighbour direction),
with three changes: candidate centres lie on a finer grid (4 Å instead of 10 Å, since single
chains are small), the smoothing sphere is the view's inscribed sphere (radius half a box
edge), and neighbour directions are the 64 points of a Fibonacci sphere instead of 20
icosahedron faces, so that a direction drawn uniformly on the sphere can be tested against
the zone's dense set by its nearest lattice point.

Density is in heavy atoms per nm³, occupancy weighted. Folded proteins pack about 50-55
non-hydrogen atoms per nm³ (mean protein density ~1.35 g/cm³ at ~14 Da per heavy atom with
its hydrogens), so the default threshold of 40 asks for a sphere at least ~3/4 filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NEIGHBOR_DIRECTIONS",
    "ZoneSettings",
    "Zones",
    "fibonacci_directions",
    "nearest_direction",
    "density_grid",
    "density_at",
    "local_density_per_nm3",
    "find_zones",
]

_NUM_DIRECTIONS = 64  # one bit each in a uint64 mask


def fibonacci_directions(num: int) -> np.ndarray:
    """``num`` nearly evenly spread unit vectors (the Fibonacci sphere lattice).

    Point i has z = 1 - (2i + 1)/num and azimuth i times the golden angle (González, "Measurement
    of areas on a sphere using Fibonacci and latitude-longitude lattices", Math. Geosci. 2010).

    Returns:
        float64 array of shape (num, 3).
    """
    i = np.arange(num, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / num
    r = np.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


NEIGHBOR_DIRECTIONS = fibonacci_directions(_NUM_DIRECTIONS)


def nearest_direction(vectors: np.ndarray) -> np.ndarray:
    """Index into `NEIGHBOR_DIRECTIONS` of the lattice direction nearest to each vector.

    Args:
        vectors: float array of shape (..., 3), any non-zero length.

    Returns:
        int64 array of shape (...,).
    """
    return np.argmax(np.asarray(vectors) @ NEIGHBOR_DIRECTIONS.T, axis=-1)


@dataclass(frozen=True)
class ZoneSettings:
    """How zones are found.

    Attributes:
        view_size_A: edge of a view (box_size_voxels x resolution_A), Å; the neighbour centre
            lies ``view_size_A + padding`` from the home centre.
        max_pad_A: neighbour directions are tested at paddings 0, max_pad_A/2 and max_pad_A;
            runs with a larger padding need a corpus built with a larger value.
        min_density_per_nm3: density threshold at home and neighbour centres.
        density_radius_A: radius of the smoothing sphere; None means half of view_size_A
            (the view's inscribed sphere).
        zone_spacing_A: spacing of the grid of candidate home centres; a home centre is drawn
            uniformly in the cube of this edge around its zone.
        bin_A: edge of the voxels atoms are binned into before smoothing.
        max_density_per_nm3: a structure denser than this anywhere is rejected (overlapping
            copies: superimposed models or alternate conformations read as one).
    """

    view_size_A: float = 21.0
    max_pad_A: float = 6.0
    min_density_per_nm3: float = 40.0
    density_radius_A: float | None = None
    zone_spacing_A: float = 4.0
    bin_A: float = 2.0
    max_density_per_nm3: float = 90.0

    @property
    def radius_A(self) -> float:
        """The smoothing sphere's radius, Å."""
        return self.density_radius_A if self.density_radius_A is not None else self.view_size_A / 2


@dataclass
class Zones:
    """The zones of one structure.

    Attributes:
        center_A: float32 array of shape (Z, 3): zone centres in the structure's frame, Å.
        direction_mask: uint64 array of shape (Z,): bit j set when the neighbour centre along
            ``NEIGHBOR_DIRECTIONS[j]`` is dense at every tested padding.
        max_density_per_nm3: the structure's highest smoothed density.
        num_candidates: candidate centres tested.
    """

    center_A: np.ndarray
    direction_mask: np.ndarray
    max_density_per_nm3: float
    num_candidates: int

    def __len__(self) -> int:
        return len(self.center_A)


def density_grid(xyz_A: np.ndarray, weights: np.ndarray | None, radius_A: float, bin_A: float,
                 margin_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed atom density on a grid: atoms binned, then summed over a sphere (FFT).

    Args:
        xyz_A: float array of shape (N, 3), Å.
        weights: float array of shape (N,) (occupancy), or None for 1 per atom.
        radius_A: radius of the smoothing sphere, Å.
        bin_A: voxel edge, Å.
        margin_A: extra space around the atoms' bounding box, Å.

    Returns:
        density: float32 array of shape (X, Y, Z), atoms per nm³ at voxel centres.
        origin_A: float64 array of shape (3,), the centre of voxel (0, 0, 0), Å.
    """
    from scipy.signal import fftconvolve

    xyz_A = np.asarray(xyz_A, dtype=np.float64)
    low = xyz_A.min(axis=0) - margin_A
    shape = np.ceil((xyz_A.max(axis=0) + margin_A - low) / bin_A).astype(int) + 1
    index = np.floor((xyz_A - low) / bin_A).astype(int)
    counts = np.zeros(shape, np.float64)
    np.add.at(counts, tuple(index.T), 1.0 if weights is None else np.asarray(weights, dtype=np.float64))
    reach = int(math.ceil(radius_A / bin_A))
    offsets = np.arange(-reach, reach + 1) * bin_A
    kernel = (offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2) <= radius_A ** 2
    volume_nm3 = 4.0 / 3.0 * math.pi * radius_A ** 3 / 1000.0
    smoothed = fftconvolve(counts, kernel.astype(np.float64), mode="same")
    # The discrete kernel's volume differs from the sphere's by a few %: scale to the sphere.
    smoothed *= (4.0 / 3.0 * math.pi * radius_A ** 3) / (kernel.sum() * bin_A ** 3)
    return np.maximum(smoothed / volume_nm3, 0.0).astype(np.float32), low + bin_A / 2


def density_at(density: np.ndarray, origin_A: np.ndarray, bin_A: float, points_A: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of a `density_grid` at points (0 outside the grid).

    Args:
        points_A: float array of shape (..., 3), Å.

    Returns:
        float32 array of shape (...,), atoms per nm³.
    """
    from scipy.ndimage import map_coordinates

    points_A = np.asarray(points_A, dtype=np.float64)
    coords = ((points_A.reshape(-1, 3) - origin_A) / bin_A).T  # (P, 3) -> (3, P)
    values = map_coordinates(density, coords, order=1, mode="constant", cval=0.0)
    return values.reshape(points_A.shape[:-1]).astype(np.float32)


def local_density_per_nm3(xyz_A: np.ndarray, weights: np.ndarray | None, points_A: np.ndarray,
                          radius_A: float) -> np.ndarray:
    """Exact atom density in spheres around a few points (brute force, for sampling-time checks).

    Args:
        xyz_A: float array of shape (N, 3), Å.
        weights: float array of shape (N,) (occupancy), or None.
        points_A: float array of shape (P, 3), Å.
        radius_A: sphere radius, Å.

    Returns:
        float64 array of shape (P,), atoms per nm³.
    """
    points_A = np.asarray(points_A, dtype=np.float64).reshape(-1, 3)
    inside = ((xyz_A[None, :, :] - points_A[:, None, :]) ** 2).sum(-1) <= radius_A ** 2  # (P, N)
    counts = inside.sum(1) if weights is None else inside @ np.asarray(weights, dtype=np.float64)
    return counts / (4.0 / 3.0 * math.pi * radius_A ** 3 / 1000.0)


def find_zones(xyz_A: np.ndarray, occupancy: np.ndarray | None, settings: ZoneSettings) -> Zones:
    """Find the zones of a structure.

    Candidate centres are the points of a grid of spacing ``zone_spacing_A`` over the
    structure's bounding box. A candidate is a zone when the smoothed density there is at
    least ``min_density_per_nm3`` and at least one of the 64 `NEIGHBOR_DIRECTIONS` is dense
    at paddings 0, max/2 and max.

    Args:
        xyz_A: float array of shape (N, 3), heavy atoms, Å.
        occupancy: float array of shape (N,), or None (all 1).
        settings: see `ZoneSettings`.

    Returns:
        The `Zones` (possibly none).
    """
    radius = settings.radius_A
    density, origin = density_grid(xyz_A, occupancy, radius, settings.bin_A, margin_A=radius + settings.bin_A)
    low, high = xyz_A.min(axis=0), xyz_A.max(axis=0)
    axes = [np.arange(lo, hi + settings.zone_spacing_A / 2, settings.zone_spacing_A) for lo, hi in zip(low, high)]
    candidates = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)  # (X, Y, Z, 3) -> (P, 3)
    home = density_at(density, origin, settings.bin_A, candidates)
    dense_home = candidates[home >= settings.min_density_per_nm3]
    masks = np.zeros(len(dense_home), np.uint64)
    if len(dense_home):
        ok = np.ones((len(dense_home), _NUM_DIRECTIONS), bool)
        for pad in (0.0, settings.max_pad_A / 2, settings.max_pad_A):
            distance = settings.view_size_A + pad
            points = dense_home[:, None, :] + distance * NEIGHBOR_DIRECTIONS[None, :, :]  # (Z, 64, 3)
            ok &= density_at(density, origin, settings.bin_A, points) >= settings.min_density_per_nm3
        bits = np.left_shift(np.uint64(1), np.arange(_NUM_DIRECTIONS, dtype=np.uint64))
        masks = (ok.astype(np.uint64) * bits[None, :]).sum(axis=1, dtype=np.uint64)
    keep = masks != 0
    return Zones(dense_home[keep].astype(np.float32), masks[keep], float(density.max()), len(candidates))
