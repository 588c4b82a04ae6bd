"""DataLoaders whose order and content depend only on (seed, epoch), not on worker count."""

from __future__ import annotations

import functools

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from lba_cli.data.dataset import collate_atoms

__all__ = ["make_loader"]


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int, num_workers: int,
                prefixes: tuple[str, ...] = ("",)) -> DataLoader:
    """A loader over ``dataset`` for one epoch; never drops a last partial batch (SPEC §8.4).

    Args:
        dataset: items for `lba_cli.data.dataset.collate_atoms`; its ``set_epoch`` is called.
        batch_size: examples per batch.
        shuffle: draw the order from a generator seeded by (seed, epoch).
        seed, epoch: see above.
        num_workers: worker processes (0: load in this process).
        prefixes: atom-field prefixes of the items (``("home_", "neighbor_")`` for pairs).
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=False,
                      collate_fn=functools.partial(collate_atoms, prefixes=prefixes), persistent_workers=False)
