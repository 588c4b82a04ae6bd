"""`lba pretrain`: neighbor-location pre-training of an encoder on protein structures."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lba_cli.config import RunConfig, config_to_dict, read_exclude_ids  # noqa: F401 (public here too)
from lba_cli.devices import autocast_context
from lba_cli.distributed import DistContext, init_distributed, shutdown_distributed, unwrap
from lba_cli.loaders import make_loader
from lba_cli.models import create_model, resolve_model_config
from lba_cli.neighbors import NeighborPairs, load_structures, split_structures
from lba_cli.runs import Run, RunStore, utc_now
from lba_cli.seeding import seed_everything
from lba_cli.train import NullReporter, Reporter, TaskBase, fit
from lba_cli.voxel import voxelize_batch

__all__ = ["NeighborTask", "pretrain", "read_exclude_ids", "prepare_pretrain"]

_PAIR_PREFIXES = ("home_", "neighbor_")


class NeighborTask(TaskBase):
    """Cross-entropy over the 6 faces; accuracy (chance 1/6) on fixed validation pairs."""

    def _loader(self, dataset: NeighborPairs, epoch: int, skip: int = 0, shard: bool = False):
        train = self.config.train
        return make_loader(dataset, train.batch_size, shuffle=False, seed=train.seed, epoch=epoch,
                           num_workers=train.num_workers, prefixes=_PAIR_PREFIXES, skip_batches=skip,
                           rank=self.ctx.rank if shard else 0, world_size=self.ctx.world_size if shard else 1,
                           merge_single_last=shard)  # training batches only: validation runs in eval mode

    def train_batches(self, epoch: int, skip_batches: int = 0):
        return self._loader(self.train_set, epoch, skip_batches, shard=True)  # pairs are fresh and random already

    def prepare_train(self, model: nn.Module, epoch: int) -> None:
        pass

    def _grids(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        d = self.device
        return voxelize_batch(batch[prefix + "xyz_A"].to(d, non_blocking=True), batch[prefix + "channel"].to(d),
                              batch[prefix + "is_protein"].to(d), self.config.grid)

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        home, neighbor = self._grids(batch, "home_"), self._grids(batch, "neighbor_")
        with autocast_context(self.device):
            return model(home, neighbor).float()

    def train_step(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        labels = batch["label"].to(self.device)
        logits = self._logits(model, batch)
        loss = F.cross_entropy(logits, labels)
        correct = float((logits.argmax(1) == labels).sum())
        dense = float(batch["density_ok"].sum())
        n = len(labels)
        return loss, n, {"accuracy": (correct, n), "density_ok": (dense, n)}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        loss_sum, correct, count = 0.0, 0.0, 0
        for batch in self._loader(self.val_set, 0):
            labels = batch["label"].to(self.device)
            logits = self._logits(model, batch)
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += float((logits.argmax(1) == labels).sum())
            count += len(labels)
        model.train(was_training)
        return {"val/loss": loss_sum / count, "val/accuracy": correct / count}


@dataclasses.dataclass
class _Prepared:
    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: NeighborTask
    device: torch.device
    ctx: DistContext
    notes: dict[str, Any]


def prepare_pretrain(config: RunConfig) -> _Prepared:
    """Read the structures and build the model, optimizer and task of a pre-training run.

    Raises:
        DataError: when no structure can be read. ConfigError: on invalid settings.
    """
    train = config.train
    ctx, device = init_distributed(train.device)
    seed_everything(train.seed, train.deterministic)
    structures, skipped = load_structures([Path(p) for p in config.structures], config.grid,
                                          frozenset(config.exclude_ids))
    train_structures, val_structures = split_structures(structures, config.neighbor.val_fraction, train.seed)
    config = dataclasses.replace(config, model=resolve_model_config(config.model))
    model = create_model(config.model, config.grid.num_channels, "neighbor").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    task = NeighborTask(NeighborPairs(train_structures, config.grid, config.neighbor, train.seed, train=True),
                        NeighborPairs(val_structures, config.grid, config.neighbor, train.seed, train=False),
                        config, device, ctx)
    task.check_batches(unwrap(model))
    notes = {"num_structures": len(structures), "num_train_structures": len(train_structures),
             "num_val_structures": len(val_structures), "num_skipped_structures": len(skipped), "skipped": skipped}
    return _Prepared(config, model, optimizer, task, device, ctx, notes)


def pretrain(config: RunConfig, store: RunStore, reporter: Reporter | None = None) -> Run | None:
    """Run neighbor-location pre-training and record it in ``store``.

    Args:
        config: a ``pretrain`` run configuration (structures, grid, model, task, training).
        store: the run store.
        reporter: progress sink (default: none).

    Returns:
        The finished run (None on torch.distributed ranks other than 0); its ``best``
        checkpoint holds the encoder for ``lba finetune --init``.

    Raises:
        DataError: when no structure can be read.
        ConfigError: on invalid settings.
    """
    prepared = prepare_pretrain(config)
    ctx, notes = prepared.ctx, prepared.notes
    reporter = reporter if (reporter is not None and ctx.is_main) else NullReporter()
    config_dict: dict[str, Any] = config_to_dict(prepared.config)
    run = store.create_run(config_dict) if ctx.is_main else None
    if run is not None:
        run.update_status(world_size=ctx.world_size, **{k: v for k, v in notes.items() if k != "skipped"})
        run.log(f"pretrain on {notes['num_structures']} structures ({notes['num_train_structures']} train, "
                f"{notes['num_val_structures']} val), {notes['num_skipped_structures']} left out")
        for path, reason in notes["skipped"]:
            run.log(f"left out {path}: {reason}")
    reporter.message(f"{notes['num_structures']} structures ({notes['num_train_structures']} train / "
                     f"{notes['num_val_structures']} val), {notes['num_skipped_structures']} left out; "
                     f"task {prepared.config.neighbor.label}")
    if prepared.task.batch_note() is not None:
        reporter.message(f"note: {prepared.task.batch_note()}")
    fit(prepared.model, prepared.task, prepared.optimizer, prepared.config.train, run, config_dict, reporter,
        prepared.device, ctx=ctx)
    if run is not None:
        run.update_status(status="completed", finished_at=utc_now())
    shutdown_distributed(ctx)
    return run
