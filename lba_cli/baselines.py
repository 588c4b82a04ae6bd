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


def baseline_predictions(data: GridSet, split: str, train_data: GridSet | None = None) -> dict[str, np.ndarray]:
    """Predicted pK of each baseline for the complexes of ``split`` (in file order).

    Args:
        data: the complexes to predict.
        split: ``train``, ``val``, ``test`` or ``all``.
        train_data: whose train split the baselines are fitted on (default: ``data``'s);
            for outside data, the model's own training file.

    Returns:
        baseline name -> float64 array of shape (M_split,).
    """
    fit_on = train_data if train_data is not None else data
    train, target = fit_on.indices("train"), data.indices(split)
    train_pk = fit_on.affinity_pk[train].astype(np.float64)
    train_heavy = ligand_heavy_atoms(fit_on)[train].astype(np.float64)
    heavy = ligand_heavy_atoms(data).astype(np.float64)
    slope, intercept = np.polyfit(train_heavy, train_pk, 1) if np.ptp(train_heavy) > 0 else (0.0, train_pk.mean())
    return {"train mean": np.full(len(target), train_pk.mean()), "heavy atoms": intercept + slope * heavy[target]}
