"""The README's tour, run as written.

The commands are read from README.md itself, so the README and this test cannot drift apart.
Only what makes them fast is changed: the demo LMDBs become a few of their records, the
pre-training folder a few of its structures, the PDBbind folder eight of its complexes, and
each command that voxelizes or trains gets a coarse grid,
tiny widths and one epoch (`_tiny`). ``runs/*`` is expanded as a shell would, in a fresh
folder.
"""

from __future__ import annotations

import glob
import shlex
from pathlib import Path

import pytest
from conftest import ATOM3D, REPO, SHARED, TINY_GRID, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app

WIDTHS = ["--width", "8", "--width", "16"]
# Records of each demo LMDB kept for the tour (the real split, a few complexes each).
KEEP = {"train": 6, "val": 2, "test": 3}


def tour_commands(readme: Path = REPO / "README.md") -> list[list[str]]:
    """Each ``lba ...`` line of the README's "A short tour" block, split as a shell would
    (quotes, ``# comments``), without the leading ``lba``."""
    text = readme.read_text()
    section = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(line.strip(), comments=True)[1:] for line in section.splitlines()
            if line.startswith("    lba ")]


def _tiny_lmdb(root: Path) -> Path:
    """The demo's split root with the first records of each split (same layout and keys)."""
    import lmdb

    for split, count in KEEP.items():
        source = lmdb.open(str(ATOM3D / "data" / split), readonly=True, lock=False, subdir=True)
        (root / "data" / split).mkdir(parents=True)
        target = lmdb.open(str(root / "data" / split), map_size=1 << 28, subdir=True)
        with source.begin() as read, target.begin(write=True) as write:
            for index in range(count):
                write.put(str(index).encode(), read.get(str(index).encode()))
            write.put(b"num_examples", str(count).encode())
            write.put(b"serialization_format", read.get(b"serialization_format"))
        source.close()
        target.close()
    return root


def _tiny(args: list[str], data: dict[str, str]) -> list[str]:
    """One tour command with tiny inputs and settings (what each command gets is listed here)."""
    shared = str(SHARED)
    out = []
    for arg in args:
        for written, tiny in data.items():
            arg = arg.replace(written, tiny)
        if arg.startswith("configs/"):  # the repository's config files, wherever the tour runs
            arg = str(REPO / arg)
        out.append(arg.replace("../shared/data", shared))
    command = out[0]
    resume = "--resume" in out

    def set_option(flag: str, value: str) -> None:
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out.extend([flag, value])

    if command in ("voxelize", "corpus", "pretrain") and "--resume" not in out:
        out.extend(TINY_GRID)
    if command == "pretrain" and not resume:
        out.extend(["--epoch-size", "8", "--val-size", "4", "--batch-size", "4", *WIDTHS])
    if command in ("pretrain", "finetune"):
        set_option("--epochs", "2" if resume else "1")
        if not resume:
            out.extend(["--batch-size", "4"] if command == "finetune" else [])
            out.extend(WIDTHS if command == "finetune" else [])
    if command == "sweep":
        out.extend(["--pretrain-epochs", "1", "--finetune-epochs", "1", "--epoch-size", "8", "--val-size", "4",
                    "--pretrain-batch-size", "4", "--finetune-batch-size", "4", *WIDTHS])
        set_option("--seeds", "0")
    return out


def _expand(args: list[str]) -> list[str]:
    """Shell glob expansion of ``runs/*`` (sorted; a pattern that matches nothing stays)."""
    out = []
    for arg in args:
        matches = sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else []
        out.extend(matches or [arg])
    return out


def test_the_tour_has_every_command():
    """A README edit that hides the tour from this test (another heading, no indent) fails here."""
    commands = tour_commands()
    names = [c[0] if c[0] != "runs" else f"runs {c[1]}" for c in commands]
    for name in ("voxelize", "pretrain", "finetune", "evaluate", "plot", "compare", "sweep", "runs list"):
        assert name in names, f"the README tour lost `lba {name}`"
    assert any("--resume" in c for c in commands) and any("runs/*" in c for c in commands)


def test_readme_tour_runs_as_written(tmp_path, monkeypatch, bm5_subset, tiny_pdbbind):
    require_shared()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LBA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = {"../shared/data/atom3d_lba_demo/split-by-protein": str(_tiny_lmdb(tmp_path / "atom3d_tiny")),
            "../shared/data/proteins_bm5": str(bm5_subset), "../shared/data/pdbbind_demo": str(tiny_pdbbind)}
    runner = CliRunner()
    outputs = {}
    for written in tour_commands():
        args = _expand(_tiny(written, data))
        result = runner.invoke(app, args)
        line = "lba " + " ".join(written)
        assert result.exit_code == 0, f"{line}\n-> lba {shlex.join(args)}\n{result.output}"
        assert "Traceback" not in result.output, line
        outputs[line] = result.output
    by_command = outputs
    evaluated = next(v for k, v in by_command.items() if k.startswith("lba evaluate runs/*"))
    assert "skipped 1 pretrain run(s)" in evaluated  # runs/* holds p1: skipped with a note, not an error
    resumed = next(v for k, v in by_command.items() if "--resume" in k)
    assert "resuming" in resumed and "train.lr 0.001 -> 0.0003" in resumed  # the resume says what it changes
    compared = next(v for k, v in by_command.items() if k.startswith("lba compare"))
    # sorted by the group mean; the table shows each group's mean ± sample std in one column
    assert "val/rmse" in compared and "±" in compared and "sample std (ddof 1)" in compared
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and (tmp_path / "scatter.png").is_file()
    assert (tmp_path / "sweep" / "sweep.csv").is_file()


@pytest.mark.parametrize("line,expected", [
    ('lba finetune lba.h5 --init random --name rand --seeds "0 1 2"  # a comment',
     ["finetune", "lba.h5", "--init", "random", "--name", "rand", "--seeds", "0 1 2"]),
    ("lba compare runs/* --sort val/rmse --group", ["compare", "runs/*", "--sort", "val/rmse", "--group"]),
], ids=["quotes-and-comment", "glob-kept"])
def test_tour_lines_split_as_a_shell_splits_them(tmp_path, line, expected):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## A short tour\n\n    {line}\n\nText.\n\n## Next\n\n    lba other\n")
    assert tour_commands(readme) == [expected]
