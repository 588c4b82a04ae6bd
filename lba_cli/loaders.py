"""DataLoaders whose order and content depend only on (seed, epoch), not on worker count.

The order of an epoch is an explicit list of indices: a permutation drawn from a generator
seeded by (seed, epoch), or 0..N-1. That makes two things exact: resuming in the middle of
an epoch (skip the batches already seen) and sharding across processes (each rank takes
every world_size-th index).
"""

from __future__ import annotations

import functools

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lba_cli.data.dataset import collate_atoms

__all__ = ["make_loader", "epoch_order"]


class _ListSampler(Sampler):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def epoch_order(num_items: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                world_size: int = 1) -> list[int]:
    """The item order of one epoch for one process.

    Returns:
        Indices into the dataset: a permutation seeded by (seed, epoch) when ``shuffle``,
        else 0..N-1; then every ``world_size``-th starting at ``rank``. Under several
        processes the order is first padded with its own beginning to a multiple of
        ``world_size``, so that every rank runs the same number of steps (as
        DistributedSampler does).
    """
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(num_items, generator=generator).tolist()
    else:
        order = list(range(num_items))
    if world_size > 1:
        padded = -(-num_items // world_size) * world_size
        order = (order * (1 + padded // max(num_items, 1)))[:padded]
    return order[rank::world_size]


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int, num_workers: int,
                prefixes: tuple[str, ...] = ("",), skip_batches: int = 0, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A loader over ``dataset`` for one epoch; never drops a last partial batch
    (metrics over a split must see every example; the original work's ``drop_last`` skewed them).

    Args:
        dataset: items for `lba_cli.data.dataset.collate_atoms`; its ``set_epoch`` is called.
        batch_size: examples per batch (per process).
        shuffle: draw the order from a generator seeded by (seed, epoch).
        seed, epoch: see above.
        num_workers: worker processes (0: load in this process).
        prefixes: atom-field prefixes of the items (``("home_", "neighbor_")`` for pairs).
        skip_batches: batches of this epoch already trained on (resuming mid-epoch).
        rank, world_size: this process's share under torch.distributed.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_order(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    sampler = _ListSampler(order[skip_batches * batch_size:])
    # The loader draws its workers' base seed from `generator`; a private one keeps it from
    # consuming the global torch generator, whose state (dropout) a resumed run restores.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=False,
                      collate_fn=functools.partial(collate_atoms, prefixes=prefixes), persistent_workers=False,
                      generator=generator)
