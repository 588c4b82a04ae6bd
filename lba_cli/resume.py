"""`--resume RUN`: continue a stopped or crashed run from its ``last`` checkpoint.

Resuming happens in two steps. `plan_resume` decides what the resumed run will be: the run's
own config, with the settings given on the command line that may change in the middle of a
run (`CHANGEABLE`), and refuses every other difference with the list of them. `resume_run`
then reads the data, builds the model and loads the checkpoint, and only when all of that
worked writes anything: the new config.json, a log line, a provenance session naming each
change and the epoch it applies from. So an attempt that fails (the data moved, the device
missing, a bad option) leaves the run's config, status and checkpoints as they were, and the
corrected command simply runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lba_cli.config import RunConfig, apply_overrides, config_differences, config_to_dict, run_config_from_json
from lba_cli.errors import ConfigError, StoreError
from lba_cli.runs import Run, RunStore, utc_now

__all__ = ["CHANGEABLE", "ResumePlan", "plan_resume", "resume_run"]

# Settings a resumed run may change, and what the change means. Anything else (the model,
# the task, the batch size, the seed, the data's contents) would make the run's history
# describe a different experiment, so it is refused.
CHANGEABLE: dict[str, str] = {
    "train.num_epochs": "train to this many epochs in all (above the epochs done)",
    "train.lr": "the learning rate of the remaining steps",
    "train.weight_decay": "the weight decay of the remaining steps",
    "train.patience": "early stopping from now on",
    "train.device": "where the remaining steps run",
    "train.num_workers": "data-loading processes (results do not depend on them)",
    "train.deterministic": "deterministic algorithms from now on",
    "finetune.data_path": "a data file moved elsewhere (its SHA-256 must match the recorded one)",
    "structures": "structures moved elsewhere (their SHA-256 must match the recorded one)",
}


@dataclass
class ResumePlan:
    """What `resume_run` will do.

    Attributes:
        run: the run to continue.
        config: its configuration with the accepted changes.
        changes: dotted setting -> (recorded value, new value).
        epochs_done: epochs the run has completed.
        moved: recorded data path -> where it is now (for the provenance record).
        notes: warnings for the user (data checks let through by ``force``).
    """

    run: Run
    config: RunConfig
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    epochs_done: int = 0
    moved: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the user: where the run continues, to which epoch, with which changes."""
        target = self.config.train.num_epochs
        text = (f"resuming {self.run.id}{f' ({self.run.name})' if self.run.name else ''} after epoch "
                f"{self.epochs_done}, training to {target} epoch(s) in all")
        if self.changes:
            text += "; changed from epoch " + str(self.epochs_done + 1) + ": " + ", ".join(
                f"{name} {old!r} -> {new!r}" for name, (old, new) in self.changes.items())
        return text


def plan_resume(store: RunStore, ref: str, *, kind: str | None = None, overrides: dict[str, Any] | None = None,
                force: bool = False) -> ResumePlan:
    """Decide how a run continues, without changing anything.

    Args:
        store: the run store.
        ref: run id, prefix, name or directory.
        kind: ``pretrain`` or ``finetune`` when the command implies one (checked).
        overrides: settings given on the command line, in
            `lba_cli.config.build_run_config`'s layout (None values: not given). Those equal
            to the run's are fine; those in `CHANGEABLE` are applied; any other is refused.
        force: go on when the run's data differs from its recorded SHA-256 (with a note).

    Raises:
        StoreError: if the run is still running, of another kind, or completed and not
            extended.
        ConfigError: listing every setting that differs from the run's and cannot change.
        DataChangedError, DataError: when the run's data changed or is gone.
    """
    from lba_cli.runs.provenance import check_run_data, run_data_paths

    run = store.resolve(ref)
    status = run.status
    if kind is not None and run.kind != kind:
        raise StoreError(f"run {run.id} is a {run.kind} run\nexpected: `lba {run.kind} --resume {run.id}`")
    if status["status"] == "running":
        raise StoreError(f"run {run.id} is still running (pid {status.get('pid')} on {status.get('host')})\n"
                         "expected: a stopped run (interrupted, failed or crashed)")
    recorded = run_config_from_json(run.config)
    overrides = dict(overrides or {})
    init = (overrides.get("finetune") or {}).get("init")
    if init not in (None, "random"):  # a name or prefix means the id the run recorded
        overrides["finetune"] = {**overrides["finetune"], "init": store.resolve(init, kind="pretrain").id}
    config = apply_overrides(recorded, overrides)
    changes = config_differences(recorded, config)
    refused = {name: values for name, values in changes.items() if name not in CHANGEABLE}
    if refused:
        lines = [f"  {_named(name)}: the run has {old!r}, given {new!r}" for name, (old, new) in refused.items()]
        raise ConfigError(f"run {run.id} cannot continue with other settings than it was trained with:\n"
                          + "\n".join(lines) + "\nexpected: leave these options out (the run keeps its own), or "
                          "start a new run; a resumed run may change only " + ", ".join(
                              _flag(name) for name in CHANGEABLE))
    done = int(status.get("epochs_done") or 0)
    target = config.train.num_epochs
    if "train.num_epochs" in changes and target <= done:
        raise ConfigError(f"run {run.id} has done {done} epoch(s) already\nexpected: --epochs above {done} "
                          "(the number of epochs in all)")
    if status["status"] == "completed" and (target <= done or not changes):
        stopped = " (stopped early by --patience)" if done < target else ""
        raise StoreError(f"run {run.id} already completed its {done} epoch(s){stopped}\n"
                         "expected: an interrupted, failed or crashed run, or --epochs N (N > "
                         f"{done}) to train it longer")
    old_paths, new_paths = run_data_paths(run.config), run_data_paths(config_to_dict(config))
    moved = {old: new for (_, old), (_, new) in zip(old_paths, new_paths) if old != new}
    notes = check_run_data(run, force=force, moved=moved)
    return ResumePlan(run, config, changes, done, moved, notes)


def _flag(name: str) -> str:
    """``train.lr`` -> ``--lr``: how the command line names a setting."""
    from lba_cli.config import SECTIONS, cli_option

    section, _, field_name = name.rpartition(".")
    cls = SECTIONS.get(section or None)
    cli = cli_option(cls, field_name) if cls is not None and field_name in cls.__dataclass_fields__ else None
    return cli.name if cli else name


def _named(name: str) -> str:
    flag = _flag(name)
    return name if flag == name else f"{name} ({flag})"


def resume_run(store: RunStore, ref: str | ResumePlan, reporter: Any = None, kind: str | None = None,
               num_epochs: int | None = None, *, overrides: dict[str, Any] | None = None,
               force: bool = False) -> Run | None:
    """Continue a run where its ``last`` checkpoint left it.

    The checkpoint brings the weights, optimizer state, random-generator state, metric
    history and, after an interruption mid-epoch, the position in that epoch. A run with no
    ``last`` (stopped in its first epoch) starts over in the same directory. Nothing about
    the run is written until its data is read, its model built and its checkpoint loaded.

    Args:
        store: the run store.
        ref: run id, prefix, name or directory, or a `ResumePlan` made already.
        reporter: progress sink (`lba_cli.train.Reporter`).
        kind: ``pretrain`` or ``finetune`` when the command implies one (checked).
        num_epochs: train up to this many epochs in all (the same as
            ``overrides={"train": {"num_epochs": N}}``).
        overrides: settings given on the command line (see `plan_resume`).
        force: see `plan_resume`.

    Raises:
        StoreError, ConfigError, DataError: see `plan_resume`.
    """
    from lba_cli.checkpoints import load_checkpoint
    from lba_cli.distributed import shutdown_distributed, unwrap
    from lba_cli.finetune import finish_finetune, prepare_finetune
    from lba_cli.pretrain import prepare_pretrain
    from lba_cli.runs.provenance import add_session, data_records
    from lba_cli.train import NullReporter, fit

    if isinstance(ref, ResumePlan):
        plan = ref
    else:
        overrides = dict(overrides or {})
        if num_epochs is not None:
            overrides["train"] = {**(overrides.get("train") or {}), "num_epochs": num_epochs}
        plan = plan_resume(store, ref, kind=kind, overrides=overrides, force=force)
    run, config = plan.run, plan.config
    # Everything that can fail comes first: the data, the device, the model, the checkpoint.
    prepared = prepare_pretrain(config) if run.kind == "pretrain" else prepare_finetune(config, store, load_init=False)
    payload = None
    if run.checkpoint_path("last").is_file():
        payload = load_checkpoint(run.checkpoint_path("last"), map_location=prepared.device)
        # With a weight average, `model` is the average and `train_model` the trained weights.
        unwrap(prepared.model).load_state_dict(payload.get("train_model", payload["model"]))
        optimizer = prepared.optimizer
        # the schedule scales each group's base_lr (`lba_cli.optim.set_lr`): it changes with lr
        fresh = [{k: group[k] for k in ("lr", "base_lr", "weight_decay") if k in group}
                 for group in optimizer.param_groups]
        optimizer.load_state_dict(payload["optimizer"])
        if {"train.lr", "train.weight_decay"} & set(plan.changes):  # the new values, from the next step on
            for group, values in zip(optimizer.param_groups, fresh):
                group.update(values)
    ctx = prepared.ctx
    reporter = reporter if (reporter is not None and ctx.is_main) else NullReporter()
    config_dict = {**run.config, **config_to_dict(config)} if plan.changes else run.config
    if not ctx.is_main:
        run = None
    else:
        import os
        import socket

        from lba_cli.atomic import write_text_atomic

        if plan.changes:
            write_text_atomic(run.path / "config.json", json.dumps(config_dict, indent=2, sort_keys=True))
            run.log("changed for --resume from epoch " + str(plan.epochs_done + 1) + ": " + ", ".join(
                f"{name} {old!r} -> {new!r}" for name, (old, new) in plan.changes.items()))
        changes = {name: {"from": old, "to": new, "from_epoch": plan.epochs_done + 1}
                   for name, (old, new) in plan.changes.items()}
        add_session(run, prepared.device, changes, data=data_records(config_dict) if plan.moved else None)
        run.update_status(pid=os.getpid(), host=socket.gethostname(), resumed_at=utc_now())
        where = f"epoch {payload['epoch']}" if payload else "the start (no checkpoint yet)"
        if payload and payload.get("partial"):
            where += f", batch {payload['partial']['next_batch']} of epoch {payload['epoch'] + 1}"
        run.log(f"resumed from {where}")
        for note in plan.notes:
            reporter.message(f"warning: {note}")
        reporter.message(plan.describe())
    fit(prepared.model, prepared.task, prepared.optimizer, prepared.config.train, run,
        config_dict if run else {"kind": config.kind.value}, reporter, prepared.device, resume=payload, ctx=ctx)
    if run is not None:
        if run.kind == "finetune":
            finish_finetune(run, prepared)
        else:
            run.update_status(status="completed", finished_at=utc_now())
    shutdown_distributed(ctx)
    return run
