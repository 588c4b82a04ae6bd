"""Neighbor location: the self-supervised pre-training task, and its shortcut controls.

A home view is a cubic box in a densely packed region of a structure; the neighbour view is
a box of the same size whose centre lies across one of the home box's 6 faces, at a centre
distance of ``L * resolution + padding``. The model sees both grids and predicts the face.

`FACE_DIRECTIONS` is the one table that gives labels their meaning, in the home view's box
frame (array axes X, Y, Z of a (C, X, Y, Z) grid): label k means the neighbour's centre is at
``home_center + distance * FACE_DIRECTIONS[k]`` in that frame. A box frame is given by a
rotation matrix whose columns are the box axes in the structure's frame, so that
``local = (xyz - center) @ rotation``.

How a pair is drawn (`PairSampler.draw`), from a corpus whose zones were found in advance
(`lba_cli.zones`, `lba_cli.corpus`):

1. the label k uniformly among the 6 faces;
2. a structure with probability proportional to its number of zones, then one of its zones
   uniformly (so every zone is equally likely), and a home centre uniformly in the cube of
   the zone spacing around it;
3. one of the zone's dense neighbour directions uniformly, and a direction u uniformly in
   its cell of the direction lattice;
4. the exact density (occupancy-weighted heavy atoms within the smoothing radius) at the
   home and the neighbour centre must reach the threshold; otherwise back to 2 (there is no
   fallback to a pair that fails);
5. the box frame: a rotation taking face k to u, followed by a uniformly random roll about
   u, so that the views' orientation about the pair axis is uniform; in training the
   neighbour view is then turned about its own centre by up to ``angle_deg`` (random axis);
6. the shortcut balance (`ShortcutBalance`): the pair is kept with a probability that makes
   the directions of its two cue vectors (`slab_vector`, `centroid_vector`) relative to the
   label face uniform on the sphere, within bins of each cue's strength. Density zones alone
   leave "the sides that face each other are fuller" as a cue (on BM5 validation pairs the
   centroid rule gets ~40 % and the slab rule ~42 %, chance 17 %).

Controls (`centroid_rule`, `slab_rule`) are scored on every validation pair, so a pretext
accuracy is never read without what a rule with no learning gets on the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lba_cli.config import GridConfig, NeighborConfig
from lba_cli.corpus import Corpus
from lba_cli.errors import DataError
from lba_cli.seeding import Stream, sample_rng
from lba_cli.voxel import axis_angle_rotation, make_channel_lookup
from lba_cli.zones import NEIGHBOR_DIRECTIONS, local_density_per_nm3, nearest_direction

__all__ = [
    "FACE_DIRECTIONS",
    "FACE_NAMES",
    "OPPOSITE_FACE",
    "SLAB_WIDTH_A",
    "face_rotation",
    "centroid_rule",
    "slab_counts",
    "slab_vector",
    "slab_rule",
    "centroid_vector",
    "ShortcutBalance",
    "PairSampler",
    "NeighborPairs",
    "split_structures",
    "worst_overlap_A",
    "fit_balance",
]

FACE_DIRECTIONS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
FACE_NAMES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")
OPPOSITE_FACE = np.array([1, 0, 3, 2, 5, 4])
SLAB_WIDTH_A = 3.0
_MAX_TRIES = 5000
MIN_KEEP_RATE = 0.01  # below this the balance cannot yield pairs at a usable rate
_CELL_DRAWS = 512
_BITS = np.arange(len(NEIGHBOR_DIRECTIONS), dtype=np.uint64)


def face_rotation(direction: np.ndarray, label: int, roll_rad: float) -> np.ndarray:
    """The box frame that puts face ``label`` along ``direction``, rolled about it.

    Args:
        direction: float array of shape (3,), unit vector in the structure's frame.
        label: a row of `FACE_DIRECTIONS`.
        roll_rad: rotation about ``direction`` after the alignment, radians.

    Returns:
        float64 array of shape (3, 3), a rotation R with ``R @ FACE_DIRECTIONS[label] == direction``;
        its columns are the box axes. With ``roll_rad`` uniform in [0, 2π), R is uniform
        among the rotations that satisfy this.
    """
    face = FACE_DIRECTIONS[label]
    direction = np.asarray(direction, dtype=np.float64)
    cosine = float(np.clip(face @ direction, -1.0, 1.0))
    if cosine > 1.0 - 1e-12:
        align = np.eye(3)
    elif cosine < -1.0 + 1e-12:
        perpendicular = np.cross(face, [1.0, 0.0, 0.0] if abs(face[0]) < 0.9 else [0.0, 1.0, 0.0])
        align = axis_angle_rotation(perpendicular, math.pi)
    else:
        align = axis_angle_rotation(np.cross(face, direction), math.acos(cosine))
    return axis_angle_rotation(direction, roll_rad) @ align


def _in_box(xyz: np.ndarray, half_A: float) -> np.ndarray:
    return xyz[np.abs(xyz).max(axis=1) < half_A] if len(xyz) else xyz


def centroid_rule(home_xyz_A: np.ndarray, neighbor_xyz_A: np.ndarray, half_A: float) -> int:
    """The face nearest to the direction from the neighbour view's atom centroid to the home view's.

    Each centroid is taken over the atoms inside its own box, in its own box frame. This is
    the "which side is empty" cue: on pairs drawn anywhere in small proteins it is right
    most of the time, although it knows nothing of structure.

    Args:
        home_xyz_A, neighbor_xyz_A: float arrays of shape (N, 3), atoms in each view's box frame, Å.
        half_A: half the box edge, Å.

    Returns:
        A row of `FACE_DIRECTIONS`, or -1 when a box holds no atom.
    """
    home, neighbor = _in_box(home_xyz_A, half_A), _in_box(neighbor_xyz_A, half_A)
    if not len(home) or not len(neighbor):
        return -1
    return int(np.argmax(FACE_DIRECTIONS @ (home.mean(axis=0) - neighbor.mean(axis=0))))


def slab_counts(xyz_A: np.ndarray, half_A: float, width_A: float = SLAB_WIDTH_A) -> np.ndarray:
    """Atoms of a box in the slab of depth ``width_A`` inside each face: int64 array of shape (6,)."""
    inside = _in_box(xyz_A, half_A)
    return ((inside @ FACE_DIRECTIONS.T) > half_A - width_A).sum(axis=0) if len(inside) else np.zeros(6, np.int64)


def slab_vector(home_xyz_A: np.ndarray, neighbor_xyz_A: np.ndarray, half_A: float,
                width_A: float = SLAB_WIDTH_A) -> np.ndarray:
    """The slab cue: sum over faces k of (home slab k + neighbour slab opposite k) times face k.

    Large along face k when the home view's face k and the neighbour view's opposite face
    (the two that would touch if the label were k) are the fullest.

    Returns:
        float64 array of shape (3,), in the box frame.
    """
    scores = slab_counts(home_xyz_A, half_A, width_A) + slab_counts(neighbor_xyz_A, half_A, width_A)[OPPOSITE_FACE]
    return FACE_DIRECTIONS.T @ scores.astype(np.float64)


def slab_rule(home_xyz_A: np.ndarray, neighbor_xyz_A: np.ndarray, half_A: float, width_A: float = SLAB_WIDTH_A) -> int:
    """The face k whose home slab plus the neighbour's opposite slab hold the most atoms.

    A second cheap cue ("the sides that face each other are fuller"), measured on the same
    pairs as `centroid_rule`. Arguments as in `centroid_rule`; ties go to the first face.
    """
    scores = slab_counts(home_xyz_A, half_A, width_A) + slab_counts(neighbor_xyz_A, half_A, width_A)[OPPOSITE_FACE]
    return int(np.argmax(scores))


def centroid_vector(home_xyz_A: np.ndarray, neighbor_xyz_A: np.ndarray, half_A: float) -> np.ndarray:
    """The centroid cue: home view's atom centroid minus the neighbour view's (in-box atoms).

    Returns:
        float64 array of shape (3,), in the box frame, Å (zeros when a box is empty).
    """
    home, neighbor = _in_box(home_xyz_A, half_A), _in_box(neighbor_xyz_A, half_A)
    if not len(home) or not len(neighbor):
        return np.zeros(3)
    return home.mean(axis=0).astype(np.float64) - neighbor.mean(axis=0)


@dataclass(frozen=True)
class ShortcutBalance:
    """Keep probabilities that make the cues' directions carry no information about the label.

    For a pair with label k and a cue vector c (`slab_vector`, `centroid_vector`), let m = |c|
    and t = cos(c, face k). With a uniformly random roll about the pair axis, the cue's
    direction in the box frame is uniform on the sphere, whatever k, exactly when t is
    uniform on [-1, 1] (Archimedes' hat-box theorem); then no function of the cue's direction
    can tell k. For each cue the table has bins of m (quantiles) by bins of t (equal widths).
    A pair is kept with probability proportional to the product over cues of a per-cue factor
    of its bins; the factors are fitted on pilot pairs drawn without balance, by iterative
    proportional fitting (Deming and Stephan, Ann. Math. Stat. 1940), so that among kept
    pairs t is uniform within every m-bin, for every cue at once.

    Attributes:
        magnitude_edges: float64 array of shape (K, M - 1): inner edges of the m-bins per cue.
        factors: float64 array of shape (K, M, T): per-cue factors; their product over cues
            is a keep probability in [0, 1].
        counts: int64 array of shape (K, M, T): pilot pairs per bin of each cue.
        keep_rate: share of pilot pairs kept (in expectation).
    """

    magnitude_edges: np.ndarray
    factors: np.ndarray
    counts: np.ndarray
    keep_rate: float

    @classmethod
    def fit(cls, cues: np.ndarray, labels: np.ndarray, num_magnitude_bins: int = 4, num_cosine_bins: int = 8,
            num_iterations: int = 20) -> ShortcutBalance:
        """Fit the factors on pilot pairs.

        Args:
            cues: float array of shape (P, K, 3): K cue vectors per pilot pair, box frame.
            labels: int array of shape (P,).
            num_iterations: rounds of proportional fitting over the cues.

        Raises:
            DataError: with fewer than 10 pilot pairs per bin on average, or when under
                `MIN_KEEP_RATE` of the pilot pairs would be kept (too few structures for every
                cue direction to occur).
        """
        cues = np.asarray(cues, dtype=np.float64)
        labels = np.asarray(labels)
        num_pairs, num_cues = cues.shape[:2]
        if num_pairs < 10 * num_magnitude_bins * num_cosine_bins:
            raise DataError(f"too few pilot pairs to balance the shortcut cues: {num_pairs}")
        edges = np.stack([np.quantile(np.linalg.norm(cues[:, k], axis=1),
                                      np.linspace(0, 1, num_magnitude_bins + 1)[1:-1]) for k in range(num_cues)])
        shape = (num_cues, num_magnitude_bins, num_cosine_bins)
        table = cls(edges, np.ones(shape), np.zeros(shape, np.int64), 1.0)
        rows, columns = table._bins(cues, labels)  # (P, K) each
        for k in range(num_cues):
            np.add.at(table.counts[k], (rows[:, k], columns[:, k]), 1)
        factors = table.factors
        for _ in range(num_iterations):
            for k in range(num_cues):
                others = np.prod([factors[j][rows[:, j], columns[:, j]] for j in range(num_cues) if j != k], axis=0) \
                    if num_cues > 1 else np.ones(num_pairs)
                weighted = np.zeros((num_magnitude_bins, num_cosine_bins))
                np.add.at(weighted, (rows[:, k], columns[:, k]), others)
                factors[k] = weighted.min(axis=1, keepdims=True) / np.maximum(weighted, 1e-12)
        keep = np.prod([factors[k][rows[:, k], columns[:, k]] for k in range(num_cues)], axis=0)
        factors /= keep.max() ** (1.0 / num_cues) if keep.max() > 0 else 1.0
        keep = np.prod([factors[k][rows[:, k], columns[:, k]] for k in range(num_cues)], axis=0)
        if keep.mean() < MIN_KEEP_RATE:
            # A cue-strength row with an empty cosine bin can only be balanced by dropping the
            # row; when every row is dropped, no pair could ever be drawn.
            raise DataError(f"the shortcut cues cannot be balanced on these structures: of {num_pairs} pilot pairs, "
                            f"{keep.mean():.1%} would be kept (at least {MIN_KEEP_RATE:.0%} needed); pilot pairs per "
                            f"cosine bin, rows = cue-strength quartiles: {table.counts.tolist()}\n"
                            "expected: more (or larger) training structures, so that every cue direction occurs\n"
                            "do: add structures, or pass --no-balance-shortcut (val/shortcut_accuracy then shows how "
                            "much the empty-side cue gives away)")
        return cls(edges, factors, table.counts, float(keep.mean()))

    def _bins(self, cues: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bins of (P, K, 3) cues with (P,) labels: rows and columns, int64 arrays of shape (P, K)."""
        magnitude = np.linalg.norm(cues, axis=-1)  # (P, K)
        cosine = np.einsum("pki,pi->pk", cues, FACE_DIRECTIONS[labels]) / np.maximum(magnitude, 1e-12)
        num_cosine = self.factors.shape[2]
        columns = np.clip(((cosine + 1.0) / 2.0 * num_cosine).astype(np.int64), 0, num_cosine - 1)
        rows = np.stack([np.searchsorted(self.magnitude_edges[k], magnitude[:, k]) for k in range(cues.shape[1])],
                        axis=1)
        return rows, columns

    def probability(self, cues: np.ndarray, label: int) -> float:
        """Probability of keeping a pair with these cues (float array of shape (K, 3)) and label."""
        rows, columns = self._bins(np.asarray(cues, dtype=np.float64)[None], np.array([label]))
        return float(min(1.0, np.prod([self.factors[k, rows[0, k], columns[0, k]] for k in range(len(self.factors))])))

    def describe(self) -> str:
        """One line for the run log."""
        return (f"shortcut balance from {int(self.counts[0].sum())} pilot pairs (cues: slab, centroid): keeps "
                f"{self.keep_rate:.0%}; pilot pairs per cosine bin, rows = cue-strength quartiles: "
                f"slab {self.counts[0].tolist()}, centroid {self.counts[-1].tolist()}")


def worst_overlap_A(box_size_A: float, pad_min_A: float, angle_deg: float) -> float:
    """How far the turned neighbour box can reach into the home box, Å (<= 0: never).

    A cube of edge L turned by α about an axis through its centre reaches at most
    (L/2)(cos α + √2 sin α) along the pair axis (√3 L/2 beyond α = 54.7°), and the home box
    ends L/2 + padding before the neighbour's centre.
    """
    alpha = math.radians(angle_deg)
    reach = min(math.cos(alpha) + math.sqrt(2.0) * math.sin(alpha), math.sqrt(3.0)) if alpha > 0 else 1.0
    return box_size_A / 2 * (reach - 1.0) - pad_min_A


def split_structures(names: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole structure ids (all entries of one id together) for validation.

    Args:
        names: str array of shape (S,), the id of each structure.

    Returns:
        (train, val): int64 arrays of structure indices, disjoint and both non-empty.

    Raises:
        DataError: when there are fewer than two distinct ids (validation would have to
            reuse training structures).
    """
    unique = sorted(set(map(str, names)))
    if len(unique) < 2:
        raise DataError(f"pre-training needs at least 2 distinct structures to hold some out for validation; "
                        f"got {len(unique)} ({', '.join(unique[:3])})\n"
                        "validation pairs from training structures would not measure generalisation: add structures")
    rng = sample_rng(seed, Stream.SPLIT, 0, 0)
    shuffled = [unique[i] for i in rng.permutation(len(unique))]
    num_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    val_names = set(shuffled[:num_val])
    is_val = np.array([str(n) in val_names for n in names])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class PairSampler:
    """Draws view pairs from the zones of some structures of a corpus (see the module docstring).

    Args:
        corpus: the corpus (read lazily).
        members: int array of structure indices to draw from.
        grid: view size and resolution.
        min_density_per_nm3: threshold at both centres (at least the corpus's).
    """

    def __init__(self, corpus: Corpus, members: np.ndarray, grid: GridConfig, min_density_per_nm3: float) -> None:
        self.corpus = corpus
        self.members = np.asarray(members, dtype=np.int64)
        if not len(self.members):
            raise DataError("no structures to draw view pairs from")
        self.grid = grid
        self.min_density_per_nm3 = min_density_per_nm3
        self._cumulative = np.cumsum(corpus.num_zones()[self.members])

    def draw(self, rng: np.random.Generator, *, padding_A: float, angle_deg: float,
             balance: ShortcutBalance | None) -> dict[str, Any]:
        """Draw one pair.

        Args:
            rng: this sample's generator.
            padding_A: gap between the boxes, Å.
            angle_deg: the neighbour view is turned about its own centre by this angle
                around a uniformly random axis.
            balance: the shortcut balance (None: keep every dense pair, e.g. for the pilot).

        Returns:
            ``home_xyz_A``, ``neighbor_xyz_A`` (N, 3) float32 in each view's box frame (atoms
            within reach of the box), ``home_atomic_number``, ``neighbor_atomic_number`` (N,)
            uint8, ``label`` (int), ``structure`` (int, corpus index), ``rotation`` (3, 3)
            (the home box frame), ``cues`` (2, 3) (`slab_vector`, `centroid_vector`),
            ``centroid_rule`` and ``slab_rule``
            (the controls' predicted faces), ``density_per_nm3`` (2,) at the home and neighbour
            centres.

        Raises:
            DataError: when no pair passes after many tries (a corpus built with other settings).
        """
        grid, corpus = self.grid, self.corpus
        half, reach = grid.box_size_A / 2, grid.reach_A
        radius, spacing = corpus.settings.radius_A, corpus.settings.zone_spacing_A
        distance = grid.box_size_A + padding_A
        label = int(rng.integers(len(FACE_DIRECTIONS)))
        for _ in range(_MAX_TRIES):
            # Every rejection starts again from the structure, so that kept pairs follow the
            # proposal distribution times the acceptance, as the pilot of the balance assumes.
            which = int(self.members[min(int(np.searchsorted(self._cumulative, rng.random() * self._cumulative[-1],
                                                            side="right")), len(self.members) - 1)])
            xyz, numbers, occupancy, centers, masks = corpus.read_structure(which)
            zone = int(rng.integers(len(centers)))
            home = centers[zone].astype(np.float64) + rng.uniform(-spacing / 2, spacing / 2, 3)
            dense = np.flatnonzero((masks[zone] >> _BITS) & np.uint64(1))
            cell = int(dense[rng.integers(len(dense))])
            candidates = rng.standard_normal((_CELL_DRAWS, 3))
            in_cell = np.flatnonzero(nearest_direction(candidates) == cell)
            if not len(in_cell):
                continue
            direction = candidates[in_cell[0]] / np.linalg.norm(candidates[in_cell[0]])
            neighbor = home + distance * direction
            density = local_density_per_nm3(xyz, occupancy, np.stack([home, neighbor]), radius)
            if density.min() < self.min_density_per_nm3:
                continue
            rotation = face_rotation(direction, label, rng.uniform(0.0, 2.0 * math.pi))
            neighbor_rotation = rotation
            if angle_deg > 0:
                neighbor_rotation = axis_angle_rotation(rng.standard_normal(3), math.radians(angle_deg)) @ rotation
            views: dict[str, Any] = {}
            for name, center, frame in (("home", home, rotation), ("neighbor", neighbor, neighbor_rotation)):
                near = np.flatnonzero(((xyz - center) ** 2).sum(axis=1) <= reach ** 2)
                views[f"{name}_xyz_A"] = ((xyz[near] - center) @ frame).astype(np.float32)
                views[f"{name}_atomic_number"] = numbers[near]
            cues = np.stack([slab_vector(views["home_xyz_A"], views["neighbor_xyz_A"], half),
                             centroid_vector(views["home_xyz_A"], views["neighbor_xyz_A"], half)])
            if balance is not None and rng.random() >= balance.probability(cues, label):
                continue
            return {**views, "label": label, "structure": which, "rotation": rotation, "cues": cues,
                    "density_per_nm3": density,
                    "centroid_rule": centroid_rule(views["home_xyz_A"], views["neighbor_xyz_A"], half),
                    "slab_rule": slab_rule(views["home_xyz_A"], views["neighbor_xyz_A"], half)}
        raise DataError(f"no view pair passed the density test in {_MAX_TRIES} tries\n"
                        f"corpus: {corpus.path}; threshold {self.min_density_per_nm3:g} atoms/nm³, padding "
                        f"{padding_A:g} Å: was it built for smaller views or paddings? (lba corpus --max-pad)")


class NeighborPairs(Dataset):
    """An epoch of neighbor-location view pairs.

    Args:
        sampler: draws pairs from the split's structures.
        grid: view settings.
        task: padding, angle, sizes and curriculum.
        seed: run seed.
        train: training pairs (new every epoch, with noise) or validation pairs (fixed,
            noise-free: padding ``pad_min_A``, no turn).
        balance: the shortcut balance (None keeps every dense pair).
    """

    def __init__(self, sampler: PairSampler, grid: GridConfig, task: NeighborConfig, seed: int, train: bool,
                 balance: ShortcutBalance | None) -> None:
        self.sampler = sampler
        self.grid = grid
        self.task = task
        self.seed = seed
        self.train = train
        self.balance = balance
        self.epoch = 0
        self._lookup = make_channel_lookup(grid)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose pairs `__getitem__` draws (ignored for validation)."""
        self.epoch = epoch

    def noise_scale(self) -> float:
        """1, or the curriculum's ramp from 0 to 1 over ``curriculum_epochs``."""
        if not self.task.curriculum_epochs:
            return 1.0
        return min(1.0, self.epoch / self.task.curriculum_epochs)

    def __len__(self) -> int:
        return self.task.epoch_size if self.train else self.task.val_size

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.train:
            rng = sample_rng(self.seed, Stream.TRAIN, self.epoch, index)
        else:
            rng = sample_rng(self.seed, Stream.VAL, 0, index)
        task = self.task
        scale = self.noise_scale() if self.train else 0.0
        padding = task.pad_min_A + scale * rng.uniform(0.0, task.pad_max_A - task.pad_min_A)
        angle = scale * rng.uniform(0.0, task.angle_deg)
        pair = self.sampler.draw(rng, padding_A=padding, angle_deg=angle, balance=self.balance)
        item: dict[str, Any] = {"label": pair["label"], "index": index, "centroid_rule": pair["centroid_rule"],
                                "slab_rule": pair["slab_rule"]}
        for view in ("home_", "neighbor_"):
            xyz = pair[view + "xyz_A"]
            item[view + "xyz_A"] = xyz
            item[view + "channel"] = self._lookup[pair[view + "atomic_number"]]
            item[view + "is_protein"] = np.ones(len(xyz), dtype=bool)
        return item


def fit_balance(sampler: PairSampler, task: NeighborConfig, seed: int, num_pairs: int, *,
                train: bool) -> ShortcutBalance:
    """Fit the `ShortcutBalance` on pilot pairs drawn without balance.

    Noise changes the cue's distribution, so training pairs (padding and angle noise) and
    validation pairs (padding ``pad_min_A``, no turn) each get a table fitted under their
    own conditions, both on the training structures.

    Args:
        sampler: the training structures' sampler.
        task: padding and angle ranges.
        seed: run seed (pilot pairs use their own random stream).
        num_pairs: pilot pairs.
        train: draw pilot pairs with training noise (True) or noise-free (False).
    """
    cues, labels = [], []
    for index in range(num_pairs):
        rng = sample_rng(seed, Stream.PILOT, int(train), index)
        scale = 1.0 if train else 0.0
        padding = task.pad_min_A + scale * rng.uniform(0.0, task.pad_max_A - task.pad_min_A)
        angle = scale * rng.uniform(0.0, task.angle_deg)
        pair = sampler.draw(rng, padding_A=padding, angle_deg=angle, balance=None)
        cues.append(pair["cues"])
        labels.append(pair["label"])
    return ShortcutBalance.fit(np.array(cues), np.array(labels))
