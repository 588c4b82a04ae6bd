"""`make bench` (corpus part): corpus building speed, and pre-training start-up at 1k and 10k structures.

Prints one ``name: value`` line per figure:

    corpus_bm5_structures_per_s        `lba corpus` on the 460 BM5 files (all CPUs)
    corpus_1k_structures_per_s         the same on 1,000 structures (BM5 files with zones, under other names)
    corpus_10k_structures_per_s        ... and on 10,000
    corpus_10k_build_s                 wall time of the 10k build
    corpus_10k_file_MiB                size of the 10k corpus file
    pretrain_1k_first_step_s           from process start to the end of the first optimizer step of a
    pretrain_10k_first_step_s          pre-training run on each corpus (corpus opened, split, shortcut
                                       balance fitted on its pilot pairs, model built, one batch of 32)
    pretrain_1k_peak_rss_MiB           peak resident memory of that process
    pretrain_10k_peak_rss_MiB
    pretrain_rss_growth_10k_vs_1k      peak RSS ratio (the corpus is read lazily: must stay < 1.10)
    pretrain_first_step_ratio_10k_vs_1k   (must stay < 2)

The larger corpora repeat BM5 structures under other file names, so their ids are distinct.
Run with ``--sizes 1000 10000`` (default) or smaller sizes for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("LBA_SHARED_DATA") or REPO.parent / "shared" / "data")
BM5 = SHARED / "proteins_bm5"

# Run in a fresh process so that its peak RSS is its own: time to the first step of a run.
_FIRST_STEP = r"""
import json, resource, sys, time
start = time.monotonic()
from lba_cli.config import ModelConfig, NeighborConfig, RunConfig, TrainConfig
from lba_cli.pretrain import prepare_pretrain
config = RunConfig(kind="pretrain", structures=(sys.argv[1],), model=ModelConfig(arch="resnet-bottleneck"),
                   neighbor=NeighborConfig(epoch_size=1024, val_size=256),
                   train=TrainConfig(batch_size=32, device="cpu"))
prepared = prepare_pretrain(config)
model, task = prepared.model, prepared.task
model.train()
batch = next(iter(task.train_batches(0, 0)))
loss, _, _ = task.train_step(model, batch)
prepared.optimizer.zero_grad()
loss.backward()
prepared.optimizer.step()
elapsed = time.monotonic() - start
print(json.dumps({"first_step_s": elapsed, "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "structures": prepared.notes["num_structures"]}))
"""


def build(sources: list[Path], output: Path) -> tuple[float, int, int]:
    """Build a corpus with `lba corpus`; returns (seconds, structures written, structures read)."""
    from lba_cli.corpus import build_corpus

    start = time.monotonic()
    report = build_corpus(sources, output)
    return time.monotonic() - start, report.num_structures, report.num_structures + len(report.skipped)


def first_step(corpus: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _FIRST_STEP, str(corpus)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if result.returncode != 0:
        raise SystemExit(f"pre-training start failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000], metavar=("SMALL", "LARGE"))
    args = parser.parse_args()
    if not BM5.is_dir():
        raise SystemExit(f"BM5 structures not found at {BM5} (set LBA_SHARED_DATA)")
    from lba_cli.corpus import Corpus

    lines: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lba-corpus-bench-") as tmp:
        root = Path(tmp)
        seconds, written, read = build([BM5], root / "bm5.h5")
        lines["corpus_bm5_structures_per_s"] = read / seconds
        zoned = [Path(s) for s in Corpus(root / "bm5.h5").sources]
        small, large = args.sizes
        starts = {}
        labels = {1000: "1k", 10000: "10k"}
        for label, size in ((labels.get(small, str(small)), small), (labels.get(large, str(large)), large)):
            folder = root / f"structures_{size}"
            folder.mkdir()
            for i in range(size):
                source = zoned[i % len(zoned)]
                (folder / f"c{i:06d}_{source.name}").symlink_to(source)
            seconds, written, read = build([folder], root / f"corpus_{size}.h5")
            assert written == size, (written, size)
            lines[f"corpus_{label}_structures_per_s"] = read / seconds
            if size == large:
                lines[f"corpus_{label}_build_s"] = seconds
                lines[f"corpus_{label}_file_MiB"] = (root / f"corpus_{size}.h5").stat().st_size / 2**20
            starts[label] = first_step(root / f"corpus_{size}.h5")
            lines[f"pretrain_{label}_first_step_s"] = starts[label]["first_step_s"]
            lines[f"pretrain_{label}_peak_rss_MiB"] = starts[label]["peak_rss_MiB"]
        (a, sa), (b, sb) = starts.items()
        lines[f"pretrain_rss_growth_{b}_vs_{a}"] = sb["peak_rss_MiB"] / sa["peak_rss_MiB"]
        lines[f"pretrain_first_step_ratio_{b}_vs_{a}"] = sb["first_step_s"] / sa["first_step_s"]
    for name, value in lines.items():
        print(f"{name}: {value:.3g}")


if __name__ == "__main__":
    main()
