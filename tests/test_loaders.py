"""Loaders: the order of an epoch depends on (seed, epoch) only; resuming and sharding are exact."""

from __future__ import annotations

import numpy as np
import torch

from lba_cli.loaders import epoch_order, make_loader


class _Items(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.epochs = n, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"xyz_A": np.full((index % 3 + 1, 3), index, np.float32), "channel": np.zeros(index % 3 + 1, np.int64),
                "is_protein": np.ones(index % 3 + 1, bool), "index": index}


def test_order_depends_on_seed_and_epoch_only():
    a, b = epoch_order(10, shuffle=True, seed=1, epoch=0), epoch_order(10, shuffle=True, seed=1, epoch=0)
    assert a == b and sorted(a) == list(range(10))
    assert a != epoch_order(10, shuffle=True, seed=1, epoch=1) and a != epoch_order(10, shuffle=True, seed=2, epoch=0)
    assert epoch_order(5, shuffle=False, seed=9, epoch=3) == [0, 1, 2, 3, 4]


def test_ranks_share_an_epoch_evenly():
    shards = [epoch_order(7, shuffle=True, seed=0, epoch=0, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # padded with the order's beginning, as DistributedSampler does
    assert set().union(*shards) == set(range(7))


def test_loader_keeps_the_last_partial_batch_and_skips_seen_batches():
    items = _Items(10)
    full = [batch["index"].tolist() for batch in make_loader(items, 4, shuffle=True, seed=0, epoch=2, num_workers=0)]
    assert [len(b) for b in full] == [4, 4, 2] and sorted(sum(full, [])) == list(range(10))
    resumed = [batch["index"].tolist()
               for batch in make_loader(items, 4, shuffle=True, seed=0, epoch=2, num_workers=0, skip_batches=1)]
    assert resumed == full[1:] and items.epochs == [2, 2]
    padded = next(iter(make_loader(items, 4, shuffle=False, seed=0, epoch=0, num_workers=0)))
    assert padded["xyz_A"].shape == (4, 3, 3) and padded["channel"][0, 1:].tolist() == [-1, -1]  # -1 marks padding
