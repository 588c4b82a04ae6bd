"""Train/validation/test splits of complexes, seeded and leakage-free by protein."""

from __future__ import annotations

import numpy as np

from lba_cli.choices import SPLITS, SplitKind
from lba_cli.errors import ConfigError

__all__ = ["assign_splits", "DEFAULT_FRACTIONS", "shared_between_splits"]

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def assign_splits(
    ids: list[str],
    groups: list[str],
    kind: SplitKind,
    seed: int,
    predefined: list[str | None] | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> list[str]:
    """Assign ``train``, ``val`` or ``test`` to every complex.

    Args:
        ids: complex ids, shape (M,).
        groups: protein identity of each complex (e.g. UniProt id); "" means unknown, and
            such a complex forms a group of its own.
        kind: ``predefined`` keeps the source's splits; ``protein`` puts whole groups in one
            split; ``random`` splits complexes independently.
        seed: seed of the shuffle.
        predefined: the source's split per complex (required for ``predefined``).
        fractions: train, val, test shares (of complexes, filled group by group).

    Returns:
        One split name per complex.

    Raises:
        ConfigError: for ``predefined`` when some complex has no split in its source.
    """
    if kind is SplitKind.predefined:
        missing = [i for i, s in zip(ids, predefined or [None] * len(ids)) if s is None]
        if missing:
            raise ConfigError(f"--split predefined, but {len(missing)} complexes have no split in their source "
                              f"(e.g. {', '.join(missing[:3])})\nexpected: --split protein or --split random")
        return [str(s) for s in predefined]  # type: ignore[union-attr]
    keys = [g if (g and kind is SplitKind.protein) else f"id:{i}" for i, g in zip(ids, groups)]
    unique = sorted(set(keys))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    sizes: dict[str, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    total = len(ids)
    # At least one complex in val and test whenever there are three groups to go round.
    capacity = {split: max(int(round(share * total)), 1 if len(unique) >= 3 else 0)
                for split, share in (("test", fractions[2]), ("val", fractions[1]))}
    counts = {"test": 0, "val": 0}
    assignment: dict[str, str] = {}
    # Greedy in shuffled order: a group goes to test, else val, if it still fits there, so
    # the small splits are filled close to their share and big groups land in train.
    for key in order:
        target = next((s for s in ("test", "val") if counts[s] + sizes[key] <= capacity[s]), "train")
        if target != "train":
            counts[target] += sizes[key]
        assignment[key] = target
    return [assignment[k] for k in keys]


def shared_between_splits(splits: list[str], keys: list[str]) -> dict[str, int]:
    """Count keys (proteins or ligands) that appear in more than one split.

    Returns:
        e.g. ``{"train/test": 2, "train/val": 0, "val/test": 0}``.
    """
    by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for split, key in zip(splits, keys):
        if key:
            by_split.setdefault(split, set()).add(key)
    pairs = (("train", "val"), ("train", "test"), ("val", "test"))
    return {f"{a}/{b}": len(by_split[a] & by_split[b]) for a, b in pairs}
