"""`lba predict`: new complexes (labels optional) through one model or an ensemble; `evaluate --split all`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import PDBBIND, TINY_MODEL, require_fault, require_shared
from typer.testing import CliRunner

from lba_cli.cli import app
from lba_cli.predict import SDF_PROPERTIES, predict_complexes, resolve_predictors, split_models_and_sources
from lba_cli.runs import RunStore

runner = CliRunner()

# Five thrombin complexes of the demo set; their ligands, superposed onto 1bcu's protein, are
# a congeneric-series-like SDF (one target, one frame, several ligands).
THROMBIN = ("1bcu", "3bv9", "1oyt", "2zda", "3utu")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def replicates(tmp_path_factory, coarse_h5) -> tuple[Path, str]:
    """Two tiny fine-tuned replicates (seeds 0 and 1) of one group: (runs dir, group id)."""
    runs = tmp_path_factory.mktemp("runs")
    result = invoke("finetune", coarse_h5, *TINY_MODEL, "--seeds", "0 1", "--name", "rep", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    tags = RunStore(runs).resolve("rep-s0").status["tags"]
    return runs, next(t for t in tags if t.startswith("group:")).removeprefix("group:")


@pytest.fixture(scope="module")
def thrombin_series(tmp_path_factory) -> tuple[Path, Path]:
    """(protein, series.sdf): 1bcu's protein and the real ligands of 5 thrombin entries moved
    into its frame (CA superposition with gemmi), written with RDKit; only the first record
    carries a measured pK (property ``pK``)."""
    import gemmi
    from rdkit import Chem

    require_shared()
    folder = tmp_path_factory.mktemp("series")

    def chain(code: str):
        structure = gemmi.read_structure(str(PDBBIND / code / f"{code}_protein.pdb.gz"))
        structure.setup_entities()
        return max((c.get_polymer() for c in structure[0]), key=len)

    reference = chain("1bcu")
    writer = Chem.SDWriter(str(folder / "series.sdf"))
    for n, code in enumerate(THROMBIN):
        fit = gemmi.calculate_superposition(reference, chain(code), gemmi.PolymerType.PeptideL, gemmi.SupSelect.CaP)
        mol = Chem.MolFromMolFile(str(PDBBIND / code / f"{code}_ligand.sdf"), removeHs=False)
        conformer = mol.GetConformer()
        for k in range(mol.GetNumAtoms()):
            moved = fit.transform.apply(gemmi.Position(*conformer.GetAtomPosition(k)))
            conformer.SetAtomPosition(k, (moved.x, moved.y, moved.z))
        mol.SetProp("_Name", f"thrombin {code}")
        if n == 0:
            mol.SetProp("pK", "6.5")
        writer.write(mol)
    writer.close()
    return PDBBIND / "1bcu" / "1bcu_protein.pdb.gz", folder / "series.sdf"


@pytest.fixture()
def manifest(tmp_path) -> Path:
    """Three demo complexes; only 1a30 has a measured affinity (the column is blank for the rest)."""
    require_shared()
    rows = ["id,protein,ligand,affinity"]
    for code, affinity in (("1a30", "Ki=10nM"), ("1e66", ""), ("1g2k", "")):
        rows.append(f"{code},{PDBBIND / code / f'{code}_protein.pdb.gz'},{PDBBIND / code / f'{code}_ligand.sdf'},"
                    f"{affinity}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_series_sdf_without_labels_predicted_and_written_back(tmp_path, replicates, thrombin_series):
    from rdkit import Chem

    runs, _ = replicates
    protein, sdf = thrombin_series
    # voxelize keeps requiring labels: a series without --label-field is not training data
    result = invoke("voxelize", protein, sdf, "-o", tmp_path / "series.h5")
    assert result.exit_code == 1 and "needs --label-field" in result.output

    out = tmp_path / "predictions.csv"
    result = invoke("predict", "rep-s0", protein, sdf, "-o", out, "--runs-dir", runs, "--quiet")
    assert result.exit_code == 0, result.output
    assert "5 complexes predicted by 1 model(s); 0 skipped" in result.stdout
    table = pl.read_csv(out)
    assert table.columns == ["id", "predicted_pk", "std", "n_models", "affinity_pk", "source"]
    assert table["id"].to_list() == [f"thrombin_{code}_{n + 1}" for n, code in enumerate(THROMBIN)]
    assert table["n_models"].to_list() == [1] * 5
    assert table["std"].null_count() == 5  # one model: no spread
    assert table["affinity_pk"].null_count() == 5  # no --label-field: nothing measured is claimed
    assert table["predicted_pk"].is_finite().all()

    written = [m for m in Chem.SDMolSupplier(str(tmp_path / "predictions.sdf"), removeHs=False)]
    assert len(written) == 5
    assert [m.GetDoubleProp(SDF_PROPERTIES["predicted_pk"]) for m in written] == pytest.approx(
        table["predicted_pk"].to_list(), abs=1e-9)
    assert written[0].GetProp("pK") == "6.5" and written[0].GetNumAtoms() == Chem.MolFromMolFile(
        str(PDBBIND / "1bcu" / "1bcu_ligand.sdf"), removeHs=False).GetNumAtoms()  # the records themselves unchanged


def test_series_label_field_gives_measured_pk_where_known(replicates, thrombin_series):
    runs, _ = replicates
    protein, sdf = thrombin_series
    predictors = resolve_predictors(RunStore(runs), ["rep-s0"])
    report = predict_complexes(predictors, [protein, sdf], label_field="pK")
    assert report.frame["affinity_pk"].to_list() == [6.5, None, None, None, None]
    assert not report.skipped  # the unlabelled records are predicted, not skipped


def test_ensemble_mean_and_std_are_those_of_the_single_runs(tmp_path, replicates, manifest):
    runs, group = replicates
    singles = []
    for name in ("rep-s0", "rep-s1"):
        out = tmp_path / f"{name}.json"
        result = invoke("predict", name, manifest, "-o", out, "--runs-dir", runs, "--quiet")
        assert result.exit_code == 0, result.output
        singles.append(json.loads(out.read_text()))
    both = np.array([[row["predicted_pk"] for row in rows] for rows in singles])
    assert not np.allclose(both[0], both[1])  # two seeds, two models: the spread is real

    for args in (["rep-s0", "rep-s1"], ["--group", group]):
        out = tmp_path / "ensemble.csv"
        result = invoke("predict", *args, manifest, "-o", out, "--runs-dir", runs, "--quiet")
        assert result.exit_code == 0, result.output
        table = pl.read_csv(out)
        assert table["id"].to_list() == ["1a30", "1e66", "1g2k"]
        assert table["n_models"].to_list() == [2, 2, 2]
        assert table["predicted_pk"].to_numpy() == pytest.approx(both.mean(axis=0), abs=1e-9)
        assert table["std"].to_numpy() == pytest.approx(both.std(axis=0, ddof=1), abs=1e-9)
        assert table["affinity_pk"][0] == pytest.approx(8.0) and table["affinity_pk"][1:].null_count() == 2


def test_predict_reads_as_voxelize_and_predicts_as_evaluate(replicates, coarse_h5, tiny_pdbbind):
    """The same complexes from their PDBbind folder (predict) and from the voxelized file
    (evaluate) give the same pK: one reader, one crop, one prediction function."""
    from lba_cli.evaluate import evaluate_run

    runs, _ = replicates
    store = RunStore(runs)
    evaluated = evaluate_run(store, "rep-s0", "all", device="cpu").predictions
    report = predict_complexes(resolve_predictors(store, ["rep-s0"]), [tiny_pdbbind], device="cpu")
    joined = report.frame.join(evaluated, on="id", suffix="_evaluate")
    assert joined.height == 8
    assert joined["predicted_pk"].to_numpy() == pytest.approx(joined["predicted_pk_evaluate"].to_numpy(), abs=1e-5)
    assert joined["affinity_pk"].to_numpy() == pytest.approx(joined["affinity_pk_evaluate"].to_numpy(), abs=1e-5)


def test_test_time_augmentation_is_seeded_and_averages_rotations(replicates, manifest):
    runs, _ = replicates
    predictors = resolve_predictors(RunStore(runs), ["rep-s0"])
    plain = predict_complexes(predictors, [manifest]).frame["predicted_pk"].to_numpy()
    first = predict_complexes(predictors, [manifest], num_rotations=3, seed=1).frame["predicted_pk"].to_numpy()
    again = predict_complexes(predictors, [manifest], num_rotations=3, seed=1).frame["predicted_pk"].to_numpy()
    other = predict_complexes(predictors, [manifest], num_rotations=3, seed=2).frame["predicted_pk"].to_numpy()
    assert np.array_equal(first, again)
    assert not np.allclose(first, plain) and not np.allclose(first, other)
    one = predict_complexes(predictors, [manifest], num_rotations=1, seed=1).frame["predicted_pk"].to_numpy()
    two = predict_complexes(predictors, [manifest], num_rotations=2, seed=1).frame["predicted_pk"].to_numpy()
    # rotation k does not depend on N: the second rotation alone, 2 x mean(2) - mean(1), differs from the first
    assert not np.allclose(2 * two - one, one)


def test_skipped_complexes_are_reported(tmp_path, replicates, manifest):
    runs, _ = replicates
    text = manifest.read_text() + f"ghost,{tmp_path / 'nope.pdb'},{tmp_path / 'nope.sdf'},\n"
    manifest.write_text(text)
    report = tmp_path / "skipped.csv"
    result = invoke("predict", "rep-s0", manifest, "-o", tmp_path / "p.csv", "--report", report, "--runs-dir", runs,
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert "skipped ghost (read)" in result.output and "1 skipped" in result.stdout
    assert pl.read_csv(report)["id"].to_list() == ["ghost"]
    assert pl.read_csv(tmp_path / "p.csv").height == 3


def test_predict_reads_damaged_inputs_as_voxelize_does(tmp_path, replicates):
    """The readers' fault handling reaches predict: a receptor that holds its ligand loses the
    copy (folder 05), and a source with nothing readable still writes --report (folder 01)."""
    runs, _ = replicates
    holds = require_fault("05-receptor-holds-ligand")
    result = invoke("predict", "rep-s0", holds / "manifest.csv", "-o", tmp_path / "p.csv", "--runs-dir", runs,
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert "22 atoms of the receptor file coincide with ligand atoms" in " ".join(result.output.split())
    assert pl.read_csv(tmp_path / "p.csv")["id"].to_list() == ["3u5j", "4m0y"]
    nothing = require_fault("01-nothing-readable-still-reports")
    report = tmp_path / "skipped.csv"
    result = invoke("predict", "rep-s0", nothing / "manifest.csv", "--report", report, "--runs-dir", runs, "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no complex could be read" in result.output
    skipped = pl.read_csv(report)
    assert skipped["id"].to_list() == ["4jsz"] and "no protein atoms" in skipped["reason"][0]


ERROR_CASES = [
    ("no-sources", ["rep-s0"], 2, "give the complexes to predict"),
    ("unknown-run", ["no-such-run", "MANIFEST"], 1, "no run matches 'no-such-run'"),
    ("mistyped-source", ["rep-s0", "protien.pdb", "ligands.sdf"], 1, "source not found: protien.pdb"),
    ("bad-output", ["rep-s0", "MANIFEST", "-o", "p.txt"], 1, "expected: a .csv or .json file"),
    ("unknown-group", ["--group", "nope", "MANIFEST"], 1, "no fine-tuning run carries the tag group:nope"),
]


@pytest.mark.parametrize("name,args,code,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_predict_user_errors(name, args, code, message, tmp_path, replicates, manifest, monkeypatch):
    runs, _ = replicates
    monkeypatch.chdir(tmp_path)
    result = invoke("predict", *[manifest if a == "MANIFEST" else a for a in args], "--runs-dir", runs, "--quiet")
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_models_come_before_sources(tmp_path, manifest):
    run_dir = tmp_path / "runs" / "20261130-101500-ab12"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    (run_dir / "status.json").write_text("{}")
    models, sources = split_models_and_sources(["rep-s0", str(run_dir), str(manifest), "more.csv"])
    assert models == ["rep-s0", str(run_dir)] and sources == [manifest, Path("more.csv")]
