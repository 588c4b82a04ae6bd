"""Leakage wherever data meets a run: scored complexes against the run's training data."""

from __future__ import annotations

import pytest
from conftest import SHARED, TINY_GRID, TINY_TRAIN, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.leakage import ComplexKeys, find_leakage, ligand_key

runner = CliRunner()
MANIFEST = SHARED.parent / "faults" / "10-resume-after-failed-attempt" / "data" / "manifest.csv"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_same_ligand_drawn_differently_has_one_key():
    assert ligand_key("OCC") == ligand_key("C(O)C") == "LFQSCWFLJHTTHZ-UHFFFAOYSA-N"  # ethanol's InChIKey
    assert ligand_key("c1ccccc1O") != ligand_key("OCC") and ligand_key("") == ""


def test_find_leakage_by_id_protein_and_ligand():
    training = ComplexKeys(["1abc", "2def", "3ghi"], ["train", "train", "val"], ["P1", "P2", ""], ["L1", "L2", "L3"])
    scored = ComplexKeys(["1abc", "9xyz", "8uvw", "7rst"], ["", "", "", ""], ["P1", "P2", "P9", ""],
                         ["L9", "L3", "L8", "L7"])
    report = find_leakage(scored, training, "run r")
    assert report.same_ids == [("1abc", "train")]
    assert report.proteins == [("1abc", "1abc", "train"), ("9xyz", "2def", "train")]
    assert report.ligands == [("9xyz", "3ghi", "val")]
    assert report.unknown == 1 and report.leaky
    text = " ".join(report.lines())
    assert "of 4 scored complexes, 1 are training complexes" in text and "2 share a protein" in text
    assert not find_leakage(ComplexKeys(["5aaa"], [""], ["P5"], ["L5"]), training, "run r").leaky


@pytest.fixture()
def trained(tmp_path, monkeypatch):
    require_shared()
    monkeypatch.chdir(tmp_path)
    assert invoke("voxelize", MANIFEST, "-o", "data.h5", *TINY_GRID, "-q").exit_code == 0  # train 2, val 1, test 1
    assert invoke("finetune", "data.h5", *TINY_TRAIN, "--name", "r").exit_code == 0
    return tmp_path


def test_evaluate_on_a_re_split_file_names_the_training_complexes(trained):
    """The trial's case: a re-split file whose complexes the run was trained on."""
    result = invoke("voxelize", MANIFEST, "-o", "other.h5", *TINY_GRID, "-q", "--split", "random", "--seed", "5")
    assert result.exit_code == 0
    result = invoke("evaluate", "r", "--data", "other.h5")
    assert result.exit_code == 0, result.output
    assert "leakage check against the train and val complexes of run" in result.output
    assert "of 4 scored complexes, 3 are training complexes" in result.output  # 2 train + 1 val of data.h5
    assert "warning:" in result.output


def test_predict_reports_leakage_against_each_runs_training_data(trained):
    result = invoke("predict", "r", MANIFEST, "-o", "pred.csv")
    assert result.exit_code == 0, result.output
    assert "leakage check against the train and val complexes of r" in result.output
    assert "3 are training complexes" in result.output


def test_a_changed_training_file_is_refused_for_the_leakage_check(trained):
    result = invoke("voxelize", MANIFEST, "-o", "data.h5", *TINY_GRID, "-q", "--split", "random", "--seed", "5",
                    "--force")
    assert result.exit_code == 0
    result = invoke("predict", "r", MANIFEST, "-o", "pred.csv")
    assert result.exit_code == 1 and "changed since run" in result.output
    result = invoke("predict", "r", MANIFEST, "-o", "pred.csv", "--force")
    assert result.exit_code == 0 and "going on because of --force" in result.output


def test_proteins_are_compared_by_sequence_identity_when_both_sides_have_chains():
    import random

    rng = random.Random(0)
    chain = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(120))
    homologue = "".join(c if i % 4 else rng.choice("ACDEFGHIKLMNPQRSTVWY") for i, c in enumerate(chain))  # ~75 %
    unrelated = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(120))
    training = ComplexKeys(["1abc"], ["train"], ["P1"], [""], [[chain]])
    scored = ComplexKeys(["2hom", "3new", "4pep"], ["", "", ""], ["P2", "P3", "P4"], ["", "", ""],
                         [[homologue], [unrelated], ["ACDEFGHIK"]])
    report = find_leakage(scored, training, "run r")
    assert report.proteins == [("2hom", "1abc", "train")]  # another key (P2), but the same protein family
    assert report.unknown == 1 and "sequence identity" in report.method  # a 9-residue peptide is not compared


def test_finetune_from_a_pretrained_run_reports_the_corpus_overlap(trained, bm5_subset):
    assert invoke("corpus", bm5_subset, "-o", "bm5.h5", *TINY_GRID, "-q").exit_code == 0
    pretrain = ["--epochs", "1", "--epoch-size", "8", "--val-size", "4", "--batch-size", "4", "--width", "8",
                "--width", "16", *TINY_GRID, "--no-balance-shortcut", "-q"]
    result = invoke("pretrain", "--structures", "bm5.h5", "--exclude-similar-to", "data.h5", *pretrain, "--name", "p")
    assert result.exit_code == 0, result.output
    result = invoke("finetune", "data.h5", "--init", "p", *TINY_TRAIN)
    assert result.exit_code == 0, result.output
    assert "were left out before pre-training" in result.output
    result = invoke("pretrain", "--structures", "bm5.h5", *pretrain, "--name", "q")
    assert result.exit_code == 0, result.output
    result = invoke("finetune", "data.h5", "--init", "q", *TINY_TRAIN)
    assert result.exit_code == 0 and "pre-training corpus of" in result.output and "identity" in result.output


def test_corpus_overlap_aligns_structure_files_with_the_val_test_proteins(tmp_path, monkeypatch):
    """A parent pre-trained on structure files (no corpus file, no exclusion): its chains are
    aligned with the fine-tuning file's val/test chains. 3d4z is the file's test complex; its
    36-residue pocket chain is found again. 3cj4 (train) is another protein, and 2ymd's (val)
    chains are shorter than the 30 residues compared."""
    from types import SimpleNamespace

    from lba_cli.leakage import corpus_overlap

    require_shared()
    monkeypatch.chdir(tmp_path)
    assert invoke("voxelize", MANIFEST, "-o", "data.h5", *TINY_GRID, "-q").exit_code == 0
    folder = tmp_path / "structures"
    folder.mkdir()
    for name in ("3cj4", "3d4z", "2ymd"):
        (folder / f"{name}_pocket8.pdb").symlink_to(MANIFEST.parent / f"{name}_pocket8.pdb")
    parent = SimpleNamespace(id="p", config={"structures": [str(folder)], "neighbor": {"max_identity": 0.3}},
                             status={})
    lines = corpus_overlap(parent, tmp_path / "data.h5")
    assert lines == ["pre-training corpus of p: 1 of 3 structures have a chain with >= 30% identity to a val/test "
                     "protein of data.h5: the encoder has seen those proteins (pre-train with --exclude-similar-to "
                     "to keep them out)"]
    parent.config["structures"] = [str(folder / "3cj4_pocket8.pdb")]
    assert corpus_overlap(parent, tmp_path / "data.h5") == [
        "pre-training corpus of p: none of its 1 structures reaches 30% identity to a val/test protein of data.h5"]
