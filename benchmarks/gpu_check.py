# A session with the device tool: run `make gpu-check-prepare` in the checkout the session was
# started in (the tool sends that one), then make ONE call of the tool's `run`, copied as is:
#
#   command:   PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py run --out "$OUT"
#   carry:     [".gpu-check/payload"]
#   timeout_s: 420
#
# It needs about 3 of those minutes; 420 s leaves room for a second try in a 15-minute budget.
"""One prepared CUDA check of lba: `make gpu-check-prepare` here, `make gpu-check` on a GPU.

The CUDA voxelizer, bf16 autocast, the GPU fields of the progress display and NCCL run nowhere
else, and GPU time comes rarely and in minutes, so everything is one command of a few
minutes. It prints one line per figure, keeps them all in ``gpu_check.json`` (under ``$OUT``
when set, else ``.gpu-check/results/``; rewritten after every figure, so a timeout keeps what
was measured) and ends with ``gpu-check: N passed, M failed``. Each figure passes or fails;
"n/a" lines (what cannot be measured here) count for neither.

    voxelize_max_abs_diff         largest |CPU - CUDA| of any voxel of any of the 285 demo
                                  complexes, each in a random orientation (limit 1e-4)
    voxelize_cuda_grids_per_s     our voxelizer on CUDA, batches of 64 (3 passes over the set)
    voxelize_cpu_grids_per_s      the compiled CPU kernel on the machine's cores
    molgrid_cuda_grids_per_s      libmolgrid 0.5.5 GridMaker on CUDA, same atoms, same grid,
                                  one complex per call (its API), 3 passes
    ratio_cuda_vs_molgrid         ours / libmolgrid (they fill differently: speed only)
    finetune_*, pretrain_*        2 epochs of fine-tuning and 1 of pre-training, default recipe:
                                  samples/s with the data pipeline (steady epoch) and of the
                                  model alone on one pre-made batch, their ratio
                                  (pipeline_vs_model_only), peak GPU memory
    autocast_features_dtype       the encoder's output inside autocast: bfloat16 on CUDA
    predictions_float32           saved pK predictions carry float32 precision, not bf16's
                                  (fails while the head's output is rounded to bf16)
    display                       the live Rich display, captured once: GPU name, memory, use
    torchrun_nccl                 torchrun --nproc-per-node 1 with NCCL: one completed run

Pre-training reads the 32 whole proteins carried (gemmi travels for that; fine-tuning needs
neither gemmi nor RDKit). `--device cpu --tiny` runs every section on the CPU in seconds
(tests/test_gpu_check.py); on a machine without CUDA a plain run says so in one line and
exits 0. The payload is made and sized by `gpu_payload.py`, the sections are in
`gpu_sections.py`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]  # lba_cli is not installed on the GPU machine

from gpu_payload import PAYLOAD_LIMIT_MIB, PayloadError, prepare  # noqa: E402
from gpu_sections import SECTIONS  # noqa: E402

DEFAULT_DIR = REPO / ".gpu-check"
SHARED = Path(os.environ.get("LBA_SHARED_DATA") or REPO.parent / "shared" / "data")
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)


@dataclass(frozen=True)
class Settings:
    """How much each section does: the full check, or a tiny one for the CPU test."""

    complexes: int | None  # None: all
    voxel_passes: int
    molgrid_passes: int
    model_only_steps: int
    finetune: dict[str, Any]
    pretrain: dict[str, Any]
    torchrun_args: tuple[str, ...]


_SMALL_MODEL = {"arch": "cnn", "widths": (8, 16)}
FULL = Settings(None, 3, 3, 20, {"train": {"num_epochs": 2}}, {"train": {"num_epochs": 1}}, ("--epochs", "1"))
TINY = Settings(12, 1, 1, 2, {"train": {"num_epochs": 2, "batch_size": 2}, "model": _SMALL_MODEL},
                {"train": {"num_epochs": 1, "batch_size": 2}, "model": _SMALL_MODEL,
                 # three structures are too few to balance the shortcut cues (the full check carries 32)
                 "neighbor": {"epoch_size": 6, "val_size": 2, "balance_shortcut": False}},
                ("--epochs", "1", "--batch-size", "2", "--arch", "cnn", "--width", "8", "--width", "16"))


@dataclass
class Check:
    """The figures of one run of the check, printed as they come and kept in one JSON file."""

    path: Path
    record: dict[str, Any] = field(default_factory=lambda: {"figures": {}, "verdicts": {}, "notes": {}, "errors": {}})

    def figure(self, name: str, value: Any, ok: bool = True, note: str = "") -> None:
        """One figure; ``ok`` False counts it as failed."""
        if isinstance(value, float) and not math.isfinite(value):
            ok = False
        self.record["figures"][name] = value
        self.record["verdicts"][name] = "passed" if ok else "failed"
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        self._line(name, shown + ("" if ok else "  FAILED") + (f"  ({note})" if note else ""), note)

    def unavailable(self, name: str, why: str) -> None:
        """A figure that cannot be measured here (counts neither way)."""
        self.record["figures"][name] = None
        self._line(name, f"n/a: {why}", why)

    def error(self, section: str, error: BaseException) -> None:
        self.record["errors"][section] = traceback.format_exc()[-4000:]
        self.record["verdicts"][f"{section}_section"] = "failed"
        self._line(f"{section}_section", f"FAILED: {type(error).__name__}: {error}"[:600], "")

    def _line(self, name: str, text: str, note: str) -> None:
        if note:
            self.record["notes"][name] = note
        print(f"{name}: {text}".replace("\n", " | "), flush=True)  # one line per figure
        self.save()

    def counts(self) -> tuple[int, int]:
        verdicts = list(self.record["verdicts"].values())
        return verdicts.count("passed"), verdicts.count("failed")

    def save(self) -> None:
        self.record["passed"], self.record["failed"] = self.counts()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.record, indent=2, default=str) + "\n")
        tmp.replace(self.path)


@dataclass
class Context:
    """What the sections share."""

    check: Check
    settings: Settings
    device: Any  # torch.device
    data: Path
    work: Path
    payload: Path
    site: Path | None
    atom_sets: list = field(default_factory=list)
    grid: Any = None
    display: str = ""

    @property
    def label(self) -> str:
        """``cuda``, or ``torch_cpu`` for the tensor path (the one CUDA runs) on the CPU."""
        return "cuda" if self.device.type == "cuda" else "torch_cpu"

    def child_env(self) -> dict[str, str]:
        paths = [str(self.site)] if self.site else []
        paths += [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def unpack_sites(payload: Path, into: Path) -> Path | None:
    """Unpack every ``site-*.tar.xz`` of the payload into one folder and put it first on sys.path."""
    archives = sorted(payload.glob("site-*.tar.xz"))
    if not archives:
        return None
    into.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    sys.path.insert(0, str(into))
    return into


@app.command()
def run(
    device: Annotated[str, typer.Option(help="cuda, or cpu for the tiny test of the script itself.")] = "cuda",
    tiny: Annotated[bool, typer.Option(help="Tiny settings (seconds on a CPU).")] = False,
    folder: Annotated[Path, typer.Option("--dir", help="The folder gpu-check-prepare filled.")] = DEFAULT_DIR,
    out: Annotated[Optional[Path], typer.Option(help="Where gpu_check.json goes (default $OUT, else DIR/results).",
                                             show_default=False)] = None,
) -> None:
    """The GPU half: every figure in one call (see the module docstring)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}); nothing to check here. "
              "Run it on a GPU machine as README.md says.")
        raise typer.Exit(0)
    payload = folder / "payload"
    data = payload / "demo.h5"
    if not data.is_file():
        raise typer.BadParameter(f"{data} not found: run `make gpu-check-prepare` first", param_hint="--dir")
    out = out or Path(os.environ.get("OUT") or folder / "results")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lba-gpu-check-") as tmp:
        work = Path(tmp)
        site = unpack_sites(payload, work / "site")
        ctx = Context(Check(out / "gpu_check.json"), TINY if tiny else FULL,
                      torch.device("cuda:0" if device == "cuda" else "cpu"), data, work, payload, site)
        ctx.check.record.update(device=str(ctx.device), settings="tiny" if tiny else "full")
        for section in SECTIONS:
            try:
                section(ctx)
            except Exception as error:  # noqa: BLE001 - one broken section must not hide the others' figures
                ctx.check.error(section.__name__.removeprefix("check_"), error)
    ctx.check.record["elapsed_s"] = round(time.perf_counter() - started, 1)
    ctx.check.save()
    passed, failed = ctx.check.counts()
    print(f"gpu-check: {passed} passed, {failed} failed  ({ctx.check.record['elapsed_s']:.0f} s; {ctx.check.path})")
    raise typer.Exit(1 if failed else 0)


@app.command("prepare")
def prepare_command(
    source: Annotated[Path, typer.Option(help="The demo complexes (any `lba voxelize` source).")] =
        SHARED / "atom3d_lba_demo" / "split-by-protein",
    structures: Annotated[Path, typer.Option(help="Docking Benchmark 5 structures for pre-training.")] =
        SHARED / "proteins_bm5",
    num_structures: Annotated[int, typer.Option(help="How many structures to carry.")] = 32,
    folder: Annotated[Path, typer.Option("--dir", help="Where the wheels and the payload go.")] = DEFAULT_DIR,
    download: Annotated[bool, typer.Option(help="Fetch missing wheels with pip.")] = True,
    limit_mib: Annotated[float, typer.Option(help="The device tool's limit on what travels.")] = PAYLOAD_LIMIT_MIB,
) -> None:
    """The CPU half: demo data, wheels, packed installs and the size check (see gpu_payload.py)."""
    from lba_cli.errors import LbaError

    try:
        manifest = prepare(source, structures, folder, num_structures=num_structures, download=download,
                           limit_mib=limit_mib, say=print)
    except (PayloadError, LbaError) as error:
        print(f"gpu-check-prepare: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
    left = "; ".join(f"{k} left behind ({v})" for k, v in manifest["left_behind"].items())
    print(f"gpu-check-prepare: ready, {manifest['payload_mib']:.1f} MiB to carry in {folder / 'payload'}"
          + (f"; {left}" if left else ""))


if __name__ == "__main__":
    app()
