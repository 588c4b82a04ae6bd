"""`lba pretrain` and `lba finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from lba_cli.models.registry import DEFAULT_ARCH, describe_architectures
from lba_cli.cli.common import Device, Name, Quiet, RunsDir, Seed, friendly_errors, stderr, stdout, store_from

Arch = Annotated[Optional[str], typer.Option("--arch", help=f"{describe_architectures()} (default: {DEFAULT_ARCH}, or the --init run's).", rich_help_panel="Model", show_default=False)]
Widths = Annotated[Optional[list[int]], typer.Option("--width", help="Stem then stage widths, repeated (e.g. --width 64 --width 128 ...).", rich_help_panel="Model", show_default=False)]
HeadHidden = Annotated[Optional[int], typer.Option("--head-hidden", help="Hidden units of the regression head (default: 256).", rich_help_panel="Model", show_default=False)]
BottleneckDivisor = Annotated[Optional[int], typer.Option("--bottleneck-divisor", help="Bottleneck width = block input / this (default: 4).", rich_help_panel="Model", show_default=False)]
Blocks = Annotated[Optional[int], typer.Option("--blocks", help="Residual blocks per stage (default: 1).", rich_help_panel="Model", show_default=False)]
Dropout = Annotated[Optional[float], typer.Option("--dropout", help="Dropout in the head(s) (default: 0.5).", rich_help_panel="Model", show_default=False)]
Epochs = Annotated[Optional[int], typer.Option("--epochs", help="Epochs to train.", rich_help_panel="Optimization", show_default=False)]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Examples per step.", rich_help_panel="Optimization", show_default=False)]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate (default: 1e-3).", rich_help_panel="Optimization", show_default=False)]
Patience = Annotated[Optional[int], typer.Option("--patience", help="Stop after this many epochs without a better val loss.", rich_help_panel="Optimization", show_default=False)]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Data-loading worker processes (default: 0).", rich_help_panel="System", show_default=False)]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="TOML file of settings (command-line options override it; see --print-config).", exists=True, dir_okay=False, rich_help_panel="System", show_default=False)]
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the resolved settings as TOML and exit.", rich_help_panel="System")]
Resume = Annotated[Optional[str], typer.Option("--resume", help="Continue a stopped run (id, prefix, name or directory) from its last checkpoint; with --epochs N, train it to N epochs in all. Other options are ignored.", rich_help_panel="System", show_default=False)]


def _model_options(arch: str | None, widths: list[int] | None, dropout: float | None, head_hidden: int | None = None,
                   bottleneck_divisor: int | None = None, blocks: int | None = None) -> dict[str, Any]:
    return {"arch": arch, "widths": list(widths) if widths else None, "dropout": dropout,
            "head_hidden": head_hidden, "bottleneck_divisor": bottleneck_divisor, "blocks": blocks}


def parse_seeds(text: str) -> list[int]:
    """``"0 1 2"`` or ``"0,1,2"`` -> [0, 1, 2]."""
    try:
        seeds = [int(word) for word in text.replace(",", " ").split()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of integers, e.g. \"0 1 2\"", param_hint="--seeds") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise typer.BadParameter(f"{text!r}: give distinct seeds, e.g. \"0 1 2\"", param_hint="--seeds")
    return seeds


def _summary(run: Any) -> None:
    if run is None:  # a torch.distributed rank other than 0: rank 0 reports
        return
    status = run.status
    metrics = status.get("metrics", {})
    shown = "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith(("val/", "test/"))
                      and not k.endswith("/n"))
    stderr.print(f"run {run.id}: {status['status']}, best epoch {status.get('best_epoch')}; {shown}",
                 highlight=False, soft_wrap=True)
    stdout.print(run.id)


@friendly_errors
def pretrain(
    structures: Annotated[Optional[list[Path]], typer.Option("--structures", help="Structure files or folders (PDB, mmCIF, PDBQT, .gz) or lba voxelize .h5; repeat for more.", rich_help_panel="Data", show_default=False)] = None,
    pad: Annotated[Optional[tuple[float, float]], typer.Option("--pad", help="Minimum and maximum padding between the views, Å (default: 1 2).", rich_help_panel="Task", show_default=False)] = None,
    angle: Annotated[Optional[float], typer.Option("--angle", help="Maximum turn of the neighbour view, degrees (default: 20).", rich_help_panel="Task", show_default=False)] = None,
    epoch_size: Annotated[Optional[int], typer.Option("--epoch-size", help="Training view pairs per epoch (default: 2048).", rich_help_panel="Task", show_default=False)] = None,
    val_size: Annotated[Optional[int], typer.Option("--val-size", help="Fixed validation view pairs (default: 512).", rich_help_panel="Task", show_default=False)] = None,
    curriculum: Annotated[Optional[int], typer.Option("--curriculum", help="Ramp padding noise and angle from 0 over N epochs.", rich_help_panel="Task", show_default=False)] = None,
    exclude_ids: Annotated[Optional[Path], typer.Option("--exclude-ids", help="File of structure ids to leave out (e.g. downstream val/test proteins).", exists=True, dir_okay=False, rich_help_panel="Data")] = None,
    box_size: Annotated[Optional[int], typer.Option("--box-size", help="Voxels per side (default: 21).", rich_help_panel="Grid", show_default=False)] = None,
    resolution: Annotated[Optional[float], typer.Option("--resolution", help="Voxel edge, Å (default: 1.0).", rich_help_panel="Grid", show_default=False)] = None,
    arch: Arch = None,
    width: Widths = None,
    bottleneck_divisor: BottleneckDivisor = None,
    blocks: Blocks = None,
    dropout: Dropout = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    patience: Patience = None,
    seed: Seed = None,
    device: Device = None,
    workers: Workers = None,
    name: Name = None,
    runs_dir: RunsDir = None,
    resume: Resume = None,
    config_file: ConfigFile = None,
    print_config: PrintConfig = False,
    quiet: Quiet = False,
) -> None:
    """Pre-train an encoder on protein structures with the neighbor-location task.

    Example: [bold]lba pretrain --structures ../shared/data/proteins_bm5 --pad 1 2 --angle 20 --epochs 5[/]
    """
    from lba_cli.pretrain import pretrain as run_pretrain
    from lba_cli.pretrain import read_exclude_ids
    from lba_cli.progress import ProgressReporter
    from lba_cli.resume import resume_run

    if resume:
        _summary(resume_run(store_from(runs_dir), resume, ProgressReporter(stderr, quiet=quiet), kind="pretrain",
                            num_epochs=epochs))
        return

    from lba_cli.config import build_run_config, config_to_toml

    if not structures and config_file is None:
        raise typer.BadParameter("give --structures DIR_OR_FILE (repeat for more), or --resume RUN",
                                 param_hint="--structures")
    config = build_run_config("pretrain", config_file, {
        "neighbor": {"pad_min_A": pad[0] if pad else None, "pad_max_A": pad[1] if pad else None, "angle_deg": angle,
                     "epoch_size": epoch_size, "val_size": val_size, "curriculum_epochs": curriculum},
        "grid": {"box_size_voxels": box_size, "resolution_A": resolution},
        "model": _model_options(arch, width, dropout, bottleneck_divisor=bottleneck_divisor, blocks=blocks),
        "train": {"num_epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed,
                  "device": device, "num_workers": workers},
        "structures": [str(p) for p in structures] if structures else None,
        "exclude_ids": sorted(read_exclude_ids(exclude_ids)) if exclude_ids else None,
        "name": name,
    })
    if print_config:
        stdout.print(config_to_toml(config), end="", highlight=False, markup=False)
        return
    _summary(run_pretrain(config, store_from(runs_dir), ProgressReporter(stderr, quiet=quiet)))


@friendly_errors
def finetune(
    data: Annotated[Optional[Path], typer.Argument(help="HDF5 file from lba voxelize (not needed with --resume).", exists=True, dir_okay=False, show_default=False)] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="random, or a pre-training run (id, prefix, name or directory) (default: random).", rich_help_panel="Model", show_default=False)] = None,
    freeze: Annotated[bool, typer.Option("--freeze", help="Train the head only (encoder BatchNorm in eval mode).", rich_help_panel="Model")] = False,
    unfreeze_after: Annotated[Optional[int], typer.Option("--unfreeze-after", help="Train the head only for N epochs, then everything.", rich_help_panel="Model", show_default=False)] = None,
    encoder_lr_scale: Annotated[Optional[float], typer.Option("--encoder-lr-scale", help="Encoder learning rate = --lr times this (default: 1).", rich_help_panel="Optimization", show_default=False)] = None,
    arch: Arch = None,
    width: Widths = None,
    bottleneck_divisor: BottleneckDivisor = None,
    blocks: Blocks = None,
    head_hidden: HeadHidden = None,
    dropout: Dropout = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    patience: Patience = None,
    no_rotate: Annotated[bool, typer.Option("--no-rotate", help="Do not rotate training examples.", rich_help_panel="Data")] = False,
    seed: Seed = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help='Run replicates as sibling runs of one group, one per seed: --seeds "0 1 2" or --seeds 0,1,2.', rich_help_panel="System", show_default=False)] = None,
    device: Device = None,
    workers: Workers = None,
    name: Name = None,
    runs_dir: RunsDir = None,
    resume: Resume = None,
    config_file: ConfigFile = None,
    print_config: PrintConfig = False,
    quiet: Quiet = False,
) -> None:
    """Fine-tune on pK regression from random init or a pre-trained encoder; evaluates val and test.

    Example: [bold]lba finetune demo.h5 --init 20261130-101500-ab12 --epochs 20 --seeds "0 1 2"[/]
    """
    from lba_cli.finetune import finetune as run_finetune
    from lba_cli.finetune import finetune_replicates
    from lba_cli.progress import ProgressReporter
    from lba_cli.resume import resume_run

    if resume:
        _summary(resume_run(store_from(runs_dir), resume, ProgressReporter(stderr, quiet=quiet), kind="finetune",
                            num_epochs=epochs))
        return

    from lba_cli.config import build_run_config, config_to_toml

    if data is None and config_file is None:
        raise typer.BadParameter("give the DATA.h5 written by lba voxelize, or --resume RUN", param_hint="DATA")
    config = build_run_config("finetune", config_file, {
        "model": _model_options(arch, width, dropout, head_hidden, bottleneck_divisor, blocks),
        "train": {"num_epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed,
                  "device": device, "num_workers": workers},
        "finetune": {"data_path": str(data) if data else None, "init": init, "freeze": freeze or None,
                     "unfreeze_after": unfreeze_after, "encoder_lr_scale": encoder_lr_scale,
                     "rotate": False if no_rotate else None},
        "name": name,
    })
    if print_config:
        stdout.print(config_to_toml(config), end="", highlight=False, markup=False)
        return
    reporter = ProgressReporter(stderr, quiet=quiet)
    if seeds:
        for run in finetune_replicates(config, parse_seeds(seeds), store_from(runs_dir), reporter):
            _summary(run)
    else:
        _summary(run_finetune(config, store_from(runs_dir), reporter))


def parse_pad(text: str) -> tuple[float, float]:
    """``"1-2"``, ``"1,2"`` or ``"1 2"`` -> (1.0, 2.0)."""
    parts = text.replace(",", " ").replace("-", " ").split()
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not MIN-MAX padding in Å, e.g. 1-2", param_hint="--pad") from None
    return lo, hi


@friendly_errors
def sweep(
    structures: Annotated[list[Path], typer.Option("--structures", help="Pre-training structures (repeat for more).", rich_help_panel="Data", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="HDF5 file from lba voxelize to fine-tune on.", exists=True, dir_okay=False, rich_help_panel="Data", show_default=False)],
    pad: Annotated[list[str], typer.Option("--pad", help="Padding range MIN-MAX in Å, repeated (e.g. --pad 1-1 --pad 1-2 --pad 1-4).", rich_help_panel="Task", show_default=False)],
    angle: Annotated[list[float], typer.Option("--angle", help="Maximum angle in degrees, repeated (e.g. --angle 0 --angle 20).", rich_help_panel="Task", show_default=False)],
    seeds: Annotated[str, typer.Option("--seeds", help='Fine-tuning seeds, e.g. "0 1 2" (pre-training uses the first).', rich_help_panel="System")] = "0 1 2",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for sweep.csv, sweep.md, sweep.png, sweep.json.", file_okay=False)] = Path("sweep"),
    pretrain_epochs: Annotated[Optional[int], typer.Option("--pretrain-epochs", help="Pre-training epochs (default: 10).", rich_help_panel="Optimization", show_default=False)] = None,
    epoch_size: Annotated[Optional[int], typer.Option("--epoch-size", help="Pre-training view pairs per epoch (default: 2048).", rich_help_panel="Task", show_default=False)] = None,
    val_size: Annotated[Optional[int], typer.Option("--val-size", help="Fixed validation view pairs (default: 512).", rich_help_panel="Task", show_default=False)] = None,
    pretrain_batch_size: Annotated[Optional[int], typer.Option("--pretrain-batch-size", help="View pairs per step (default: 64).", rich_help_panel="Optimization", show_default=False)] = None,
    finetune_epochs: Annotated[Optional[int], typer.Option("--finetune-epochs", help="Fine-tuning epochs (default: 20).", rich_help_panel="Optimization", show_default=False)] = None,
    batch_size: BatchSize = None,
    patience: Patience = None,
    lr: Lr = None,
    arch: Arch = None,
    device: Device = None,
    runs_dir: RunsDir = None,
    quiet: Quiet = False,
) -> None:
    """Pre-train at each difficulty (pads x angles), fine-tune each (full and frozen) and random controls per seed.

    Example: [bold]lba sweep --structures ../shared/data/proteins_bm5 --data lba.h5 --pad 1-2 --pad 1-4 --angle 0 --angle 20 --seeds "0 1 2" -o sweep[/]
    """
    from lba_cli.cli.common import render_frame, OutputFormat
    from lba_cli.config import build_run_config
    from lba_cli.progress import ProgressReporter
    from lba_cli.sweep import SweepPlan, plan_settings, run_sweep

    train = {"lr": lr, "device": device, "patience": patience}
    pre = build_run_config("pretrain", None, {
        "structures": [str(p) for p in structures], "model": {"arch": arch},
        "neighbor": {"epoch_size": epoch_size, "val_size": val_size},
        "train": {**train, "num_epochs": pretrain_epochs, "batch_size": pretrain_batch_size}})
    tune = build_run_config("finetune", None, {
        "finetune": {"data_path": str(data)}, "train": {**train, "num_epochs": finetune_epochs, "batch_size": batch_size}})
    settings = plan_settings([parse_pad(p) for p in pad], angle)
    plan = SweepPlan(pre, tune, settings, tuple(parse_seeds(seeds)), output)
    stderr.print(f"sweep: {len(settings)} difficulties x {len(plan.seeds)} seeds: {len(settings)} pre-trainings, "
                 f"{len(plan.seeds) * (1 + 2 * len(settings))} fine-tunings", highlight=False)
    result = run_sweep(plan, store_from(runs_dir), ProgressReporter(stderr, quiet=quiet))
    render_frame(result.table, OutputFormat.table, title=f"sweep {result.group} (mean ± population std over seeds)")
    stdout.print(f"table: {result.table_path}\nfigure: {result.figure_path}", highlight=False)
