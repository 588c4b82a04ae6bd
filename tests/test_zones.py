"""Dense zones: the direction lattice, smoothed density against exact counts, the zone test."""

from __future__ import annotations

import numpy as np

from lba_cli.zones import (
    NEIGHBOR_DIRECTIONS,
    ZoneSettings,
    density_at,
    density_grid,
    find_zones,
    local_density_per_nm3,
    nearest_direction,
)


def test_direction_lattice_is_64_spread_unit_vectors():
    assert NEIGHBOR_DIRECTIONS.shape == (64, 3)
    assert np.allclose(np.linalg.norm(NEIGHBOR_DIRECTIONS, axis=1), 1.0)
    cosines = NEIGHBOR_DIRECTIONS @ NEIGHBOR_DIRECTIONS.T - 2 * np.eye(64)
    assert np.degrees(np.arccos(cosines.max())) > 20  # no two closer than 20°
    assert np.array_equal(nearest_direction(NEIGHBOR_DIRECTIONS * 3.0), np.arange(64))


def test_smoothed_density_matches_exact_counts():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 40, size=(3500, 3))  # ~55 atoms/nm³
    density, origin = density_grid(xyz, None, 10.5, 2.0, margin_A=12.0)
    points = rng.uniform(12, 28, size=(20, 3))
    exact = local_density_per_nm3(xyz, None, points, 10.5)
    assert np.allclose(density_at(density, origin, 2.0, points), exact, rtol=0.06)
    weights = np.full(len(xyz), 0.5)
    assert np.allclose(local_density_per_nm3(xyz, weights, points, 10.5), exact / 2)


def test_zones_need_a_dense_home_and_a_dense_neighbour():
    rng = np.random.default_rng(0)
    block = rng.uniform(0, 56, size=(9000, 3))
    zones = find_zones(block, None, ZoneSettings())
    assert len(zones) > 0 and (zones.direction_mask != 0).all()
    home = local_density_per_nm3(block, None, zones.center_A, 10.5)
    assert home.min() > 30  # interpolated density at the zone reached 40; exact is close
    small = rng.uniform(0, 25, size=(850, 3))  # a small protein: dense, but no neighbour 21 Å away is
    assert len(find_zones(small, None, ZoneSettings())) == 0
