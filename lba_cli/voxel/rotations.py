"""Rotations of atom sets: uniformly random ones (augmentation) and turns about an axis."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["random_rotation", "axis_angle_rotation"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Draw a rotation uniformly from SO(3).

    A normalised 4-vector of independent standard normals is a uniform unit quaternion
    (Shoemake, Graphics Gems III, 1992), and its rotation matrix is uniform on SO(3).

    Returns:
        float64 array of shape (3, 3), orthonormal with determinant +1.
    """
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def axis_angle_rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation by ``angle_rad`` about ``axis`` (Rodrigues' formula).

    Args:
        axis: float array of shape (3,), any non-zero length.

    Returns:
        float64 array of shape (3, 3).
    """
    axis = np.asarray(axis, dtype=np.float64)
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)
