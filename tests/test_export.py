"""`lba export`: a run as a self-contained folder that predicts exactly what the run predicts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PDBBIND, TINY_MODEL, require_shared
from typer.testing import CliRunner

from lba_cli.checkpoints import load_checkpoint
from lba_cli.cli import app
from lba_cli.data.grids_h5 import read_grid_set
from lba_cli.evaluate import make_affinity_model
from lba_cli.export import read_export
from lba_cli.predict import predict_complexes, resolve_predictors
from lba_cli.runs import RunStore

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, coarse_h5) -> tuple[Path, Path]:
    """A tiny fine-tuned run and its export: (runs dir, exported folder)."""
    runs = tmp_path_factory.mktemp("runs")
    result = invoke("finetune", coarse_h5, *TINY_MODEL, "--name", "tiny", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    exported = runs.parent / "exported" / "tiny-model"
    result = invoke("export", "tiny", exported, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(exported)
    return runs, exported


@pytest.fixture()
def manifest(tmp_path) -> Path:
    require_shared()
    rows = ["id,protein,ligand"] + [f"{c},{PDBBIND / c / f'{c}_protein.pdb.gz'},{PDBBIND / c / f'{c}_ligand.sdf'}"
                                    for c in ("1a30", "1e66", "3bv9")]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_export_folder_holds_weights_config_scaling_and_card(trained, coarse_h5):
    from safetensors.torch import load_file

    runs, exported = trained
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "export.json",
                                                          "model.safetensors", "target_scaling.json"]
    run = RunStore(runs).resolve("tiny")
    checkpoint = load_checkpoint(run.checkpoint_path("best"))["model"]
    weights = load_file(str(exported / "model.safetensors"))
    assert weights.keys() == checkpoint.keys()
    assert all(torch.equal(weights[k], checkpoint[k]) for k in weights)
    assert json.loads((exported / "config.json").read_text()) == run.config
    manifest = json.loads((exported / "export.json").read_text())
    data = read_grid_set(coarse_h5)
    scaling = json.loads((exported / "target_scaling.json").read_text())  # fine-tuning standardises pK by default
    train_pk = data.affinity_pk[data.indices("train")].astype(np.float64)
    assert scaling["mean_pk"] == pytest.approx(train_pk.mean(), rel=1e-6)
    assert scaling["std_pk"] == pytest.approx(train_pk.std(), rel=1e-6)
    assert scaling["applied_by"].startswith("the model")
    digest = hashlib.sha256(coarse_h5.read_bytes()).hexdigest()
    assert manifest["training_data"]["sha256"] == digest
    assert manifest["training_data"]["split_sizes"] == {s: int((data.split == s).sum()) for s in ("train", "val",
                                                                                                  "test")}
    model = make_affinity_model(run.config, checkpoint, torch.device("cpu"))
    assert manifest["parameters"] == sum(p.numel() for p in model.parameters()) > 1000
    assert set(manifest["metrics"]) == {"val", "test"}
    assert set(manifest["metrics"]["test"]) == {"model", "baseline: train mean", "baseline: heavy atoms"}
    assert manifest["packages"]["torch"] == torch.__version__

    card = (exported / "README.md").read_text()
    for expected in (digest, "resnet-bottleneck", f"{manifest['parameters']:,}", "baseline: heavy atoms",
                     "None: the encoder started from random weights", "| safetensors |", "## Reproducibility"):
        assert expected in card


def test_exported_model_predicts_exactly_what_the_run_predicts(tmp_path, trained, manifest):
    runs, exported = trained
    store = RunStore(runs)
    from_run = predict_complexes(resolve_predictors(store, ["tiny"]), [manifest], device="cpu").frame
    out = tmp_path / "p.csv"
    result = invoke("predict", exported, manifest, "-o", out, "--runs-dir", runs, "--quiet")
    assert result.exit_code == 0, result.output
    import polars as pl

    from_export = pl.read_csv(out)
    assert from_export["id"].to_list() == from_run["id"].to_list() == ["1a30", "1e66", "3bv9"]
    assert from_export["predicted_pk"].to_list() == from_run["predicted_pk"].to_list()  # bit for bit


def test_finetune_init_from_an_exported_model_starts_from_its_weights(trained, coarse_h5, tmp_path):
    from lba_cli.config import build_run_config
    from lba_cli.finetune import prepare_finetune

    runs, exported = trained
    config = build_run_config("finetune", None, {"finetune": {"data_path": str(coarse_h5), "init": str(exported)},
                                                 "train": {"device": "cpu"}})
    prepared = prepare_finetune(config, RunStore(runs))
    weights = read_export(exported).read_weights()
    state = prepared.model.state_dict()
    assert all(torch.equal(state[k], weights[k]) for k in weights if k.startswith(("encoder.", "head.")))
    assert prepared.config.finetune.init == str(exported.resolve())

    result = invoke("finetune", coarse_h5, "--init", exported, "--epochs", "1", "--batch-size", "3", "--device", "cpu",
                    "--name", "again", "--quiet", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    again = RunStore(runs).resolve("again")
    assert again.status["parent_label"] == "random (tiny-model)"
    assert "encoder and head of an exported model" in (again.path / "log.txt").read_text()


def test_export_refuses_an_existing_folder_and_predict_a_non_export(trained, tmp_path):
    runs, exported = trained
    result = invoke("export", "tiny", exported, "--runs-dir", runs)
    assert result.exit_code == 1 and "already exists" in result.output
    (tmp_path / "empty").mkdir()
    assert invoke("export", "tiny", tmp_path / "empty", "--runs-dir", runs).exit_code == 0  # an empty folder is fine
    manifest = json.loads((exported / "export.json").read_text())
    (tmp_path / "future").mkdir()
    for name in ("model.safetensors", "config.json"):
        (tmp_path / "future" / name).write_bytes((exported / name).read_bytes())
    (tmp_path / "future" / "export.json").write_text(json.dumps({**manifest, "format_version": 99}))
    result = invoke("predict", tmp_path / "future", tmp_path / "m.csv", "--runs-dir", runs)
    assert result.exit_code == 1 and "a newer lba wrote it?" in result.output


LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 12345\n".format("0" * 64)


@pytest.mark.parametrize("damaged,damage,message", [
    ("model.safetensors", LFS_POINTER, "model.safetensors is not weights but a Git LFS pointer"),
    ("model.safetensors", "", "model.safetensors is empty (0 bytes)"),
    ("config.json", LFS_POINTER, "config.json is not valid JSON"),
    ("export.json", "", "export.json is empty"),
])
def test_a_damaged_exported_model_is_named_in_one_line(trained, coarse_h5, tmp_path, manifest, damaged, damage,
                                                       message):
    """Files of an exported folder that are not what they claim (a clone without large-file
    support, an interrupted copy): one line naming the file, for predict and finetune --init."""
    runs, exported = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in exported.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / damaged).write_text(damage)
    for args in (("predict", copy, manifest), ("finetune", coarse_h5, "--init", copy, *TINY_MODEL)):
        result = invoke(*args, "--runs-dir", runs)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert message in " ".join(result.output.split()) and str(copy / damaged) in result.output.replace("\n", "")
