"""`make bench`: speed of the voxelizer, the training pipeline and the CLI.

Prints a table, then one ``name: value`` line per figure:

    voxelize_cpu_grids_per_s    our voxelizer, CPU (all cores), batches of 64 real complexes
    voxelize_cpu_1thread_grids_per_s   the same on one thread (libmolgrid's CPU gridder is serial)

Throughputs are the best of 5 trials; ratios are the median of 5 back-to-back pairs, since
this shared machine's speed drifts by 2x over minutes.
    molgrid_cpu_grids_per_s     libmolgrid 0.5 GridMaker on the same atoms and grid (21^3 x 7, 1 A)
    ratio_vs_molgrid            ours (all cores) / libmolgrid, median over back-to-back trials
    ratio_1thread_vs_molgrid    ours on one thread / libmolgrid (serial), likewise
    voxelize_demo_set_s         wall time of `lba voxelize` on the 285 demo complexes
    pipeline_vs_model_only      fine-tuning samples/s with on-the-fly rotation + voxelization,
                                over samples/s of the model alone on pre-made grids
    help_s                      wall time of `lba --help` (median of 5)
    voxelize_cuda_grids_per_s   our voxelizer on CUDA (only when a GPU is present)

libmolgrid needs NumPy < 2, so it is installed into its own virtual environment in
benchmarks/.molgrid-venv (ignored by git) and run there on atoms saved by this script.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("LBA_SHARED_DATA") or REPO.parent / "shared" / "data")
DEMO = SHARED / "atom3d_lba_demo" / "split-by-protein"
MOLGRID_VENV = HERE / ".molgrid-venv"
BATCH = 64
TRIALS = 5  # trials of ours and libmolgrid, interleaved


def best_of(trials: int, measure) -> float:
    """The highest of several throughput measurements (the least disturbed by other load)."""
    return max(measure() for _ in range(trials))


def lba_command() -> list[str]:
    return [sys.executable, "-m", "lba_cli"]


def time_voxelize_demo(workdir: Path) -> tuple[float, Path]:
    out = workdir / "demo.h5"
    start = time.perf_counter()
    subprocess.run([*lba_command(), "voxelize", str(DEMO), "-o", str(out), "--quiet"], check=True,
                   capture_output=True)
    return time.perf_counter() - start, out


def rotated_atom_sets(h5: Path, seed: int = 0):
    """Each demo complex in a random orientation: (local xyz (N, 3), channel (N,), is_protein (N,))."""
    from lba_cli.data.grids_h5 import read_grid_set
    from lba_cli.voxel import make_channel_lookup, random_rotation

    data = read_grid_set(h5)
    lookup = make_channel_lookup(data.grid)
    rng = np.random.default_rng(seed)
    sets = []
    for i in range(len(data)):
        xyz, numbers, flags = data.atoms(i)
        local = ((xyz - data.center_A[i]) @ random_rotation(rng)).astype(np.float32)
        sets.append((local, lookup[numbers], flags))
    return data.grid, sets


def batches(sets, device: torch.device):
    from lba_cli.data.dataset import collate_atoms

    out = []
    for start in range(0, len(sets), BATCH):
        items = [{"xyz_A": x, "channel": c, "is_protein": p} for x, c, p in sets[start:start + BATCH]]
        b = collate_atoms(items)
        out.append((b["xyz_A"].to(device), b["channel"].to(device), b["is_protein"].to(device)))
    return out


def voxelizer_throughput(grid, sets, device: torch.device, repeats: int) -> float:
    from lba_cli.voxel import voxelize_batch

    prepared = batches(sets, device)
    for xyz, ch, prot in prepared[:2]:
        voxelize_batch(xyz, ch, prot, grid)  # warm-up (tables, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        for xyz, ch, prot in prepared:
            voxelize_batch(xyz, ch, prot, grid)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * len(sets) / (time.perf_counter() - start)


def molgrid_throughput(grid, sets, workdir: Path, repeats: int) -> tuple[float | None, str]:
    python = MOLGRID_VENV / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(MOLGRID_VENV)], check=True, capture_output=True)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "numpy<2", "molgrid"], check=True,
                           capture_output=True)
        except subprocess.CalledProcessError as error:
            return None, f"molgrid could not be installed: {error.stderr.decode()[-300:]}"
    xyz, vectors, offsets = [], [], [0]
    for local, channel, protein in sets:
        keep = channel >= 0
        one_hot = np.zeros((keep.sum(), grid.num_channels), np.float32)
        one_hot[np.arange(keep.sum()), channel[keep]] = 1.0
        if grid.protein_channel:
            one_hot[:, -1] = protein[keep]
        xyz.append(local[keep])
        vectors.append(one_hot)
        offsets.append(offsets[-1] + int(keep.sum()))
    path = workdir / "atoms.npz"
    np.savez(path, xyz_A=np.concatenate(xyz), type_vectors=np.concatenate(vectors), offsets=np.array(offsets),
             radius_A=grid.radius_A, box_size_voxels=grid.box_size_voxels, resolution_A=grid.resolution_A,
             num_channels=grid.num_channels)
    result = subprocess.run([str(python), str(HERE / "molgrid_bench.py"), str(path), str(repeats)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"molgrid run failed: {result.stderr[-300:]}"
    line = [l for l in result.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["grids_per_s"], "ok"


def pipeline_ratio(h5: Path, steps: int = 12) -> tuple[float, float, float]:
    """Fine-tuning step throughput with and without the data pipeline (CPU, batch 16)."""
    from lba_cli.config import ModelConfig
    from lba_cli.data.dataset import AffinityDataset
    from lba_cli.data.grids_h5 import read_grid_config
    from lba_cli.loaders import make_loader
    from lba_cli.models import create_model
    from lba_cli.voxel import voxelize_batch

    torch.manual_seed(0)
    dataset = AffinityDataset(h5, "train", read_grid_config(h5), seed=0, rotate=True)
    grid = dataset.grid
    model = create_model(ModelConfig(), grid.num_channels, "affinity")
    optimizer = torch.optim.Adam(model.parameters())

    def train_step(grids, target):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(grids), target)
        loss.backward()
        optimizer.step()

    loader = make_loader(dataset, 16, shuffle=True, seed=0, epoch=0, num_workers=0)
    iterator = iter(loader)
    first = next(iterator)
    fixed = voxelize_batch(first["xyz_A"], first["channel"], first["is_protein"], grid)
    train_step(fixed, first["affinity_pk"])  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step(fixed, first["affinity_pk"])
    model_only = steps * 16 / (time.perf_counter() - start)
    start, seen = time.perf_counter(), 0
    for step, batch in enumerate(make_loader(dataset, 16, shuffle=True, seed=0, epoch=1, num_workers=0)):
        if step == steps:
            break
        grids = voxelize_batch(batch["xyz_A"], batch["channel"], batch["is_protein"], grid)
        train_step(grids, batch["affinity_pk"])
        seen += len(batch["affinity_pk"])
    pipeline = seen / (time.perf_counter() - start)
    return pipeline / model_only, pipeline, model_only


def help_seconds() -> float:
    lba = Path(sys.executable).parent / "lba"
    command = [str(lba)] if lba.exists() else lba_command()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([*command, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    if not DEMO.is_dir():
        sys.exit(f"benchmark data not found: {DEMO} (set LBA_SHARED_DATA)")
    figures: dict[str, float] = {}
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        figures["voxelize_demo_set_s"], h5 = time_voxelize_demo(workdir)
        grid, sets = rotated_atom_sets(h5)
        atoms = [int((c >= 0).sum()) for _, c, _ in sets]
        notes.append(f"{len(sets)} real complexes, {np.mean(atoms):.0f} atoms within reach of each box "
                     f"(min {min(atoms)}, max {max(atoms)}), grid {grid.box_size_voxels}^3 x {grid.num_channels} "
                     f"at {grid.resolution_A} A, radius {grid.radius_A} A, torch {torch.__version__}, "
                     f"{torch.get_num_threads()} threads")
        cpu = torch.device("cpu")
        ours, ours_single, theirs = [], [], []
        threads = numba.get_num_threads()
        for _ in range(TRIALS):  # interleaved, so that both see the same machine at the same time
            ours.append(voxelizer_throughput(grid, sets, cpu, repeats=3))
            numba.set_num_threads(1)
            ours_single.append(voxelizer_throughput(grid, sets, cpu, repeats=3))
            numba.set_num_threads(threads)
            result, status = molgrid_throughput(grid, sets, workdir, repeats=5)
            if result is None:
                notes.append(status)
                break
            theirs.append(result)
        figures["voxelize_cpu_grids_per_s"] = max(ours)
        figures["voxelize_cpu_1thread_grids_per_s"] = max(ours_single)
        if theirs:
            figures["molgrid_cpu_grids_per_s"] = max(theirs)
            figures["ratio_vs_molgrid"] = statistics.median(a / b for a, b in zip(ours, theirs))
            figures["ratio_1thread_vs_molgrid"] = statistics.median(a / b for a, b in zip(ours_single, theirs))
            notes.append("ratios: median over trials of (ours / libmolgrid) measured back to back; "
                         f"per-trial ratios {', '.join(f'{a / b:.2f}' for a, b in zip(ours, theirs))}")
        ratio, pipeline, model_only = pipeline_ratio(h5)
        figures["pipeline_vs_model_only"] = ratio
        notes.append(f"fine-tuning step: {pipeline:.1f} samples/s with the pipeline, {model_only:.1f} model only")
        figures["help_s"] = help_seconds()
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            figures["voxelize_cuda_grids_per_s"] = best_of(TRIALS, lambda: voxelizer_throughput(grid, sets, cuda,
                                                                                                repeats=20))
            notes.append(f"CUDA device: {torch.cuda.get_device_name(0)}")
    width = max(map(len, figures))
    print(f"{'benchmark':<{width}}  value")
    print(f"{'-' * width}  ---------")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:,.3f}")
    for note in notes:
        print(f"# {note}")
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")


if __name__ == "__main__":
    main()
