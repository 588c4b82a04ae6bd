"""`lba pretrain`, `lba finetune` and `lba sweep`.

Config options come from the config fields (`lba_cli.cli.options`): ``Pretrain("--lr")``
is the ``--lr`` option with pre-training's default in its help, and
`config_overrides` gathers what was given. The two training commands share one body, `_train`.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from lba_cli.choices import RunKind
from lba_cli.cli.common import Force, Quiet, RunsDir, friendly_errors, render_frame, stderr, stdout, store_from
from lba_cli.cli.options import ConfigOptions, Finetune, Pretrain, config_overrides

ConfigFile = Annotated[Optional[Path], typer.Option("--config",
                                                    help="TOML file of settings (command-line options override it; "
                                                         "see --print-config).", exists=True, dir_okay=False,
                                                             rich_help_panel="System", show_default=False)]
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the resolved settings as TOML and exit.",
                                           rich_help_panel="System")]
Resume = Annotated[Optional[str], typer.Option("--resume",
                                               help="Continue a stopped run (id, prefix, name or directory) from its "
                                                    "last checkpoint; with --epochs N, train it to N epochs in all. "
                                                    "--lr, --weight-decay, --patience, --device and --workers change "
                                                    "the rest of the run (recorded in its log); other options that "
                                                    "differ from the run's are refused.", rich_help_panel="System",
                                                        show_default=False)]
Seeds = Annotated[Optional[str], typer.Option("--seeds",
                                              help='Run replicates as sibling runs of one group, one per seed: '
                                                   '--seeds "0 1 2" or --seeds 0,1,2.', rich_help_panel="System",
                                                       show_default=False)]


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
    stderr.print(f"run {run.id}: {status['status']}, best epoch {status.get('best_epoch')}", highlight=False,
                 markup=False)
    # a line per split (one 250-character line wrapped mid-number before); Rich wraps between words
    for split in ("val", "test"):
        shown = "  ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in sorted(metrics.items())
                          if k.startswith(f"{split}/") and not k.endswith("/n"))
        if shown:
            stderr.print(f"  {split}: {shown}", highlight=False, markup=False, soft_wrap=False)
    stdout.print(run.id)


_NEEDS = {RunKind.pretrain: ("structures", "--structures", "give --structures DIR_OR_FILE (repeat for more)"),
          RunKind.finetune: ("data", "DATA", "give the DATA.h5 written by lba voxelize")}


def _train(kind: RunKind, command: Any, values: dict[str, Any]) -> None:
    """What pretrain and finetune share: resume a run, or build its config, then print or run it."""
    from lba_cli.progress import ProgressReporter

    reporter = ProgressReporter(stderr, quiet=values["quiet"])
    store = store_from(values["runs_dir"])
    from lba_cli.config import build_run_config, config_to_toml

    if values["resume"]:
        from lba_cli.resume import plan_resume, resume_run

        for option, given in (("--seeds", values.get("seeds")), ("--config", values["config_file"])):
            if given:
                raise typer.BadParameter(f"{option} cannot be combined with --resume (the run's own config.json "
                                         "defines it; give the settings to change as options)", param_hint=option)
        plan = plan_resume(store, values["resume"], kind=kind.value, overrides=config_overrides(command, values),
                           force=values["force"])
        if values["print_config"]:
            stdout.print(config_to_toml(plan.config), end="", highlight=False, markup=False)
            return
        _summary(resume_run(store, plan, reporter))
        return

    parameter, hint, message = _NEEDS[kind]
    if not values[parameter] and values["config_file"] is None:
        raise typer.BadParameter(f"{message}, or --resume RUN", param_hint=hint)
    config = build_run_config(kind, values["config_file"], config_overrides(command, values))
    if values["print_config"]:
        stdout.print(config_to_toml(config), end="", highlight=False, markup=False)
        return
    if kind is RunKind.pretrain:
        from lba_cli.pretrain import pretrain as run

        _summary(run(config, store, reporter))
    elif values.get("seeds"):
        from lba_cli.finetune import finetune_replicates

        for replicate in finetune_replicates(config, parse_seeds(values["seeds"]), store, reporter):
            _summary(replicate)
    else:
        from lba_cli.finetune import finetune as run

        _summary(run(config, store, reporter))


@friendly_errors
def pretrain(
    structures: Pretrain("--structures") = None,
    exclude_ids: Pretrain("--exclude-ids") = None,
    exclude_similar_to: Pretrain("--exclude-similar-to") = None,
    max_identity: Pretrain("--max-identity") = None,
    pad: Pretrain("--pad") = None,
    angle: Pretrain("--angle") = None,
    epoch_size: Pretrain("--epoch-size") = None,
    val_size: Pretrain("--val-size") = None,
    val_fraction: Pretrain("--val-fraction") = None,
    min_density: Pretrain("--min-density") = None,
    curriculum: Pretrain("--curriculum") = None,
    balance_shortcut: Pretrain("--balance-shortcut") = None,
    pilot_pairs: Pretrain("--pilot-pairs") = None,
    box_size: Pretrain("--box-size") = None,
    resolution: Pretrain("--resolution") = None,
    radius: Pretrain("--radius") = None,
    channels: Pretrain("--channels") = None,
    protein_channel: Pretrain("--protein-channel") = None,
    keep_hydrogens: Pretrain("--keep-hydrogens") = None,
    keep_water: Pretrain("--keep-water") = None,
    arch: Pretrain("--arch") = None,
    width: Pretrain("--width") = None,
    bottleneck_divisor: Pretrain("--bottleneck-divisor") = None,
    blocks: Pretrain("--blocks") = None,
    pair_head: Pretrain("--pair-head") = None,
    dropout: Pretrain("--dropout") = None,
    epochs: Pretrain("--epochs") = None,
    batch_size: Pretrain("--batch-size") = None,
    lr: Pretrain("--lr") = None,
    weight_decay: Pretrain("--weight-decay") = None,
    schedule: Pretrain("--schedule") = None,
    warmup_epochs: Pretrain("--warmup-epochs") = None,
    clip_grad_norm: Pretrain("--clip-grad-norm") = None,
    ema: Pretrain("--ema") = None,
    precise_bn: Pretrain("--precise-bn") = None,
    patience: Pretrain("--patience") = None,
    seed: Pretrain("--seed") = None,
    device: Pretrain("--device") = None,
    deterministic: Pretrain("--deterministic") = None,
    workers: Pretrain("--workers") = None,
    name: Pretrain("--name") = None,
    runs_dir: RunsDir = None,
    resume: Resume = None,
    force: Force = False,
    config_file: ConfigFile = None,
    print_config: PrintConfig = False,
    quiet: Quiet = False,
) -> None:
    """Pre-train an encoder on protein structures with the neighbor-location task.

    Example: [bold]lba pretrain --structures bm5.h5 --exclude-similar-to lba.h5 --pad 1 2 --angle 20 --epochs 5[/]
    (bm5.h5 from lba corpus ../shared/data/proteins_bm5 -o bm5.h5; a folder works too)
    """
    _train(RunKind.pretrain, pretrain, locals())


@friendly_errors
def finetune(
    data: Finetune("DATA") = None,
    init: Finetune("--init") = None,
    freeze: Finetune("--freeze") = None,
    unfreeze_after: Finetune("--unfreeze-after") = None,
    rotate: Finetune("--rotate") = None,
    standardize_targets: Finetune("--standardize-targets") = None,
    arch: Finetune("--arch") = None,
    width: Finetune("--width") = None,
    bottleneck_divisor: Finetune("--bottleneck-divisor") = None,
    blocks: Finetune("--blocks") = None,
    head_hidden: Finetune("--head-hidden") = None,
    dropout: Finetune("--dropout") = None,
    epochs: Finetune("--epochs") = None,
    batch_size: Finetune("--batch-size") = None,
    lr: Finetune("--lr") = None,
    encoder_lr_scale: Finetune("--encoder-lr-scale") = None,
    weight_decay: Finetune("--weight-decay") = None,
    schedule: Finetune("--schedule") = None,
    warmup_epochs: Finetune("--warmup-epochs") = None,
    clip_grad_norm: Finetune("--clip-grad-norm") = None,
    ema: Finetune("--ema") = None,
    precise_bn: Finetune("--precise-bn") = None,
    patience: Finetune("--patience") = None,
    seed: Finetune("--seed") = None,
    seeds: Seeds = None,
    device: Finetune("--device") = None,
    deterministic: Finetune("--deterministic") = None,
    workers: Finetune("--workers") = None,
    name: Finetune("--name") = None,
    runs_dir: RunsDir = None,
    resume: Resume = None,
    force: Force = False,
    config_file: ConfigFile = None,
    print_config: PrintConfig = False,
    quiet: Quiet = False,
) -> None:
    """Fine-tune on pK regression from random init or a pre-trained encoder; evaluates val and test.

    Example: [bold]lba finetune demo.h5 --init 20261130-101500-ab12 --epochs 20 --seeds "0 1 2"[/]
    """
    _train(RunKind.finetune, finetune, locals())


SweepPretrain = ConfigOptions(RunKind.pretrain, prefix="pretrain")
SweepFinetune = ConfigOptions(RunKind.finetune, prefix="finetune")
SweepBoth = ConfigOptions(targets=("pretrain", "finetune"))


@friendly_errors
def sweep(
    difficulty: Annotated[list[str], typer.Option("--difficulty",
                                                  help="A pre-training difficulty MIN-MAX-ANGLE, as runs are labelled "
                                                       "(1-2-20 is --pad 1 2 --angle 20); repeat for more.",
                                                           rich_help_panel="Task", show_default=False)],
    structures: Pretrain("--structures", required=True),
    data: Finetune("DATA", as_option="--data", required=True),
    seeds: Annotated[str, typer.Option("--seeds",
                                       help='Fine-tuning seeds, e.g. "0 1 2" (pre-training uses the first).',
                                           rich_help_panel="System")] = "0 1 2",
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="Folder for sweep.csv, sweep.md, sweep.png, sweep.json.",
                                             file_okay=False)] = Path("sweep"),
    epoch_size: Pretrain("--epoch-size") = None,
    val_size: Pretrain("--val-size") = None,
    exclude_similar_to: Pretrain("--exclude-similar-to") = None,
    max_identity: Pretrain("--max-identity") = None,
    pretrain_epochs: SweepPretrain("--epochs") = None,
    pretrain_batch_size: SweepPretrain("--batch-size") = None,
    finetune_epochs: SweepFinetune("--epochs") = None,
    finetune_batch_size: SweepFinetune("--batch-size") = None,
    arch: SweepBoth("--arch") = None,
    width: SweepBoth("--width") = None,
    lr: SweepBoth("--lr") = None,
    patience: SweepBoth("--patience") = None,
    device: SweepBoth("--device") = None,
    workers: SweepBoth("--workers") = None,
    runs_dir: RunsDir = None,
    quiet: Quiet = False,
) -> None:
    """Pre-train at each difficulty, fine-tune each (full and frozen) and random controls per seed.

    Pre-training never sees the val/test proteins of --data: they are always excluded by sequence identity.

    Example: [bold]lba sweep --structures proteins/ --data lba.h5 --difficulty 1-2-20 --difficulty 1-6-20 -o sweep[/]
    """
    import dataclasses

    from lba_cli.cli.common import OutputFormat
    from lba_cli.config import NeighborConfig, build_run_config
    from lba_cli.progress import ProgressReporter
    from lba_cli.sweep import SweepPlan, run_sweep

    pre = build_run_config(RunKind.pretrain, None, config_overrides(sweep, locals(), target="pretrain"))
    # The sweep's own --data is always excluded by sequence identity: its val/test proteins
    # must not be seen in pre-training.
    pre = dataclasses.replace(pre, exclude_similar_to=tuple(dict.fromkeys((str(data), *pre.exclude_similar_to))))
    tune = build_run_config(RunKind.finetune, None, config_overrides(sweep, locals(), target="finetune"))
    settings = tuple(NeighborConfig.parse_label(label) for label in dict.fromkeys(difficulty))
    plan = SweepPlan(pre, tune, settings, tuple(parse_seeds(seeds)), output)
    stderr.print(f"sweep: {len(settings)} difficulties x {len(plan.seeds)} seeds: {len(settings)} pre-trainings, "
                 f"{len(plan.seeds) * (1 + 2 * len(settings))} fine-tunings", highlight=False)
    result = run_sweep(plan, store_from(runs_dir), ProgressReporter(stderr, quiet=quiet))
    render_frame(result.table, OutputFormat.table,
                 title=f"sweep {result.group} (mean ± sample std over seeds, ddof 1, blank for one seed; ens: the "
                       "seeds' mean prediction)")
    stdout.print(f"table: {result.table_path}\nfigure: {result.figure_path}", highlight=False, markup=False)
