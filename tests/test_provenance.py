"""Provenance: what every run records (versions, device, git, data fingerprints), and the one
check that refuses data changed under a run."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import pytest
from conftest import SHARED, TINY_GRID, TINY_TRAIN, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.errors import DataChangedError, DataError
from lba_cli.runs import RunStore
from lba_cli.runs.provenance import FILE_METHOD, FOLDER_METHOD, check_run_data, hash_data_path

runner = CliRunner()
# Four real complexes (heavy-atom pockets) with a split column: train 2, val 1, test 1.
MANIFEST = SHARED.parent / "faults" / "10-resume-after-failed-attempt" / "data" / "manifest.csv"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def data(tmp_path, monkeypatch):
    require_shared()
    monkeypatch.chdir(tmp_path)
    result = invoke("voxelize", MANIFEST, "-o", "data.h5", *TINY_GRID, "-q")
    assert result.exit_code == 0, result.output
    return tmp_path / "data.h5"


def test_a_file_is_hashed_by_its_bytes_and_a_folder_by_its_files(tmp_path):
    file = tmp_path / "a.h5"
    file.write_bytes(b"grids")
    record = hash_data_path(file)
    assert record["sha256"] == hashlib.sha256(b"grids").hexdigest() and record["method"] == FILE_METHOD
    folder = tmp_path / "structures"
    (folder / "sub").mkdir(parents=True)
    (folder / "1abc.pdb").write_text("ATOM 1\n")
    (folder / "sub" / "2xyz.cif").write_text("data_2xyz\n")
    first = hash_data_path(folder)
    assert first["kind"] == "folder" and first["num_files"] == 2 and first["method"] == FOLDER_METHOD
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)  # new modification times, same contents
    (copy / ".DS_Store").write_text("hidden files are not data")
    assert hash_data_path(copy)["sha256"] == first["sha256"]
    (copy / "sub" / "2xyz.cif").write_text("data_2xyz changed\n")
    assert hash_data_path(copy)["sha256"] != first["sha256"]
    with pytest.raises(DataError, match="not found"):
        hash_data_path(tmp_path / "missing")


def test_every_run_records_versions_device_git_and_data_hash(data):
    result = invoke("finetune", data, *TINY_TRAIN, "--name", "r")
    assert result.exit_code == 0, result.output
    run = RunStore().resolve("r")
    provenance = run.provenance
    (entry,) = provenance["data"]
    assert entry["field"] == "finetune.data_path" and entry["path"] == str(data)
    assert entry["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    (session,) = provenance["sessions"]
    assert session["event"] == "created" and session["lba_version"] == run.config["lba_version"]
    assert set(session["packages"]) >= {"torch", "numpy", "gemmi", "rdkit"}
    assert all(session["packages"][p] for p in ("torch", "numpy", "gemmi", "rdkit"))
    assert "cuda" in session and session["device"]["type"] == "cpu" and session["device"]["name"]
    git = session["git"]
    assert git is None or (re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool))
    assert check_run_data(run) == []


def test_voxelize_refuses_to_overwrite_and_runs_refuse_the_new_file(data):
    """A re-voxelized file (here another split) under a run: evaluate refuses, --force warns."""
    assert invoke("finetune", data, *TINY_TRAIN, "--name", "r").exit_code == 0
    before = data.read_bytes()
    result = invoke("voxelize", MANIFEST, "-o", data, *TINY_GRID, "-q", "--split", "random", "--seed", "5")
    assert result.exit_code == 1 and "exists already" in result.output and "--force" in result.output
    assert data.read_bytes() == before
    result = invoke("voxelize", MANIFEST, "-o", data, *TINY_GRID, "-q", "--split", "random", "--seed", "5", "--force")
    assert result.exit_code == 0, result.output
    assert data.read_bytes() != before

    result = invoke("evaluate", "r")
    assert result.exit_code == 1 and "changed since run" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(DataChangedError):
        check_run_data(RunStore().resolve("r"))
    result = invoke("evaluate", "r", "--force", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "going on because of --force" in result.stderr
    assert json.loads(result.stdout)[0]["label"] == "random"


def test_a_run_made_before_provenance_is_named_not_refused(data):
    assert invoke("finetune", data, *TINY_TRAIN, "--name", "old").exit_code == 0
    run = RunStore().resolve("old")
    (run.path / "provenance.json").unlink()
    assert "records no data fingerprints" in check_run_data(run)[0]
    result = invoke("evaluate", "old")
    assert result.exit_code == 0 and "records no data fingerprints" in result.output


def test_an_export_gives_the_hash_the_run_was_trained_on(data):
    assert invoke("finetune", data, *TINY_TRAIN, "--name", "r").exit_code == 0
    recorded = hashlib.sha256(data.read_bytes()).hexdigest()
    result = invoke("voxelize", MANIFEST, "-o", data, *TINY_GRID, "-q", "--split", "random", "--seed", "5", "--force")
    assert result.exit_code == 0
    result = invoke("export", "r", "exported")
    assert result.exit_code == 0, result.output
    assert "changed since the run was trained on it" in result.output
    card = (data.parent / "exported" / "README.md").read_text()
    assert recorded in card and hashlib.sha256(data.read_bytes()).hexdigest() in card
