"""`lba finetune`: pK regression from random init or from a pre-trained encoder """

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lba_cli.checkpoints import load_checkpoint
from lba_cli.config import GridConfig, ModelConfig, RunConfig, config_to_dict, run_config_from_json
from lba_cli.data.dataset import AffinityDataset
from lba_cli.data.grids_h5 import read_grid_set
from lba_cli.devices import autocast_context
from lba_cli.distributed import DistContext, init_distributed, shutdown_distributed, unwrap
from lba_cli.errors import CheckpointMismatchError, ConfigError, DataError
from lba_cli.evaluate import evaluate_model
from lba_cli.loaders import make_loader
from lba_cli.models import create_model, resolve_model_config
from lba_cli.optim import make_optimizer
from lba_cli.runs import Run, RunStore, utc_now
from lba_cli.seeding import seed_everything
from lba_cli.train import NullReporter, Reporter, TaskBase, fit
from lba_cli.voxel import voxelize_batch

__all__ = ["AffinityTask", "finetune", "finetune_replicates", "prepare_finetune", "finish_finetune", "target_scale",
           "ARCHITECTURE_FIELDS", "GRID_FIELDS"]

ARCHITECTURE_FIELDS = ("arch", "widths", "bottleneck_divisor", "blocks")
GRID_FIELDS = ("box_size_voxels", "resolution_A", "radius_A", "channels", "protein_channel", "keep_hydrogens",
               "keep_water")


class AffinityTask(TaskBase):
    """MSE on standardised pK; whole-split validation metrics (MAE, RMSE, Pearson r, Spearman ρ).

    ``train/loss`` and ``val/loss`` are mean squared errors of ``(pK - mean) / std``, with the
    training split's mean and std when ``standardize_targets`` is on (else 0 and 1: MSE in
    pK²); the model itself outputs pK (`lba_cli.models.heads.AffinityModel`).

    Args:
        target_std_pk: the std that the errors are divided by. Other arguments: `TaskBase`.
    """

    def __init__(self, *args: Any, target_std_pk: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_std_pk = target_std_pk

    def train_batches(self, epoch: int, skip_batches: int = 0):
        t = self.config.train
        return make_loader(self.train_set, t.batch_size, shuffle=True, seed=t.seed, epoch=epoch,
                           num_workers=t.num_workers, skip_batches=skip_batches, rank=self.ctx.rank,
                           world_size=self.ctx.world_size, merge_single_last=True)

    def prepare_train(self, model: nn.Module, epoch: int) -> None:
        frozen = self.config.finetune.encoder_frozen(epoch)
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            model.encoder.eval()  # BatchNorm statistics stay those of pre-training

    def train_step(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        d = self.device
        grids = voxelize_batch(batch["xyz_A"].to(d, non_blocking=True), batch["channel"].to(d),
                               batch["is_protein"].to(d), self.config.grid)
        target = batch["affinity_pk"].to(d)
        with autocast_context(d):
            predicted = model(grids)  # (B,) float32 pK: the head runs outside autocast
        return F.mse_loss(predicted / self.target_std_pk, target / self.target_std_pk), len(target), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        metrics, _ = evaluate_model(model, self.val_set, self.config.grid, self.device)
        loss = (metrics["rmse"] / self.target_std_pk) ** 2
        return {"val/loss": loss, **{f"val/{k}": v for k, v in metrics.items() if k != "n"}}


def target_scale(affinity_pk: np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation of the training split's pK.

    Args:
        affinity_pk: float array of shape (N,), pK of the training complexes.

    Raises:
        DataError: with fewer than two complexes or all pK equal (nothing to scale by).
    """
    mean, std = float(np.mean(affinity_pk)), float(np.std(affinity_pk))
    if len(affinity_pk) < 2 or not std > 0:
        raise DataError(f"cannot standardise the targets: {len(affinity_pk)} training complex(es), pK std {std:g}\n"
                        "expected: at least two training complexes with different pK, or --no-standardize-targets")
    return mean, std


def _differences(fields: tuple[str, ...], wanted: Any, have: Any) -> list[str]:
    out = []
    for name in fields:
        a, b = getattr(wanted, name), getattr(have, name)
        if a is not None and a != b:
            out.append(f"{name}: requested {a!r}, checkpoint has {b!r}")
    return out


@dataclasses.dataclass
class _Init:
    """The weights a fine-tuning starts from (``--init RUN`` or ``--init EXPORTED_FOLDER``).

    Attributes:
        ref: what ``finetune.init`` records: the parent run's id, or the folder's absolute path.
        model: the resolved model config (the parent's architecture, the request's dropout).
        encoder: the encoder's state_dict.
        head: the regression head's state_dict, from an exported affinity model (else None).
        target_scale: the exported affinity model's pK mean and std (its head's output scale).
        parent: the pre-training run, when the init is one.
        label: how comparisons name the init (the parent's label survives its deletion).
    """

    ref: str
    model: ModelConfig
    encoder: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    parent: Run | None
    label: str
    target_scale: tuple[float, float] | None = None


def _sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _check_fit(source: str, model_config: ModelConfig, data_grid: GridConfig, parent_config: RunConfig) -> None:
    problems = _differences(ARCHITECTURE_FIELDS, model_config, parent_config.model)
    problems += [f"grid {p}".replace("checkpoint has", "the pre-training used").replace("requested", "data file has")
                 for p in _differences(GRID_FIELDS, data_grid, parent_config.grid)]
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit this fine-tuning:\n  " + "\n  ".join(problems))


def _init_from(store: RunStore, ref: str, model_config: ModelConfig, data_grid: GridConfig) -> _Init:
    """Resolve ``--init``: a pre-training run (its encoder) or a folder written by `lba export`
    (its encoder, and its head when it is a fine-tuned model); check that it fits the data and
    the request.

    Raises:
        CheckpointMismatchError: listing every differing architecture and grid field.
        ConfigError: for a fine-tuning run (export it first to start from it).
    """
    from lba_cli.export import is_export_dir, read_export

    if is_export_dir(Path(ref)):
        exported = read_export(Path(ref))
        parent_config = run_config_from_json(exported.config)
        _check_fit(f"exported model {exported.path}", model_config, data_grid, parent_config)
        state = exported.read_weights()
        is_affinity = exported.kind == "finetune"
        resolved = dataclasses.replace(parent_config.model, dropout=model_config.dropout,
                                       head_hidden=parent_config.model.head_hidden if is_affinity
                                       else model_config.head_hidden)
        scale = (float(state.get("target_mean_pk", 0.0)), float(state.get("target_std_pk", 1.0)))
        return _Init(str(exported.path.resolve()), resolved, _sub_state(state, "encoder."),
                     _sub_state(state, "head.") if is_affinity else None, None, exported.label,
                     scale if is_affinity else None)
    parent = store.resolve(ref, kind="pretrain")
    if parent.kind != "pretrain":
        raise ConfigError(f"--init {ref}: run {parent.id} is a {parent.kind} run\n"
                          "expected: random, a pre-training run (lba runs list --kind pretrain) or a folder written "
                          f"by lba export (lba export {parent.id} DIR, then --init DIR)")
    payload = load_checkpoint(parent.checkpoint_path("best"))
    parent_config = run_config_from_json(payload["config"])
    _check_fit(f"run {parent.id}", model_config, data_grid, parent_config)
    resolved = dataclasses.replace(parent_config.model, dropout=model_config.dropout,
                                   head_hidden=model_config.head_hidden)
    from lba_cli.compare import run_label

    return _Init(parent.id, resolved, _sub_state(payload["model"], "encoder."), None, parent,
                 run_label(parent, store))


@dataclasses.dataclass
class _Prepared:
    config: RunConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    task: AffinityTask
    test_set: AffinityDataset
    device: torch.device
    ctx: DistContext
    init: _Init | None


def prepare_finetune(config: RunConfig, store: RunStore, *, load_init: bool = True) -> _Prepared:
    """Read the data and build the model (with the ``--init`` encoder), optimizer and task.

    Args:
        config: the requested configuration (its grid is replaced by the data file's).
        store: for ``--init RUN``.
        load_init: load the pre-trained encoder (False when resuming: ``last`` holds the weights).

    Raises:
        CheckpointMismatchError: when ``--init RUN`` differs from the request or the data in
            architecture or grid, listing every differing field.
    """
    train, tune = config.train, config.finetune
    ctx, device = init_distributed(train.device)
    seed_everything(train.seed, train.deterministic)
    data = read_grid_set(Path(tune.data_path))
    grid = data.grid
    init = None
    if tune.init == "random":
        model_config = resolve_model_config(config.model)
    elif load_init:
        init = _init_from(store, tune.init, config.model, grid)
        model_config = init.model
        tune = dataclasses.replace(tune, init=init.ref)
    else:  # resuming: the run's config is already resolved and `last` holds the weights
        model_config = config.model
    data_path = str(Path(tune.data_path).resolve())
    config = dataclasses.replace(config, grid=grid, model=model_config,
                                 finetune=dataclasses.replace(tune, data_path=data_path))
    model = create_model(model_config, grid.num_channels, "affinity").to(device)
    if init is not None:
        model.encoder.load_state_dict(init.encoder)
        if init.head is not None:
            model.head.load_state_dict(init.head)
    # A head that comes with the init keeps the output scale it was trained for.
    if init is not None and init.target_scale is not None:
        mean_pk, std_pk = init.target_scale
    elif tune.standardize_targets:
        mean_pk, std_pk = target_scale(data.affinity_pk[data.indices("train")].astype(np.float64))
    else:
        mean_pk, std_pk = 0.0, 1.0
    model.set_target_scale(mean_pk, std_pk)
    # One optimizer over both groups, built once, whatever is frozen when (rebuilding it when
    # groups changed crashed resumed freeze/unfreeze schedules in the original work); a
    # frozen parameter has no gradient and AdamW leaves it and its state alone.
    optimizer = make_optimizer([(model.encoder.parameters(), tune.encoder_lr_scale), (model.head.parameters(), 1.0)],
                               train)
    if ctx.enabled and tune.unfreeze_after:
        raise ConfigError("--unfreeze-after is not supported under torchrun (DDP needs a fixed set of trained "
                          "parameters)\nexpected: --freeze, or a single process")
    if tune.freeze:
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    if ctx.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    splits = [AffinityDataset(Path(data_path), split, grid, train.seed, rotate=tune.rotate and split == "train",
                              grid_set=data) for split in ("train", "val", "test")]
    task = AffinityTask(splits[0], splits[1], config, device, ctx=ctx, target_std_pk=std_pk)
    task.check_batches(unwrap(model))
    return _Prepared(config, model, optimizer, task, splits[2], device, ctx, init)


def finish_finetune(run: Run, prepared: _Prepared) -> None:
    """Evaluate the best epoch on val and test, save predictions, mark the run completed."""
    model = unwrap(prepared.model)
    model.load_state_dict(load_checkpoint(run.checkpoint_path("best"), map_location=prepared.device)["model"])
    recorded = dict(run.status.get("metrics", {}))
    for split, dataset in (("val", prepared.task.val_set), ("test", prepared.test_set)):
        metrics, frame = evaluate_model(model, dataset, prepared.config.grid, prepared.device)
        run.write_predictions(split, frame)
        recorded.update({f"{split}/{k}": v for k, v in metrics.items()})
    run.update_status(status="completed", finished_at=utc_now(), metrics=recorded)
    run.log("completed: " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(recorded.items()) if k.startswith("test/")))


def finetune(config: RunConfig, store: RunStore, reporter: Reporter | None = None) -> Run | None:
    """Fine-tune on an `lba voxelize` file, then evaluate the best epoch on val and test.

    Args:
        config: a ``finetune`` run configuration. Its grid is replaced by the data file's.
        store: the run store.
        reporter: progress sink (default: none).

    Returns:
        The finished run (None on torch.distributed ranks other than 0), with
        ``predictions_val.parquet``, ``predictions_test.parquet`` and ``val/*``, ``test/*``
        metrics in its status.

    Raises:
        CheckpointMismatchError: see `prepare_finetune`.
        DataError, RunNotFoundError, ConfigError: on bad inputs.
    """
    prepared = prepare_finetune(config, store)
    ctx, task = prepared.ctx, prepared.task
    reporter = reporter if (reporter is not None and ctx.is_main) else NullReporter()
    config_dict: dict[str, Any] = config_to_dict(prepared.config)
    init = prepared.init
    run = store.create_run(config_dict, parent_id=init.parent.id if init and init.parent else None
                           ) if ctx.is_main else None
    tune = prepared.config.finetune
    start = "" if init is None else (" (encoder and head of an exported model)" if init.head is not None
                                     else " (its encoder)")
    summary = (f"{len(task.train_set)} train / {len(task.val_set)} val / {len(prepared.test_set)} test complexes; "
               f"init {tune.init}{start}{' (frozen encoder)' if tune.freeze else ''}")
    if tune.standardize_targets or (init is not None and init.target_scale is not None):
        bare = unwrap(prepared.model)
        summary += (f"; targets standardised with pK mean {float(bare.target_mean_pk):.3f}, "
                    f"std {float(bare.target_std_pk):.3f}")
    if run is not None:
        # The parent's label is kept in the child, so it survives the parent's deletion.
        run.update_status(world_size=ctx.world_size, parent_label=init.label if init else None)
        run.log(f"finetune on {tune.data_path}: {summary}")
    reporter.message(summary)
    if task.batch_note() is not None:
        reporter.message(f"note: {task.batch_note()}")
        if run is not None:
            run.log(task.batch_note())
    fit(prepared.model, task, prepared.optimizer, prepared.config.train, run, config_dict, reporter, prepared.device,
        ctx=ctx)
    if run is not None:
        finish_finetune(run, prepared)
    shutdown_distributed(ctx)
    return run


def finetune_replicates(config: RunConfig, seeds: list[int], store: RunStore,
                        reporter: Reporter | None = None) -> list[Run]:
    """Fine-tune once per seed: sibling runs tagged with one ``group:<id>`` tag.

    The runs differ only in ``train.seed`` (and name, suffixed ``-s<seed>``), so
    ``lba compare --group`` summarises them as mean ± sample std and their ensemble.
    """
    from lba_cli.runs import new_group_id

    group = new_group_id()
    runs = []
    for seed in seeds:
        name = f"{config.name}-s{seed}" if config.name else None
        replicate = dataclasses.replace(config, name=name, train=dataclasses.replace(config.train, seed=seed))
        run = finetune(replicate, store, reporter)
        if run is not None:
            store.tag(run, add=[f"group:{group}"])
            runs.append(run)
    return runs
