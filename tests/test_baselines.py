"""The baselines printed beside every evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from lba_cli.baselines import baseline_predictions, ligand_heavy_atoms
from lba_cli.data.grids_h5 import read_grid_set


def test_heavy_atom_counts_match_the_ligand_files(tiny_h5, shared):
    from lba_cli.data.atoms import read_ligand_atoms

    data = read_grid_set(tiny_h5)
    counts = ligand_heavy_atoms(data)
    for complex_id, count in zip(data.ids, counts):
        ligand = read_ligand_atoms([shared / "pdbbind_demo" / complex_id / f"{complex_id}_ligand.sdf",
                                    shared / "pdbbind_demo" / complex_id / f"{complex_id}_ligand.mol2"])
        assert count == ligand.atoms.height


def test_baselines_are_fitted_on_train_only(tiny_h5):
    data = read_grid_set(tiny_h5)
    predictions = baseline_predictions(data, "test")
    train = data.indices("train")
    assert np.allclose(predictions["train mean"], data.affinity_pk[train].mean())
    heavy = ligand_heavy_atoms(data).astype(float)
    slope, intercept = np.polyfit(heavy[train], data.affinity_pk[train], 1)
    assert predictions["heavy atoms"] == pytest.approx(intercept + slope * heavy[data.indices("test")])
