"""The sections of the GPU check (`gpu_check.py run`), in the order they run.

Each section takes the shared `gpu_check.Context`, records its figures through
``ctx.check`` and may raise: the runner then records the section as failed and goes on.
Training goes through lba's public functions (`finetune`, `pretrain`, `build_run_config`),
so the check follows the default recipe wherever it changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpu_check import Context

HERE = Path(__file__).resolve().parent
BATCH = 64  # complexes per voxelizer call, as `make bench` times it


def check_environment(ctx: Context) -> None:
    """The device, and the carried packages: importable, in the carried versions, their requirements met."""
    import importlib.metadata as metadata

    import torch
    from packaging.requirements import Requirement

    name = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "CPU"
    ctx.check.figure("device", f"{name}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
                               f"Python {sys.version.split()[0]}")
    manifest = json.loads((ctx.payload / "manifest.json").read_text()) if (ctx.payload / "manifest.json").is_file() \
        else {"groups": {}, "left_behind": {}}
    ctx.check.record["manifest"] = manifest
    import polars

    carried, unmet = [], []
    for group in manifest["groups"].values():
        for wheel in group["wheels"]:
            name, version = wheel[0].split("-")[:2]
            found = metadata.version(name)
            carried.append(f"{name} {found}")
            if found != version:
                unmet.append(f"{name}: carried {version}, imported {found}")
        for wheel, needs in group["requirements"].items():
            for requirement in map(Requirement, needs):
                try:
                    metadata.version(requirement.name)
                except metadata.PackageNotFoundError:
                    unmet.append(f"{wheel} needs {requirement}: not installed")
    ctx.check.figure("carried_packages", ", ".join(carried) or f"none (polars {polars.__version__} from here)",
                     ok=not unmet, note="; ".join(unmet))


def check_voxelizer(ctx: Context) -> None:
    """CPU kernel vs the tensor path (CUDA) on every demo complex in a random orientation; grids/s of both."""
    import numpy as np
    import torch

    from lba_cli.data.dataset import collate_atoms
    from lba_cli.data.grids_h5 import read_grid_set
    from lba_cli.voxel import make_channel_lookup, random_rotation, voxelize_batch
    from lba_cli.voxel.occupancy import _voxelize_torch

    data = read_grid_set(ctx.data)
    ctx.grid, lookup, rng = data.grid, make_channel_lookup(data.grid), np.random.default_rng(0)
    count = len(data) if ctx.settings.complexes is None else min(len(data), ctx.settings.complexes)
    for i in range(count):
        xyz, numbers, flags = data.atoms(i)
        ctx.atom_sets.append({"xyz_A": ((xyz - data.center_A[i]) @ random_rotation(rng)).astype(np.float32),
                              "channel": lookup[numbers], "is_protein": flags})
    batches = [collate_atoms(ctx.atom_sets[i:i + BATCH]) for i in range(0, count, BATCH)]
    # On CUDA voxelize_batch takes the tensor path; on the CPU that path is called by name.
    on_device = voxelize_batch if ctx.device.type == "cuda" else _voxelize_torch
    moved = [tuple(b[k].to(ctx.device) for k in ("xyz_A", "channel", "is_protein")) for b in batches]
    worst = []
    for batch, (xyz, channel, protein) in zip(batches, moved):
        reference = voxelize_batch(batch["xyz_A"], batch["channel"], batch["is_protein"], ctx.grid)
        grids = on_device(xyz, channel, protein, ctx.grid, None).cpu()
        worst.append((grids - reference).abs().amax(dim=(1, 2, 3, 4)))  # (B, C, X, Y, Z) -> (B,)
    worst = torch.cat(worst)
    over = int((worst >= 1e-4).sum())
    ctx.check.figure("voxelize_max_abs_diff", float(worst.max()), ok=over == 0,
                     note=f"largest |CPU kernel - {ctx.label}| per grid over {count} complexes in random "
                          f"orientations; {over} grids at or over 1e-4")

    def rate(fn, inputs) -> float:
        fn(*inputs[0], ctx.grid, None)  # warm-up: tables, allocator, compilation
        ctx.sync()
        start = time.perf_counter()
        for _ in range(ctx.settings.voxel_passes):
            for xyz, channel, protein in inputs:
                fn(xyz, channel, protein, ctx.grid, None)
        ctx.sync()
        return ctx.settings.voxel_passes * count / (time.perf_counter() - start)

    ctx.check.figure(f"voxelize_{ctx.label}_grids_per_s", rate(on_device, moved))
    cpu_inputs = [(b["xyz_A"], b["channel"], b["is_protein"]) for b in batches]
    ctx.check.figure("voxelize_cpu_grids_per_s", rate(voxelize_batch, cpu_inputs),
                     note=f"compiled kernel, {os.cpu_count()} cores")


def check_molgrid(ctx: Context) -> None:
    """libmolgrid's GridMaker on the same atoms, in its own process (molgrid_bench.py), beside ours."""
    import numpy as np

    manifest = ctx.check.record.get("manifest", {})
    if "molgrid" not in manifest.get("groups", {}):
        why = manifest.get("left_behind", {}).get("molgrid", "not in the payload (make gpu-check-prepare)")
        ctx.check.unavailable(f"ratio_{ctx.label}_vs_molgrid", f"libmolgrid did not travel: {why}")
        return
    grid, xyz, vectors, offsets = ctx.grid, [], [], [0]
    for atoms in ctx.atom_sets:
        keep = atoms["channel"] >= 0
        one_hot = np.zeros((int(keep.sum()), grid.num_channels), np.float32)
        one_hot[np.arange(len(one_hot)), atoms["channel"][keep]] = 1.0
        if grid.protein_channel:
            one_hot[:, -1] = atoms["is_protein"][keep]
        xyz.append(atoms["xyz_A"][keep])
        vectors.append(one_hot)
        offsets.append(offsets[-1] + len(one_hot))
    path = ctx.work / "molgrid_atoms.npz"
    np.savez(path, xyz_A=np.concatenate(xyz), type_vectors=np.concatenate(vectors), offsets=np.array(offsets),
             radius_A=grid.radius_A, box_size_voxels=grid.box_size_voxels, resolution_A=grid.resolution_A,
             num_channels=grid.num_channels)
    result = subprocess.run([sys.executable, str(HERE / "molgrid_bench.py"), str(path),
                             str(ctx.settings.molgrid_passes), ctx.device.type],
                            capture_output=True, text=True, env=ctx.child_env(), timeout=240)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"libmolgrid worker exited {result.returncode}: {result.stderr.strip()[-800:]}")
    theirs = json.loads(lines[-1])
    ours = ctx.check.record["figures"][f"voxelize_{ctx.label}_grids_per_s"]
    ctx.check.figure(f"molgrid_{ctx.device.type}_grids_per_s", theirs["grids_per_s"],
                     note=f"libmolgrid {theirs['molgrid_version']} GridMaker, one complex per call (its API)")
    ctx.check.figure(f"ratio_{ctx.label}_vs_molgrid", ours / theirs["grids_per_s"],
                     note="our grids/s over libmolgrid's on the same atoms and grid; fill rules differ")


class _TimedReporter:
    """A progress reporter that notes when each training step ended (before passing it on)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.steps: list[tuple[int, float, int]] = []  # (epoch, perf_counter, samples)

    def step(self, *, epoch: int, step: int, loss: float, num_samples: int) -> None:
        self.steps.append((epoch, time.perf_counter(), num_samples))
        self.inner.step(epoch=epoch, step=step, loss=loss, num_samples=num_samples)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def samples_per_s(self) -> float:
        """Throughput of the last epoch from the end of its first step to the end of its last."""
        last = [s for s in self.steps if s[0] == self.steps[-1][0]]
        if len(last) < 2:
            return float("nan")
        return sum(n for _, _, n in last[1:]) / (last[-1][1] - last[0][1])


def _capture_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, color_system=None, width=250)


def _train(ctx: Context, kind: str, overrides: dict[str, Any]):
    """Run one training of `kind` through its public function; return the run and reporter."""
    import torch

    from lba_cli.config import build_run_config
    from lba_cli.progress import ProgressReporter
    from lba_cli.runs import RunStore

    overrides = {**overrides, "train": {**overrides.get("train", {}), "device": str(ctx.device)}}
    config = build_run_config(kind, None, overrides)
    console = _capture_console()
    reporter = _TimedReporter(ProgressReporter(console))
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    if kind == "finetune":
        from lba_cli.finetune import finetune as train
    else:
        from lba_cli.pretrain import pretrain as train
    run = train(config, RunStore(ctx.work / "runs"), reporter)
    ctx.check.figure(f"{kind}_run", f"{run.status['status']}, {run.status.get('epochs_done')} epochs",
                     ok=run.status["status"] == "completed", note=f"run {run.id}")
    if ctx.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30
        ctx.check.figure(f"{kind}_peak_gpu_memory_GiB", peak, note="torch.cuda.max_memory_allocated")
    else:
        ctx.check.unavailable(f"{kind}_peak_gpu_memory_GiB", "no GPU")
    return config, run, reporter, console


def _model_only(ctx: Context, model, optimizer, grids: tuple, loss_fn) -> float:
    """Samples/s of forward, backward and step on one pre-made batch (the loop's own steps)."""
    from lba_cli.devices import autocast_context

    def step() -> None:
        with autocast_context(ctx.device):
            loss = loss_fn(model(*grids).float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # the training loop reads every loss too

    model.train()
    for _ in range(2):
        step()
    ctx.sync()
    start = time.perf_counter()
    for _ in range(ctx.settings.model_only_steps):
        step()
    ctx.sync()
    return ctx.settings.model_only_steps * len(grids[0]) / (time.perf_counter() - start)


def _ratio(ctx: Context, kind: str, pipeline: float, model_only: float, key: str) -> None:
    ctx.check.figure(f"{kind}_pipeline_samples_per_s", pipeline, note="whole training steps, last epoch")
    ctx.check.figure(f"{kind}_model_only_samples_per_s", model_only, note="one pre-made batch on the device")
    ctx.check.figure(key, pipeline / model_only, note=f"{kind}; 1 means the data pipeline costs nothing")


def check_finetune(ctx: Context) -> None:
    """Fine-tuning with the default recipe: the run, throughput with and without the pipeline, dtypes."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lba_cli.devices import autocast_context
    from lba_cli.finetune import prepare_finetune
    from lba_cli.runs import RunStore
    from lba_cli.voxel import voxelize_batch

    overrides = {**ctx.settings.finetune, "finetune": {"data_path": str(ctx.data)}}
    config, run, reporter, console = _train(ctx, "finetune", overrides)
    ctx.display = _last_frame(console.file.getvalue())

    prepared = prepare_finetune(config, RunStore(ctx.work / "runs"))
    batch = next(iter(prepared.task.train_batches(0)))
    d = ctx.device
    grids = voxelize_batch(batch["xyz_A"].to(d), batch["channel"].to(d), batch["is_protein"].to(d),
                           prepared.config.grid)
    target = batch["affinity_pk"].to(d)
    with torch.no_grad(), autocast_context(d):
        features = prepared.model.encoder(grids)
    expected = torch.bfloat16 if d.type == "cuda" else torch.float32
    ctx.check.figure("autocast_features_dtype", str(features.dtype).removeprefix("torch."),
                     ok=features.dtype == expected, note=f"encoder output inside autocast_context; expected {expected}")
    model_only = _model_only(ctx, prepared.model, prepared.optimizer, (grids,), lambda p: F.mse_loss(p, target))
    _ratio(ctx, "finetune", reporter.samples_per_s(), model_only, "pipeline_vs_model_only")

    predicted = np.concatenate([run.read_predictions(s)["predicted_pk"].to_numpy() for s in ("val", "test")])
    as_float32 = predicted.astype(np.float32)
    as_bf16 = torch.from_numpy(as_float32).to(torch.bfloat16).float().numpy()
    ok = bool(np.isfinite(predicted).all() and (as_float32 == predicted).all() and (as_bf16 != as_float32).any())
    ctx.check.figure("predictions_float32", f"{len(predicted)} val+test predictions", ok=ok,
                     note="finite, exactly float32, and finer than bfloat16's 8 bits")


def check_display(ctx: Context) -> None:
    """The live progress line captured during fine-tuning: on CUDA it names the GPU, its memory and use."""
    import torch

    if ctx.device.type == "cuda":
        name = re.escape(torch.cuda.get_device_name(ctx.device))
        ok = re.search(name + r" \d+\.\d/\d+\.\d GiB \d+%", ctx.display) is not None
        note = "live progress line with the GPU's name, memory used/total and utilisation"
    else:
        ok = "samples/s" in ctx.display and "loss" in ctx.display
        note = "live progress line (no GPU fields on the CPU)"
    ctx.check.record["display"] = ctx.display
    ctx.check.figure("display", repr(ctx.display), ok=ok, note=note)


def _last_frame(text: str) -> str:
    """The last line of a captured live display that shows training progress (escapes removed)."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    lines = [line.strip() for line in re.split(r"[\r\n]", plain) if "samples/s" in line]
    return lines[-1] if lines else ""


def check_pretrain(ctx: Context) -> None:
    """Pre-training with the default recipe on the carried structures: the run and its throughput."""
    import torch.nn.functional as F

    from lba_cli.pretrain import prepare_pretrain
    from lba_cli.voxel import voxelize_batch

    overrides = {**ctx.settings.pretrain, "structures": [str(ctx.payload / "structures")]}
    config, run, reporter, _ = _train(ctx, "pretrain", overrides)
    metrics = run.read_metrics().row(-1, named=True)
    ctx.check.figure("pretrain_val_accuracy", metrics["val/accuracy"], ok=0.0 <= metrics["val/accuracy"] <= 1.0,
                     note=f"chance 1/6; {metrics.get('train/density_ok', float('nan')):.0%} of training pairs met "
                          "the density threshold")
    prepared = prepare_pretrain(config)
    batch = next(iter(prepared.task.train_batches(0)))
    d, grid = ctx.device, prepared.config.grid
    views = tuple(voxelize_batch(batch[p + "xyz_A"].to(d), batch[p + "channel"].to(d), batch[p + "is_protein"].to(d),
                                 grid) for p in ("home_", "neighbor_"))
    labels = batch["label"].to(d)
    model_only = _model_only(ctx, prepared.model, prepared.optimizer, views, lambda p: F.cross_entropy(p, labels))
    _ratio(ctx, "pretrain", reporter.samples_per_s(), model_only, "pretrain_pipeline_vs_model_only")


def check_torchrun(ctx: Context) -> None:
    """`torchrun --nproc-per-node 1 -m lba_cli finetune`: DDP over NCCL (gloo on the CPU), one run."""
    runs = ctx.work / "torchrun-runs"
    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    # INFO logging makes DDP print its construction, including "backend_name: nccl".
    env = {**ctx.child_env(), "TORCH_DISTRIBUTED_DEBUG": "INFO", "TORCH_CPP_LOG_LEVEL": "INFO",
           "LBA_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "lba_cli",
               "finetune", str(ctx.data), *ctx.settings.torchrun_args, "--device", ctx.device.type, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    log = result.stdout + result.stderr
    useful = [line for line in log.splitlines() if "TCPStore" not in line and "c10d - " not in line]
    ctx.check.record["torchrun_log"] = "\n".join(useful)[-6000:]
    done = [json.loads(p.read_text()) for p in sorted(runs.glob("*/status.json"))]
    statuses = [(s["status"], s.get("world_size")) for s in done]
    ok = result.returncode == 0 and statuses == [("completed", 1)] and f"backend_name: {backend}" in log
    ctx.check.figure(f"torchrun_{backend}", f"exit {result.returncode}, runs {statuses}", ok=ok,
                     note=f"torchrun --nproc-per-node 1 finetune {' '.join(ctx.settings.torchrun_args)}; "
                          f"DDP over {backend}" + ("" if f"backend_name: {backend}" in log else " NOT seen in the log"))


SECTIONS = (check_environment, check_voxelizer, check_molgrid, check_finetune, check_display, check_pretrain,
            check_torchrun)
