"""The faults found in real use, one folder each in ../shared/faults, each with its right value.

Manifest folders (01-05, 12) are voxelized as their README says (default grid, which stores
every atom of their files) and checked for pK, atom counts, notes, the skip report and the
exit status. Scenario folders (06-09, 11) are replayed in-process with the tiny settings their
scripts use (``--box-size 10 --resolution 2``, 1 epoch, tiny models). The folders are
read-only: anything damaged is a copy in tmp_path. Folder 10 (resume) belongs to the resume
tests. Each kind is also tested beyond its one instance in the module's own tests
(test_affinity, test_formats, test_checkpoints, test_runs, test_config, test_loaders).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pytest
from conftest import BM5, BM5_FILES, TINY_GRID, TINY_TRAIN, require_fault
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.data.grids_h5 import read_grid_set

runner = CliRunner()


def lba(*args: object, expect: int | None = 0):
    """Run ``lba ARGS`` in-process; check the exit status (None: any) and that no traceback shows."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def one_line(text: str) -> str:
    """CLI output with line wrapping undone (Rich wraps long messages at the console width)."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Stored:
    """How one complex must be stored: pK, heavy atoms of the receptor and of the ligand (None:
    not checked), a fragment of its note, and channel sums of its grid."""

    affinity_pk: float
    protein_atoms: int | None = None
    ligand_atoms: int | None = None
    note: str = ""
    channels: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ManifestCase:
    folder: str
    exit_code: int
    stored: dict[str, Stored]
    skipped: dict[str, str] = field(default_factory=dict)  # id -> fragment of the reason in the report


# The right values are those of ../shared/faults/README.md (pK = -log10 K; atoms: heavy atoms).
MANIFEST_CASES = [
    ManifestCase("01-nothing-readable-still-reports", 1, {}, {"4jsz": "no protein atoms in 4jsz_pocket.pdb"}),
    ManifestCase("02-unreadable-mol2-sibling-sdf", 0, {
        "3g31": Stored(2.886, 238, 17,
                       "ligand read from 3g31_ligand.sdf because 3g31_ligand.mol2: could not be read")}),
    ManifestCase("03-compressed-ligand", 0, {"3r88": Stored(4.824, 378, 14)}),
    ManifestCase("04-manifest-cell-whitespace", 0, {"4lzs": Stored(4.796, 379, 15)}),
    ManifestCase("05-receptor-holds-ligand", 0, {
        "3u5j": Stored(5.609, 401, 22, "22 atoms of the receptor file coincide with ligand atoms",
                       {"*": 1.0, "protein": 290.8})}),
    ManifestCase("12-affinity-ranges-and-lists", 0, {
        "3jya": Stored(6.912, note="affinity range 60..250 nM, 4 measurements, geometric mean"),
        "4gfm": Stored(7.222, note="affinity range 40..90 nM, geometric mean"),
        "4kzu": Stored(6.347, note="kept Kd (Kd over Ki over IC50 over EC50)"),
        "3u8k": Stored(8.658)}),
]


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=[c.folder for c in MANIFEST_CASES])
def test_manifest_folder(case, tmp_path):
    folder = require_fault(case.folder)
    out, report = tmp_path / "out.h5", tmp_path / "skipped.csv"
    result = lba("voxelize", folder / "manifest.csv", "-o", out, "--report", report, expect=case.exit_code)
    with open(report, newline="") as handle:  # written whether or not anything could be read
        skipped = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(skipped) == set(case.skipped)
    for complex_id, reason in case.skipped.items():
        assert reason in skipped[complex_id]["reason"]
    if not case.stored:
        assert not out.exists()
        return
    data = read_grid_set(out)
    with h5py.File(out) as f:
        names = json.loads(f.attrs["channel_names"])
        grids = f["grids"][...]
    index = {complex_id: i for i, complex_id in enumerate(data.ids)}
    output = one_line(result.output)
    for complex_id, want in case.stored.items():
        i = index[complex_id]
        assert data.affinity_pk[i] == pytest.approx(want.affinity_pk, abs=1e-3)
        _, _, is_protein = data.atoms(i)
        if want.protein_atoms is not None:
            assert (int(is_protein.sum()), int((~is_protein).sum())) == (want.protein_atoms, want.ligand_atoms)
        if want.note:
            assert f"{complex_id}: " in output and want.note in output
        for channel, total in want.channels.items():
            assert grids[i, names.index(channel)].sum() == pytest.approx(total, abs=0.05)


# ------------------------------------------------------------------- 06: checkpoints


def _lfs_pointers(runs_dir: Path) -> int:
    """Replace every checkpoint of ``runs_dir`` by its Git LFS pointer text, as a clone
    without large-file support leaves it (folder 06's scenario does the same)."""
    count = 0
    for path in runs_dir.rglob("*.pt"):
        digest, size = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
        path.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n")
        count += 1
    return count


def test_06_checkpoint_that_is_a_pointer_file(tmp_path, monkeypatch):
    folder = require_fault("06-checkpoint-not-a-checkpoint")
    monkeypatch.chdir(tmp_path)
    lba("voxelize", folder / "data" / "manifest.csv", "-o", "data.h5", *TINY_GRID, "-q")
    lba("finetune", "data.h5", *TINY_TRAIN, "--name", "ft")
    # pre-training reads whole structures (a voxelize file of ligand-centred crops is refused): two BM5 receptors
    lba("pretrain", "--structures", BM5 / BM5_FILES[0], "--structures", BM5 / BM5_FILES[1], *TINY_TRAIN,
        "--epoch-size", "8", "--val-size", "4", "--no-balance-shortcut", *TINY_GRID, "--name", "pre")
    assert _lfs_pointers(tmp_path / "runs") == 4
    for args in (("evaluate", "ft", "--split", "test", "--device", "cpu"),
                 ("finetune", "data.h5", "--init", "pre", *TINY_TRAIN, "--name", "child")):
        output = one_line(lba(*args, expect=1).output)
        assert "checkpoints/best.pt is not a checkpoint but a Git LFS pointer" in output
        assert "git lfs pull" in output and "weights_only" not in output


# ------------------------------------------------------------------- 07: run files


def test_07_damaged_status_and_missing_index(tmp_path, monkeypatch):
    folder = require_fault("07-damaged-run-files")
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    lba("voxelize", folder / "data" / "manifest.csv", "-o", "data.h5", *TINY_GRID, "-q")
    alpha = lba("finetune", "data.h5", *TINY_TRAIN, "--name", "alpha").stdout.split()[-1]
    beta = lba("finetune", "data.h5", *TINY_TRAIN, "--name", "beta").stdout.split()[-1]
    (runs / beta / "status.json").write_bytes(b"")
    for path in runs.glob("index.sqlite*"):
        path.unlink()
    listed = lba("runs", "list", "--format", "csv")
    assert alpha in listed.stdout and f"{beta},finetune,beta,damaged" in listed.stdout
    assert f"run {beta} (beta) is damaged: {runs / beta / 'status.json'} is empty (0 bytes)" in one_line(
        listed.output)
    compared = lba("compare", *sorted(runs.iterdir()), "--format", "csv")
    assert alpha in compared.stdout and beta not in compared.stdout
    assert f"damaged run {beta}: {runs / beta / 'status.json'} is empty" in one_line(compared.output)
    evaluated = one_line(lba("evaluate", "beta", "--device", "cpu", expect=1).output)
    assert f"damaged run {beta}: {runs / beta / 'status.json'} is empty" in evaluated


# ------------------------------------------------------------------- 08: config types

WRONG_TOML = '[train]\nnum_epochs = "2"\nbatch_size = 4.0\n\n[model]\nwidths = [8, 16]\n'
FLOAT_TOML = "[train]\nnum_epochs = 1\nbatch_size = 4.0\n\n[model]\nwidths = [8, 16]\n"
GOOD_TOML = "[train]\nnum_epochs = 1\nbatch_size = 4\n\n[model]\nwidths = [8, 16]\n"


def test_08_config_values_of_the_wrong_type_are_refused_before_anything_runs(tmp_path, monkeypatch):
    folder = require_fault("08-config-wrong-types")
    monkeypatch.chdir(tmp_path)
    lba("voxelize", folder / "data" / "manifest.csv", "-o", "data.h5", *TINY_GRID, "-q")
    for name, text in (("good", GOOD_TOML), ("wrong", WRONG_TOML), ("float", FLOAT_TOML)):
        (tmp_path / f"{name}.toml").write_text(text)
    assert "batch_size = 4\n" in lba("finetune", "data.h5", "--config", "good.toml", "--print-config").stdout
    wrong = one_line(lba("finetune", "data.h5", "--config", "wrong.toml", "--print-config", expect=1).output)
    assert "invalid --epochs (num_epochs): '2' (text) in wrong.toml [train]" in wrong
    assert "expected: an integer (write num_epochs = 2, without quotes)" in wrong
    for extra in (("--print-config",), ("--device", "cpu", "--name", "floaty", "-q")):
        output = one_line(lba("finetune", "data.h5", "--config", "float.toml", *extra, expect=1).output)
        assert "invalid --batch-size (batch_size): 4.0 (a number) in float.toml [train]" in output
        assert "expected: an integer" in output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing started


# ------------------------------------------------------------------- 09: a batch of one


def test_09_last_training_batch_of_one_joins_the_one_before(tmp_path, monkeypatch):
    folder = require_fault("09-last-batch-of-one")
    monkeypatch.chdir(tmp_path)
    assert "train 9, val 1, test 1" in lba("voxelize", folder / "data" / "manifest.csv", "-o", "coarse.h5",
                                           *TINY_GRID).stdout
    result = lba("finetune", "coarse.h5", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--name", "lone",
                 "-q")
    assert "the last training batch would hold one example (9 per epoch, batch size 8): it joins the batch before it" \
           in one_line(result.output)
    listed = lba("runs", "list", "--format", "json").stdout
    assert [(r["name"], r["status"]) for r in json.loads(listed)] == [("lone", "completed")]
    # every batch of one (batch size 1): refused before a run exists, and why
    refused = one_line(lba("finetune", "coarse.h5", "--epochs", "1", "--batch-size", "1", "--device", "cpu",
                           "--name", "ones", "-q", expect=1).output)
    assert "training batches of one example" in refused and "--batch-size 2 or more" in refused
    assert len(json.loads(lba("runs", "list", "--format", "json").stdout)) == 1


# ------------------------------------------------------------------- 11: folders + label table

LABELS_11 = {"4ogj": 6.79, "3ehy": 5.85, "3nx7": 8.10}


def _pk_by_id(path: Path) -> dict[str, float]:
    data = read_grid_set(path)
    return {str(i): float(pk) for i, pk in zip(data.ids, data.affinity_pk)}


@pytest.mark.parametrize("named", [False, True], ids=["detected", "--labels"])
def test_11_folders_with_a_label_table(tmp_path, named):
    folder = require_fault("11-folders-with-label-csv")
    extra = ("--labels", folder / "complexes" / "labels.csv") if named else ()
    result = lba("voxelize", folder / "complexes", "-o", tmp_path / "out.h5", "--report", tmp_path / "s.csv", *extra)
    assert _pk_by_id(tmp_path / "out.h5") == pytest.approx(LABELS_11, abs=0.01)
    assert "id column 'pdb_id', pK column 'pK'" in one_line(result.output)
    assert (tmp_path / "s.csv").read_text().strip() == "id,source,stage,reason"


def test_11_ids_missing_from_the_label_table_go_to_the_skip_report(tmp_path):
    folder = require_fault("11-folders-with-label-csv")
    shutil.copytree(folder / "complexes", tmp_path / "complexes")
    labels = tmp_path / "complexes" / "labels.csv"
    labels.write_text("\n".join(l for l in labels.read_text().splitlines() if not l.startswith("3ehy")) + "\n")
    lba("voxelize", tmp_path / "complexes", "-o", tmp_path / "out.h5", "--report", tmp_path / "s.csv")
    assert set(_pk_by_id(tmp_path / "out.h5")) == {"4ogj", "3nx7"}
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["stage"], r["reason"]) for r in rows] == [("3ehy", "label", "no row in labels.csv")]


# ------------------------------------- further faults, found by running each command on damaged inputs


def _store_with_run(tmp_path: Path):
    """A runs directory with one (untrained) fine-tuning run named "ft"."""
    from lba_cli.runs import RunStore

    store = RunStore(tmp_path / "runs")
    return store.create_run({"kind": "finetune", "name": "ft", "finetune": {"data_path": "x.h5"}})


def _damaged_h5(tmp_path: Path, damage: str) -> Path:
    """An lba voxelize file (folder 07's data) with one part removed or spoilt."""
    folder = require_fault("07-damaged-run-files")
    path = tmp_path / "d.h5"
    lba("voxelize", folder / "data" / "manifest.csv", "-o", path, *TINY_GRID, "-q")
    with h5py.File(path, "r+") as f:
        if damage == "dataset":
            del f["atoms/xyz_A"]
        else:
            f.attrs["channels"] = ";;"
    return path


def _write(name: str, content: bytes):
    def make(tmp_path: Path) -> None:
        (tmp_path / name).write_bytes(content)
    return make


def _truncated_structure(tmp_path: Path) -> None:
    import gzip

    folder = require_fault("04-manifest-cell-whitespace")
    packed = gzip.compress((folder / "4lzs_pocket.pdb").read_bytes())
    (tmp_path / "p.pdb.gz").write_bytes(packed[: len(packed) // 2])  # a download cut off half-way
    (tmp_path / "m.csv").write_text(f"id,protein,ligand,affinity\n4lzs,p.pdb.gz,{folder / '4lzs_ligand.sdf'},"
                                    "Kd=16uM\n")


def _junk_parquet(name: str):
    def make(tmp_path: Path) -> None:
        (_store_with_run(tmp_path).path / name).write_bytes(b"junk")
    return make


def _status_of_wrong_type(tmp_path: Path) -> None:
    (_store_with_run(tmp_path).path / "status.json").write_text('{"status": 5}')


FURTHER = [  # (id, set-up in tmp_path, arguments, exit status, message): each showed a traceback before
    ("output-folder-is-a-file", _write("f", b"x"), ["voxelize", "m.csv", "-o", "f/o.h5"], 1,
     "cannot write f/o.h5: f is a file, not a folder"),
    ("report-folder-is-a-file", _write("f", b"x"), ["voxelize", "m.csv", "-o", "o.h5", "--report", "f/r.csv"], 1,
     "cannot write f/r.csv: f is a file, not a folder"),
    ("series-sdf-empty", _write("s.sdf", b""), ["voxelize", "{data}/pdbbind_demo/1a30/1a30_pocket.pdb", "s.sdf",
                                                "--format", "sdf-series", "--label-field", "pK", "-o", "o.h5"], 1,
     "s.sdf is empty"),
    ("series-sdf-garbage", _write("s.sdf", b"garbage\n"), ["voxelize", "{data}/pdbbind_demo/1a30/1a30_pocket.pdb",
                                                           "s.sdf", "--format", "sdf-series", "--label-field", "pK",
                                                           "-o", "o.h5"], 1, "no SDF records in s.sdf"),
    ("sdf-alone", _write("s.sdf", b"x\n"), ["voxelize", "s.sdf", "-o", "o.h5"], 1,
     "looks like the ligands of a series: give the protein first"),
    ("config-not-utf8", _write("c.toml", b"\xff\xfe[train]\n"), ["finetune", "c.toml", "--config", "c.toml",
                                                                 "--print-config"], 1,
     "cannot read config file c.toml: not UTF-8 text"),
    ("exclude-ids-not-utf8", _write("ids.txt", b"\xff\xfe1abc\n"), ["pretrain", "--structures", "ids.txt",
                                                                    "--exclude-ids", "ids.txt"], 1,
     "cannot read ids.txt: not UTF-8 text"),
    ("manifest-ragged", _write("m.csv", b"id,protein,ligand,affinity\n1a30,a,b,Kd=1nM\n1bcu,a,b,c,d,e\n"),
     ["voxelize", "m.csv", "-o", "o.h5"], 1, "cannot read m.csv as a table: line 3 has 6 cells, the header 4"),
    ("manifest-binary", _write("m.csv", bytes(range(256)) * 4), ["voxelize", "m.csv", "-o", "o.h5"], 1,
     "m.csv is not a text table (it holds binary data)"),
    ("structure-gzip-truncated", _truncated_structure, ["voxelize", "m.csv", "-o", "o.h5"], 1,
     "the gzip file is truncated"),
    ("metrics-parquet-damaged", _junk_parquet("metrics.parquet"), ["plot", "ft", "-o", "x.png"], 1,
     "metrics.parquet is not a readable Parquet file"),
    ("predictions-parquet-damaged", _junk_parquet("predictions_test.parquet"),
     ["plot", "ft", "--kind", "scatter", "-o", "x.png"], 1, "predictions_test.parquet is not a readable Parquet file"),
    ("status-field-of-wrong-type", _status_of_wrong_type, ["runs", "show", "ft"], 1,
     "status.json: 'status' is 5, not a str"),
    ("compare-only-damaged", _status_of_wrong_type, ["compare", "runs/*"], 1, "no runs to compare; left out:"),
    ("evaluate-only-damaged", _status_of_wrong_type, ["evaluate", "runs/*"], 1, "no runs to evaluate"),
    ("h5-missing-dataset", lambda t: _damaged_h5(t, "dataset"), ["finetune", "d.h5", *TINY_TRAIN], 1,
     "d.h5 is not a complete lba voxelize file"),
    ("h5-invalid-settings", lambda t: _damaged_h5(t, "attrs"), ["finetune", "d.h5", *TINY_TRAIN], 1,
     "d.h5 holds invalid voxelization settings"),
    ("folders-csv-without-folders", _write("labels.csv", b"id,pK\n1a30,4\n"),
     ["voxelize", ".", "--format", "folders-csv", "-o", "o.h5"], 1, "no complex folders in ."),
    ("workers-absurd", _write("d.h5", b""), ["finetune", "d.h5", "--workers", "100000", "--print-config"], 1,
     "invalid --workers (num_workers): 100000"),
]


@pytest.mark.parametrize("setup,args,exit_code,message", [c[1:] for c in FURTHER], ids=[c[0] for c in FURTHER])
def test_further_damaged_inputs_give_one_error_and_no_traceback(tmp_path, monkeypatch, setup, args, exit_code,
                                                                message):
    from conftest import SHARED

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("id,protein,ligand,affinity\n")
    setup(tmp_path)
    expanded = []
    for arg in args:
        if arg == "runs/*":
            expanded += [str(p) for p in sorted((tmp_path / "runs").iterdir())]
        else:
            expanded.append(arg.format(data=SHARED))
    result = lba(*expanded, expect=exit_code)
    assert message in one_line(result.output)
