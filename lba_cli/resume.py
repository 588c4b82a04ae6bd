"""`--resume RUN`: continue a stopped or crashed run from its ``last`` checkpoint."""

from __future__ import annotations

from lba_cli.checkpoints import load_checkpoint
from lba_cli.config import run_config_from_json
from lba_cli.distributed import shutdown_distributed, unwrap
from lba_cli.errors import StoreError
from lba_cli.runs import Run, RunStore, utc_now
from lba_cli.train import NullReporter, Reporter, fit

__all__ = ["resume_run"]


def resume_run(store: RunStore, ref: str, reporter: Reporter | None = None, kind: str | None = None,
               num_epochs: int | None = None) -> Run | None:
    """Continue a run where its ``last`` checkpoint left it.

    The run's own config.json defines everything (data, model, task, seed); the checkpoint
    brings the weights, optimizer state, random-generator state, metric history and, after
    an interruption mid-epoch, the position in that epoch. A run with no ``last`` (stopped in
    its first epoch) starts over in the same directory.

    Args:
        store: the run store.
        ref: run id, prefix, name or directory.
        reporter: progress sink.
        kind: ``pretrain`` or ``finetune`` when the command implies one (checked).
        num_epochs: train up to this many epochs in all (extends a completed run too). The
            run's config.json records the new total, and its log the change.

    Raises:
        StoreError: if the run is still running, of another kind, or already completed and
            not extended.
    """
    from lba_cli.finetune import finish_finetune, prepare_finetune
    from lba_cli.pretrain import prepare_pretrain

    run = store.resolve(ref)
    status = run.status
    if kind is not None and run.kind != kind:
        raise StoreError(f"run {run.id} is a {run.kind} run\nexpected: `lba {run.kind} --resume {run.id}`")
    if status["status"] == "running":
        raise StoreError(f"run {run.id} is still running (pid {status.get('pid')} on {status.get('host')})\n"
                         "expected: a stopped run (interrupted, failed or crashed)")
    done = int(status.get("epochs_done") or 0)
    config = run_config_from_json(run.config)
    if num_epochs is not None and num_epochs != config.train.num_epochs:
        if num_epochs <= done:
            raise StoreError(f"run {run.id} has done {done} epoch(s) already\nexpected: --epochs above {done}")
        import dataclasses
        import json

        from lba_cli.atomic import write_text_atomic
        from lba_cli.config import config_to_dict

        config = dataclasses.replace(config, train=dataclasses.replace(config.train, num_epochs=num_epochs))
        extended = {**run.config, "train": config_to_dict(config.train)}
        write_text_atomic(run.path / "config.json", json.dumps(extended, indent=2, sort_keys=True))
        run.log(f"num_epochs changed to {num_epochs} for --resume")
    elif status["status"] == "completed":
        raise StoreError(f"run {run.id} already completed its {done} epoch(s)\n"
                         "expected: an interrupted, failed or crashed run, or --epochs N to train it longer")
    prepared = prepare_pretrain(config) if run.kind == "pretrain" else prepare_finetune(config, store, load_init=False)
    ctx = prepared.ctx
    reporter = reporter if (reporter is not None and ctx.is_main) else NullReporter()
    payload = None
    if run.checkpoint_path("last").is_file():
        payload = load_checkpoint(run.checkpoint_path("last"), map_location=prepared.device)
        # With a weight average, `model` is the average and `train_model` the trained weights.
        unwrap(prepared.model).load_state_dict(payload.get("train_model", payload["model"]))
        prepared.optimizer.load_state_dict(payload["optimizer"])
    if not ctx.is_main:
        run = None
    else:
        import os
        import socket

        run.update_status(pid=os.getpid(), host=socket.gethostname(), resumed_at=utc_now())
        where = f"epoch {payload['epoch']}" if payload else "the start (no checkpoint yet)"
        if payload and payload.get("partial"):
            where += f", batch {payload['partial']['next_batch']} of epoch {payload['epoch'] + 1}"
        run.log(f"resumed from {where}")
        reporter.message(f"resuming {run.id} from {where}")
    fit(prepared.model, prepared.task, prepared.optimizer, prepared.config.train, run, run.config if run else
        {"kind": config.kind.value}, reporter, prepared.device, resume=payload, ctx=ctx)
    if run is not None:
        if run.kind == "finetune":
            finish_finetune(run, prepared)
        else:
            run.update_status(status="completed", finished_at=utc_now())
    shutdown_distributed(ctx)
    return run
