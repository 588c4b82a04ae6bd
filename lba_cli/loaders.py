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

__all__ = ["make_loader", "epoch_order", "batch_bounds"]


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


def batch_bounds(num_items: int, batch_size: int, *, merge_single_last: bool = False) -> list[tuple[int, int]]:
    """[start, stop) of each batch of an epoch of ``num_items`` items.

    Args:
        num_items: items in the epoch (of this process).
        batch_size: items per batch.
        merge_single_last: a last batch of one item joins the batch before it (which then
            holds ``batch_size + 1``; with ``batch_size`` 1 every batch holds one). Training
            needs this: BatchNorm in training mode cannot normalise a single example whose
            feature map has shrunk to 1x1x1 (one value per channel), while evaluation (eval
            mode, running statistics) takes any batch.
    """
    bounds = [(start, min(start + batch_size, num_items)) for start in range(0, num_items, batch_size)]
    if merge_single_last and batch_size > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], num_items)]
    return bounds


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int, num_workers: int,
                prefixes: tuple[str, ...] = ("",), skip_batches: int = 0, rank: int = 0,
                world_size: int = 1, merge_single_last: bool = False) -> DataLoader:
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
        merge_single_last: a last batch of one example joins the one before (training; see
            `batch_bounds`).
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_order(len(dataset), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    batches = [order[start:stop] for start, stop in batch_bounds(len(order), batch_size,
                                                                 merge_single_last=merge_single_last)]
    # The loader draws its workers' base seed from `generator`; a private one keeps it from
    # consuming the global torch generator, whose state (dropout) a resumed run restores.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_sampler=_ListSampler(batches[skip_batches:]), num_workers=num_workers,
                      collate_fn=functools.partial(collate_atoms, prefixes=prefixes), persistent_workers=False,
                      generator=generator)
