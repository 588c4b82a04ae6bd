"""Neighbor location: the face table, geometry of view pairs, noise, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lba_cli.config import GridConfig, NeighborConfig
from lba_cli.data.dataset import collate_atoms
from lba_cli.neighbors import (
    FACE_DIRECTIONS,
    NeighborPairs,
    Structure,
    load_structures,
    sample_view_pair,
    split_structures,
    structure_id,
)
from lba_cli.voxel import voxelize


def test_face_table_is_the_six_unit_axes_in_pairs():
    assert FACE_DIRECTIONS.shape == (6, 3)
    assert np.array_equal(FACE_DIRECTIONS, [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    assert np.array_equal(FACE_DIRECTIONS[0::2], -FACE_DIRECTIONS[1::2])


def _slab_structure() -> Structure:
    """A dense random block of atoms, large enough that every pair is dense."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-40, 40, size=(60_000, 3)).astype(np.float32)  # ~0.117 atoms/Å^3
    return Structure("block", xyz, np.full(len(xyz), 6, np.uint8))


@pytest.mark.parametrize("label", range(6))
def test_label_k_means_the_neighbour_lies_along_face_k(label):
    """With no noise, the neighbour view is the home view's block of the structure shifted by
    (L * resolution + padding) along FACE_DIRECTIONS[label], in the home box frame."""
    from scipy.spatial import cKDTree

    structure = _slab_structure()
    tree = cKDTree(structure.xyz_A)
    grid = GridConfig(box_size_voxels=9)
    for seed in range(40):
        pair = sample_view_pair(structure, tree, np.random.default_rng(seed), grid, padding_A=2.0, angle_deg=0.0,
                                min_density_per_nm3=40)
        if pair["label"] == label:
            break
    else:
        pytest.fail("label never drawn")
    home, neighbor = pair["home_xyz_A"], pair["neighbor_xyz_A"]
    # Atoms of the neighbour view, moved by the shift, are atoms of the home view (where the
    # two cropped spheres overlap); moved any other way, they are not.
    home_tree = cKDTree(home)
    for k, direction in enumerate(FACE_DIRECTIONS):
        moved = neighbor + (grid.box_size_A + 2.0) * direction
        overlap = moved[np.linalg.norm(moved, axis=1) < grid.reach_A - 0.5]
        d, _ = home_tree.query(overlap)
        if k == label:
            assert len(overlap) > 10 and d.max() < 1e-3
        else:
            assert len(overlap) == 0 or np.median(d) > 0.1


def test_validation_pairs_are_fixed_and_noise_free_training_pairs_change():
    structure = _slab_structure()
    grid = GridConfig(box_size_voxels=9)
    task = NeighborConfig(epoch_size=8, val_size=8, pad_min_A=1.0, pad_max_A=3.0, angle_deg=30.0)
    val = NeighborPairs([structure], grid, task, seed=0, train=False)
    train = NeighborPairs([structure], grid, task, seed=0, train=True)
    first = [val[i]["home_xyz_A"] for i in range(4)]
    val.set_epoch(5)
    again = [val[i]["home_xyz_A"] for i in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    train.set_epoch(0)
    e0 = train[0]["home_xyz_A"]
    train.set_epoch(1)
    assert not np.array_equal(e0, train[0]["home_xyz_A"])


def test_pairs_do_not_depend_on_the_number_of_loader_workers():
    from lba_cli.loaders import make_loader

    structure = _slab_structure()
    grid = GridConfig(box_size_voxels=9)
    task = NeighborConfig(epoch_size=12, val_size=4)
    dataset = NeighborPairs([structure], grid, task, seed=3, train=True)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(dataset, 4, shuffle=False, seed=3, epoch=2, num_workers=workers,
                             prefixes=("home_", "neighbor_"))
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["label"], b["label"])
        assert torch.equal(a["home_xyz_A"], b["home_xyz_A"])
        assert torch.equal(a["neighbor_xyz_A"], b["neighbor_xyz_A"])


def test_labels_are_roughly_uniform():
    structure = _slab_structure()
    dataset = NeighborPairs([structure], GridConfig(box_size_voxels=9), NeighborConfig(epoch_size=600), seed=0,
                            train=True)
    labels = np.array([dataset[i]["label"] for i in range(600)])
    counts = np.bincount(labels, minlength=6)
    assert counts.min() > 70 and counts.max() < 130


def test_curriculum_ramps_noise_from_zero():
    task = NeighborConfig(curriculum_epochs=4, angle_deg=20)
    dataset = NeighborPairs([_slab_structure()], GridConfig(box_size_voxels=9), task, seed=0, train=True)
    scales = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        scales.append(dataset.noise_scale())
    assert scales == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_structure_ids_and_exclusion(bm5_subset):
    assert structure_id(bm5_subset / "1A2K_r_u.pdb.gz") == "1a2k"
    structures, skipped = load_structures([bm5_subset], GridConfig(), frozenset({"1acb"}))
    names = sorted(s.name for s in structures)
    assert names == ["1a2k", "1ahw", "1ak4", "1akj"]
    assert skipped and "excluded" in skipped[0][1]
    train, val = split_structures(structures, 0.25, seed=0)
    assert {s.name for s in train}.isdisjoint({s.name for s in val}) and val


def test_real_structures_give_dense_views(bm5_subset):
    structures, _ = load_structures([bm5_subset], GridConfig())
    dataset = NeighborPairs(structures, GridConfig(), NeighborConfig(epoch_size=40), seed=0, train=True)
    items = [dataset[i] for i in range(40)]
    assert np.mean([it["density_ok"] for it in items]) > 0.5
    batch = collate_atoms(items[:4], prefixes=("home_", "neighbor_"))
    assert batch["home_xyz_A"].shape[0] == 4 and batch["label"].shape == (4,)
    # a home view is densely filled, not mostly empty
    home = items[0]
    g = voxelize(home["home_xyz_A"], np.full(len(home["home_xyz_A"]), 6), np.ones(len(home["home_xyz_A"]), bool),
                 GridConfig(), np.zeros(3))
    assert g[-1].sum() > 150


@pytest.mark.slow
def test_a_small_model_learns_the_face_labels_on_real_structures(tmp_path, bm5_subset):
    """Labels mean one thing in the data and in the loss: a model trained on them predicts
    the face of unseen pairs far above chance (1/6)."""
    from lba_cli.config import ModelConfig, RunConfig, TrainConfig
    from lba_cli.pretrain import pretrain
    from lba_cli.runs import RunStore

    config = RunConfig(kind="pretrain", structures=(str(bm5_subset),),
                       model=ModelConfig(arch="resnet-bottleneck", widths=(32, 64, 128, 256)),
                       neighbor=NeighborConfig(epoch_size=512, val_size=128, pad_max_A=1.0, angle_deg=0.0),
                       train=TrainConfig(num_epochs=5, batch_size=32, seed=0))
    run = pretrain(config, RunStore(tmp_path / "runs"))
    accuracy = run.read_metrics()["val/accuracy"].max()
    assert accuracy > 0.35


def test_protein_atoms_of_a_voxelize_file_are_structures(tiny_h5):
    from lba_cli.data.grids_h5 import read_grid_set

    structures, skipped = load_structures([tiny_h5], GridConfig(), frozenset({"1a30"}))
    data = read_grid_set(tiny_h5)
    assert sorted(s.name for s in structures) == sorted(i for i in data.ids if i != "1a30")
    first = next(s for s in structures if s.name == data.ids[1]) if data.ids[0] == "1a30" else structures[0]
    row = list(data.ids).index(first.name)
    xyz, numbers, flags = data.atoms(row)
    assert len(first.xyz_A) == flags.sum()  # protein atoms only
    assert skipped[0][1] == "excluded by --exclude-ids"
