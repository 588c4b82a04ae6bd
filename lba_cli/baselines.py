"""Baselines printed beside every result, so that no number stands without context.

- ``train mean``: predict the mean training pK for every complex.
- ``heavy atoms``: least-squares line of pK on the ligand's heavy-atom count, fitted on the
  training split (affinity grows with ligand size: Kuntz et al., "The maximal affinity of
  ligands", PNAS 1999).
"""

from __future__ import annotations

import numpy as np

from lba_cli.data.grids_h5 import GridSet

__all__ = ["BASELINES", "ligand_heavy_atoms", "baseline_predictions"]

BASELINES = ("train mean", "heavy atoms")
_HYDROGEN = 1


def ligand_heavy_atoms(data: GridSet) -> np.ndarray:
    """Heavy (non-hydrogen) ligand atoms of every complex: int64 array of shape (M,)."""
    ligand = ~data.is_protein & (data.atomic_number != _HYDROGEN)
    counts = np.add.reduceat(ligand.astype(np.int64), data.atom_offset[:-1]) if len(data) else np.zeros(0, np.int64)
    empty = data.atom_offset[1:] == data.atom_offset[:-1]
    counts[empty] = 0
    return counts


def baseline_predictions(data: GridSet, split: str) -> dict[str, np.ndarray]:
    """Predicted pK of each baseline for the complexes of ``split`` (in file order).

    Returns:
        baseline name -> float64 array of shape (M_split,).
    """
    train, target = data.indices("train"), data.indices(split)
    pk = data.affinity_pk.astype(np.float64)
    heavy = ligand_heavy_atoms(data).astype(np.float64)
    slope, intercept = np.polyfit(heavy[train], pk[train], 1) if np.ptp(heavy[train]) > 0 else (0.0, pk[train].mean())
    return {"train mean": np.full(len(target), pk[train].mean()), "heavy atoms": intercept + slope * heavy[target]}
