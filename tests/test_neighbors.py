"""Neighbor location: the face table, pairs drawn from zones, the roll, the shortcut controls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import BM5, require_shared

from lba_cli.config import GridConfig, NeighborConfig
from lba_cli.corpus import Corpus
from lba_cli.data.dataset import collate_atoms
from lba_cli.errors import DataError
from lba_cli.neighbors import (
    FACE_DIRECTIONS,
    NeighborPairs,
    PairSampler,
    ShortcutBalance,
    centroid_rule,
    face_rotation,
    fit_balance,
    slab_rule,
    split_structures,
    worst_overlap_A,
)
from lba_cli.voxel import axis_angle_rotation, voxelize

GRID = GridConfig()


def test_face_table_is_the_six_unit_axes_in_pairs():
    assert FACE_DIRECTIONS.shape == (6, 3)
    assert np.array_equal(FACE_DIRECTIONS, [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    assert np.array_equal(FACE_DIRECTIONS[0::2], -FACE_DIRECTIONS[1::2])


@pytest.mark.parametrize("label", range(6))
def test_face_rotation_puts_the_label_face_along_the_direction(label):
    rng = np.random.default_rng(label)
    for _ in range(50):
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        rotation = face_rotation(direction, label, rng.uniform(0, 2 * math.pi))
        assert np.allclose(rotation @ FACE_DIRECTIONS[label], direction, atol=1e-9)
        assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(rotation), 1.0)
    # the antiparallel case
    flipped = face_rotation(-FACE_DIRECTIONS[label], label, 0.3)
    assert np.allclose(flipped @ FACE_DIRECTIONS[label], -FACE_DIRECTIONS[label])


def _sampler(path, members=None, density=40.0):
    corpus = Corpus(path)
    return PairSampler(corpus, np.arange(len(corpus)) if members is None else members, GRID, density)


@pytest.mark.parametrize("label", range(6))
def test_label_k_means_the_neighbour_lies_along_face_k(label, block_corpus):
    """With no turn, the neighbour view is the home view's block of the structure shifted by
    (L * resolution + padding) along FACE_DIRECTIONS[label], in the home box frame."""
    from scipy.spatial import cKDTree

    sampler = _sampler(block_corpus)
    for seed in range(60):
        pair = sampler.draw(np.random.default_rng(seed), padding_A=2.0, angle_deg=0.0, balance=None)
        if pair["label"] == label:
            break
    else:
        pytest.fail("label never drawn")
    home, neighbor = pair["home_xyz_A"], pair["neighbor_xyz_A"]
    home_tree = cKDTree(home)
    for k, direction in enumerate(FACE_DIRECTIONS):
        moved = neighbor + (GRID.box_size_A + 2.0) * direction
        overlap = moved[np.linalg.norm(moved, axis=1) < GRID.reach_A - 0.5]
        d, _ = home_tree.query(overlap)
        if k == label:
            assert len(overlap) > 10 and d.max() < 1e-3
        else:
            assert len(overlap) == 0 or np.median(d) > 0.1


def test_pairs_come_from_dense_zones_only(bm5_corpus):
    sampler = _sampler(bm5_corpus)
    rng = np.random.default_rng(0)
    densities = np.array([sampler.draw(rng, padding_A=2.0, angle_deg=20.0, balance=None)["density_per_nm3"]
                          for _ in range(60)])
    assert densities.min() >= 40.0
    # and a threshold no zone can meet is refused, not met by a fallback
    strict = _sampler(bm5_corpus, density=200.0)
    with pytest.raises(DataError, match="no view pair passed"):
        strict.draw(np.random.default_rng(0), padding_A=1.0, angle_deg=0.0, balance=None)


def test_the_roll_about_the_pair_axis_is_uniform(block_corpus):
    """The box frame's axes perpendicular to the label face have a uniform azimuth about the
    pair axis, and the frames average to zero as uniform rotations do."""
    sampler = _sampler(block_corpus)
    rng = np.random.default_rng(1)
    azimuths, rotations = [], []
    for _ in range(360):
        pair = sampler.draw(rng, padding_A=1.0, angle_deg=0.0, balance=None)
        rotation, label = pair["rotation"], pair["label"]
        axis = rotation @ FACE_DIRECTIONS[label]
        side = rotation @ FACE_DIRECTIONS[(label + 2) % 6]  # a box axis perpendicular to the label's
        reference = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
        reference /= np.linalg.norm(reference)
        azimuths.append(math.atan2(np.cross(reference, side) @ axis, reference @ side))
        rotations.append(rotation)
    counts = np.histogram(azimuths, bins=6, range=(-math.pi, math.pi))[0]
    assert counts.min() > 30 and counts.max() < 90, counts
    assert np.abs(np.mean(rotations, axis=0)).max() < 0.12


def test_validation_pairs_are_fixed_and_noise_free_training_pairs_change(block_corpus):
    sampler = _sampler(block_corpus)
    task = NeighborConfig(epoch_size=8, val_size=8, pad_min_A=1.0, pad_max_A=3.0, angle_deg=30.0)
    val = NeighborPairs(sampler, GRID, task, seed=0, train=False, balance=None)
    train = NeighborPairs(sampler, GRID, task, seed=0, train=True, balance=None)
    first = [val[i]["home_xyz_A"] for i in range(4)]
    val.set_epoch(5)
    assert all(np.array_equal(a, val[i]["home_xyz_A"]) for i, a in enumerate(first))
    train.set_epoch(0)
    e0 = train[0]["home_xyz_A"]
    train.set_epoch(1)
    assert not np.array_equal(e0, train[0]["home_xyz_A"])


def test_pairs_do_not_depend_on_the_number_of_loader_workers(block_corpus):
    from lba_cli.loaders import make_loader

    dataset = NeighborPairs(_sampler(block_corpus), GRID, NeighborConfig(epoch_size=12, val_size=4), seed=3,
                            train=True, balance=None)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(dataset, 4, shuffle=False, seed=3, epoch=2, num_workers=workers,
                             prefixes=("home_", "neighbor_"))
        batches[workers] = list(loader)
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["label"], b["label"])
        assert torch.equal(a["home_xyz_A"], b["home_xyz_A"])
        assert torch.equal(a["neighbor_xyz_A"], b["neighbor_xyz_A"])


def test_labels_are_roughly_uniform(block_corpus):
    dataset = NeighborPairs(_sampler(block_corpus), GRID, NeighborConfig(epoch_size=360), seed=0, train=True,
                            balance=None)
    counts = np.bincount([dataset[i]["label"] for i in range(360)], minlength=6)
    assert counts.min() > 35 and counts.max() < 85


def test_curriculum_ramps_noise_from_zero(block_corpus):
    dataset = NeighborPairs(_sampler(block_corpus), GRID, NeighborConfig(curriculum_epochs=4, angle_deg=20), seed=0,
                            train=True, balance=None)
    scales = []
    for epoch in range(6):
        dataset.set_epoch(epoch)
        scales.append(dataset.noise_scale())
    assert scales == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_split_holds_out_whole_ids_and_refuses_to_reuse_training_structures():
    names = np.array(["1abc", "1abc", "2xyz", "3def", "4ghi"])
    train, val = split_structures(names, 0.25, seed=0)
    assert len(val) and set(names[train]).isdisjoint(names[val]) and len(train) + len(val) == len(names)
    with pytest.raises(DataError, match="at least 2 distinct structures"):
        split_structures(np.array(["1abc", "1abc"]), 0.1, seed=0)


def test_worst_overlap_matches_turned_cube_corners():
    """The bound is the largest reach of a turned cube along the axis, checked against corners."""
    rng = np.random.default_rng(0)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * 10.5
    for angle in (0.0, 10.0, 20.0, 40.0):
        reach = max((corners @ axis_angle_rotation(rng.standard_normal(3), math.radians(angle)).T)[:, 0].max()
                    for _ in range(4000))
        bound = worst_overlap_A(21.0, 1.0, angle) + 1.0 + 10.5  # reach of the turned neighbour past its centre
        assert reach <= bound + 1e-6 and reach > bound - 0.3, (angle, reach, bound)
    assert worst_overlap_A(21.0, 1.0, 0.0) == -1.0
    alpha = math.radians(20)
    expected = 10.5 * (math.cos(alpha) + math.sqrt(2) * math.sin(alpha) - 1) - 1
    assert worst_overlap_A(21.0, 1.0, 20.0) == pytest.approx(expected)


# The controls: pairs built to carry the "which side is empty" cue, and pairs that do not.

def _half_filled(face: int, sign: float, rng) -> np.ndarray:
    xyz = rng.uniform(-10.4, 10.4, size=(3000, 3))
    return xyz[sign * (xyz @ FACE_DIRECTIONS[face]) > 0].astype(np.float32)


@pytest.mark.parametrize("face", range(6))
def test_rules_read_the_empty_sides(face):
    """Home atoms on the label side, neighbour atoms on the side facing home: both rules say the label."""
    rng = np.random.default_rng(face)
    home, neighbor = _half_filled(face, +1, rng), _half_filled(face, -1, rng)
    assert centroid_rule(home, neighbor, 10.5) == face
    assert slab_rule(home, neighbor, 10.5) == face


def test_rules_are_at_chance_on_filled_views():
    """Views filled uniformly carry no cue: over many such pairs the rules are right ~1/6 of the time."""
    rng = np.random.default_rng(0)
    hits = np.zeros(2)
    for _ in range(600):
        home, neighbor = (rng.uniform(-10.4, 10.4, size=(800, 3)).astype(np.float32) for _ in range(2))
        label = int(rng.integers(6))
        hits += [centroid_rule(home, neighbor, 10.5) == label, slab_rule(home, neighbor, 10.5) == label]
    assert (np.abs(hits / 600 - 1 / 6) < 0.06).all()
    assert centroid_rule(np.zeros((0, 3)), np.ones((3, 3)), 10.5) == -1


def test_balance_makes_the_cue_direction_uniform_within_each_strength_bin():
    rng = np.random.default_rng(0)
    labels = rng.integers(6, size=6000)
    # cues that point near the label face most of the time, of varying strength
    cues = FACE_DIRECTIONS[labels] + rng.standard_normal((6000, 3)) * rng.uniform(1.0, 3.0, (6000, 1))
    other = FACE_DIRECTIONS[labels] + rng.standard_normal((6000, 3))
    both = np.stack([cues, other], axis=1)
    balance = ShortcutBalance.fit(both, labels)
    rows, columns = balance._bins(both, labels)
    keep = np.array([balance.probability(c, k) for c, k in zip(both, labels)])
    assert keep.max() <= 1.0 + 1e-9 and 0.0 < balance.keep_rate < 1.0
    for cue in range(2):
        for row in range(4):
            in_row = rows[:, cue] == row
            weighted = np.bincount(columns[in_row, cue], weights=keep[in_row], minlength=8)
            assert weighted.max() / weighted.min() < 1.1, (cue, row, weighted)
    with pytest.raises(DataError, match="too few pilot pairs"):
        ShortcutBalance.fit(both[:100], labels[:100])


def test_balanced_pairs_from_real_structures_leave_the_rules_near_chance(bm5_corpus):
    """Without the balance the centroid rule reads the answer from empty sides well above
    chance on real proteins; with it, both rules drop to near chance on the same structures."""
    corpus = Corpus(bm5_corpus)
    sampler = PairSampler(corpus, np.arange(len(corpus)), GRID, 40.0)
    task = NeighborConfig(val_size=400, pilot_pairs=1200)
    balance = fit_balance(sampler, task, seed=0, num_pairs=task.pilot_pairs, train=False)
    accuracy = {}
    for name, table in (("raw", None), ("balanced", balance)):
        dataset = NeighborPairs(sampler, GRID, task, seed=1, train=False, balance=table)
        items = [dataset[i] for i in range(400)]
        accuracy[name] = [np.mean([it[rule] == it["label"] for it in items]) for rule in ("centroid_rule", "slab_rule")]
    assert min(accuracy["raw"]) > 0.3, accuracy
    assert max(accuracy["balanced"]) < 0.26, accuracy


def test_real_pairs_are_dense_views(bm5_corpus):
    dataset = NeighborPairs(_sampler(bm5_corpus), GRID, NeighborConfig(epoch_size=8), seed=0, train=True, balance=None)
    items = [dataset[i] for i in range(4)]
    batch = collate_atoms(items, prefixes=("home_", "neighbor_"))
    assert batch["home_xyz_A"].shape[0] == 4 and batch["label"].shape == (4,)
    home = items[0]["home_xyz_A"]
    grid = voxelize(home, np.full(len(home), 6), np.ones(len(home), bool), GRID, np.zeros(3))
    assert grid[-1].sum() > 0.4 * 21**3 * 0.04  # a densely filled box, not a mostly empty one


@pytest.mark.slow
def test_a_small_model_learns_the_face_labels_on_real_structures(tmp_path):
    """Labels mean one thing in the data and in the loss: a model trained on them predicts
    the face of unseen balanced pairs clearly above chance (1/6) and above both controls.

    The scale is the smallest at which the task was measured learnable (issue 9 follow-up):
    all of Docking Benchmark 5 (some 300 structures with zones, 10 % of them held out for
    validation), the default 1-2 Å padding and 20 degree turn, the face-aware pair head and
    4 epochs of 1024 pairs; there, seeds 0 and 1 reached 0.43 and 0.40 against controls of
    0.15 and 0.17. Five structures (one for validation) were too few to learn anything.
    """
    from lba_cli.config import ModelConfig, RunConfig, TrainConfig
    from lba_cli.pretrain import pretrain
    from lba_cli.runs import RunStore

    require_shared()
    config = RunConfig(kind="pretrain", structures=(str(BM5),),
                       model=ModelConfig(arch="resnet-bottleneck", widths=(16, 32, 64, 128), pair_head="faces"),
                       neighbor=NeighborConfig(epoch_size=1024, val_size=512, pad_min_A=1.0, pad_max_A=2.0,
                                               angle_deg=20.0, val_fraction=0.1),
                       train=TrainConfig(num_epochs=4, batch_size=32, lr=1e-3, seed=0, device="cpu"))
    run = pretrain(config, RunStore(tmp_path / "runs"))
    status = run.status
    assert status["num_val_structures"] >= 10, status
    metrics = run.read_metrics()
    best = metrics["val/accuracy"].max()
    centroid, slab = metrics["val/shortcut_accuracy"].max(), metrics["val/slab_shortcut_accuracy"].max()
    assert best > 0.3, (best, centroid, slab)
    assert best > centroid + 0.1, (best, centroid, slab)
    assert best > slab + 0.1, (best, centroid, slab)
