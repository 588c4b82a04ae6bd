"""Loaders: the order of an epoch depends on (seed, epoch) only; resuming and sharding are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lba_cli.loaders import batch_bounds, epoch_order, make_loader


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


BOUNDS = [  # (items, batch size, merge a lone last example, batch sizes)
    (9, 8, True, [9]), (9, 8, False, [8, 1]), (17, 8, True, [8, 9]), (16, 8, True, [8, 8]), (1, 8, True, [1]),
    (10, 3, True, [3, 3, 4]), (3, 1, True, [1, 1, 1]), (0, 4, True, []),
]


@pytest.mark.parametrize("items,size,merge,sizes", BOUNDS, ids=[f"{a}/{b}{'-merge' if m else ''}" for a, b, m, _ in
                                                               BOUNDS])
def test_a_lone_last_training_example_joins_the_batch_before(items, size, merge, sizes):
    bounds = batch_bounds(items, size, merge_single_last=merge)
    assert [stop - start for start, stop in bounds] == sizes
    assert [b[0] for b in bounds[1:]] == [b[1] for b in bounds[:-1]]  # contiguous, nothing lost


def test_merged_loader_sees_every_example_once_and_resumes_exactly():
    items = _Items(9)
    full = [b["index"].tolist() for b in make_loader(items, 4, shuffle=True, seed=0, epoch=1, num_workers=0,
                                                      merge_single_last=True)]
    assert [len(b) for b in full] == [4, 5] and sorted(sum(full, [])) == list(range(9))
    resumed = [b["index"].tolist() for b in make_loader(items, 4, shuffle=True, seed=0, epoch=1, num_workers=0,
                                                         merge_single_last=True, skip_batches=1)]
    assert resumed == full[1:]


def test_batchnorm_sees_one_value_per_channel_only_on_a_small_grid():
    from lba_cli.config import ModelConfig
    from lba_cli.models import create_encoder
    from lba_cli.train import smallest_batchnorm_values

    encoder = create_encoder(ModelConfig(), 7)
    assert smallest_batchnorm_values(encoder, (7, 10, 10, 10)) == 1  # ends at 1x1x1: a batch of one fails in training
    assert smallest_batchnorm_values(encoder, (7, 21, 21, 21)) > 1
    assert encoder.training  # the dry run leaves the mode as it was
