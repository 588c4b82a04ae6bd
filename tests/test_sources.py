"""Reading ATOM3D LMDBs and PDBbind folders: the same complexes either way."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ATOM3D, PDBBIND, make_pdbbind_subset, require_shared

from lba_cli.config import GridConfig
from lba_cli.data.build import build_dataset
from lba_cli.data.grids_h5 import open_grids, read_grid_set
from lba_cli.data.records import Skipped, SourceNote
from lba_cli.data.sources import atom3d, folders_csv, pdbbind
from lba_cli.data.sources.atom3d import find_atom3d_lmdbs
from lba_cli.errors import DataError


def test_atom3d_split_root_and_single_lmdb_are_found():
    require_shared()
    assert sorted(find_atom3d_lmdbs(ATOM3D)) == ["test", "train", "val"]
    assert list(find_atom3d_lmdbs(ATOM3D / "data")) == ["train", "val", "test"]
    assert list(find_atom3d_lmdbs(ATOM3D / "data" / "test")) == ["test"]
    assert list(find_atom3d_lmdbs(ATOM3D / "data" / "test" / "data.mdb")) == ["test"]


def test_atom3d_one_level_too_high_names_the_path_to_give():
    require_shared()
    with pytest.raises(DataError) as error:
        find_atom3d_lmdbs(ATOM3D.parent)
    assert "split-by-protein" in str(error.value) and "give one of" in str(error.value)


def test_atom3d_records_are_parsed_without_hydrogens_or_water():
    require_shared()
    records = list(atom3d.iter_records((ATOM3D / "data" / "test",), GridConfig()))
    assert len(records) == 38 and not any(isinstance(r, Skipped) for r in records)
    first = records[0]
    assert first.complex_id == "1bcu" and first.affinity_pk == pytest.approx(3.28)
    assert first.split == "test"
    assert 1 not in set(first.protein["atomic_number"].to_list())  # no hydrogens
    # 1bcu's protein file has 4842 atoms: 2284 H and 232 waters among them
    assert first.protein.height == 4842 - 2284 - 232
    assert first.ligand.height == 13 + 3  # heavy atoms of the proflavine ligand


def test_atom3d_and_pdbbind_give_the_same_ids_labels_atoms_and_grids(demo_h5s):
    """All 285 demo complexes, read from the ATOM3D LMDBs and from the PDBbind folders."""
    da, db = read_grid_set(demo_h5s[0]), read_grid_set(demo_h5s[1])
    assert len(da) == len(db) == 285
    assert sorted(da.ids) == sorted(db.ids)
    order_b = {k: i for i, k in enumerate(db.ids)}
    with h5py.File(demo_h5s[0]) as fa, h5py.File(demo_h5s[1]) as fb:
        grids_a, grids_b = fa["grids"][...], fb["grids"][...]
    for i, complex_id in enumerate(da.ids):
        j = order_b[complex_id]
        # ATOM3D stores PDBbind's pK rounded to 2 decimals; PDBbind's demo index gives Kd/Ki
        assert da.affinity_pk[i] == pytest.approx(db.affinity_pk[j], abs=0.0051)
        xa, na, pa = da.atoms(i)
        xb, nb, pb = db.atoms(j)
        assert np.array_equal(na, nb) and np.array_equal(pa, pb)
        assert np.allclose(xa, xb, atol=1e-3)
        assert np.abs(grids_a[i] - grids_b[j]).max() < 1e-4


def test_pdbbind_reads_all_285_demo_complexes():
    require_shared()
    items = [i for i in pdbbind.iter_records((PDBBIND,), GridConfig()) if not isinstance(i, SourceNote)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(items) == 285 and skipped == []
    unsanitised = [i for i in items if any("unsanitised" in n for n in i.notes)]
    assert unsanitised, "the demo set has ligands RDKit cannot sanitise; they must be read unsanitised"
    assert all(i.protein_group for i in items)  # UniProt ids from the name index
    assert all(i.measure in ("Kd", "Ki") and i.operator == "=" for i in items)


def test_pdbbind_folder_without_index_entry_is_skipped_with_reason(tmp_path):
    subset = make_pdbbind_subset(tmp_path / "p", ("1a30", "1bcu"))
    index = subset / "index" / "INDEX_demo_PL_data.2021"
    index.write_text("\n".join(l for l in index.read_text().splitlines() if not l.startswith("1bcu")) + "\n")
    items = list(pdbbind.iter_records((subset,), GridConfig()))
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert [s.complex_id for s in skipped] == ["1bcu"] and "no entry" in skipped[0].reason


def test_nothing_readable_is_an_error_and_writes_nothing(tmp_path):
    subset = make_pdbbind_subset(tmp_path / "p", ("1a30",))
    (subset / "index" / "INDEX_demo_PL_data.2021").write_text("# empty\n")
    with pytest.raises(DataError, match="no complex could be read"):
        build_dataset([subset], tmp_path / "out.h5", GridConfig())
    assert not (tmp_path / "out.h5").exists()
    assert not list(tmp_path.glob(".out.h5*"))


def test_grid_file_layout(tiny_h5):
    with open_grids(tiny_h5) as f:
        assert f.attrs["format"] == "lba-grids"
        assert f["grids"].shape == (8, 7, 21, 21, 21)
        assert f["grids"].dtype == np.float32
        assert f.attrs["channels"] == "C;N;O;P;S,SE;*"
    data = read_grid_set(tiny_h5)
    assert set(data.split) == {"train", "val", "test"}
    assert data.grid == GridConfig()
    # every stored atom is within reach of its box centre
    for i in range(len(data)):
        xyz, _, _ = data.atoms(i)
        assert np.linalg.norm(xyz - data.center_A[i], axis=1).max() <= data.grid.reach_A + 1e-4


def test_open_grids_rejects_other_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_grids(tmp_path / "missing.h5")
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="cannot open"):
        open_grids(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.attrs["format"] = "other"
    with pytest.raises(DataError, match="not an lba grids file"):
        open_grids(tmp_path / "y.h5")


# ------------------------------------------------- labels: required to train, optional to predict


def _manifest(tmp_path, header: str, label: str | None) -> Path:
    rows = [header, f"1a30,{PDBBIND / '1a30' / '1a30_protein.pdb.gz'},{PDBBIND / '1a30' / '1a30_ligand.sdf'}"
            + ("" if label is None else f",{label}")]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


LABEL_CASES = [  # (name, manifest header, label cell, skip reason when labels are required, note when optional)
    ("blank cell", "id,protein,ligand,affinity", "", "no value in measurement column", None),
    ("unreadable", "id,protein,ligand,affinity", "Kd=lots", "unreadable label", "read without a measured pK"),
    ("not finite", "id,protein,ligand,affinity_pk", "nan", "not a finite number", "read without a measured pK"),
]


@pytest.mark.parametrize("name,header,label,reason,note", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_manifest_labels_required_for_training_optional_for_prediction(name, header, label, reason, note, tmp_path):
    from lba_cli.data.records import ComplexRecord, SourceOptions
    from lba_cli.data.sources import csv_manifest

    require_shared()
    path = _manifest(tmp_path, header, label)
    [required] = list(csv_manifest.iter_records((path,), GridConfig()))
    assert isinstance(required, Skipped) and required.stage == "label" and reason in required.reason
    [optional] = list(csv_manifest.iter_records((path,), GridConfig(), SourceOptions(require_labels=False)))
    assert isinstance(optional, ComplexRecord) and optional.affinity_pk is None
    assert (note is None and not optional.notes) or any(note in n for n in optional.notes)


def test_manifest_without_label_columns_is_readable_for_prediction_only(tmp_path):
    from lba_cli.data.records import ComplexRecord, SourceOptions
    from lba_cli.data.sources import csv_manifest

    require_shared()
    path = _manifest(tmp_path, "id,protein,ligand", None)
    with pytest.raises(DataError, match="affinity_pk or affinity"):
        list(csv_manifest.iter_records((path,), GridConfig()))
    [record] = list(csv_manifest.iter_records((path,), GridConfig(), SourceOptions(require_labels=False)))
    assert isinstance(record, ComplexRecord) and record.complex_id == "1a30" and record.ligand.height > 0


def test_pdbbind_folder_without_index_entry_is_predicted_not_trained_on(tmp_path):
    from lba_cli.data.records import ComplexRecord, SourceOptions

    root = make_pdbbind_subset(tmp_path / "pdbbind", ("1a30", "1e66"))
    index = root / "index" / "INDEX_demo_PL_data.2021"
    index.write_text("\n".join(l for l in index.read_text().splitlines() if not l.startswith("1e66")) + "\n")
    trained = {i.complex_id: i for i in pdbbind.iter_records((root,), GridConfig())}
    assert isinstance(trained["1e66"], Skipped) and "no entry in" in trained["1e66"].reason
    predicted = {i.complex_id: i for i in pdbbind.iter_records((root,), GridConfig(),
                                                               SourceOptions(require_labels=False))}
    assert isinstance(predicted["1e66"], ComplexRecord) and predicted["1e66"].affinity_pk is None
    assert predicted["1a30"].affinity_pk == trained["1a30"].affinity_pk


# ----------------------------------------------- folders of <id>/ subfolders with a label table


def _label_folder(root, ids=("1a30", "1bcu"), table=None, name="labels.csv"):
    """<root>/<id>/ with the demo set's pocket and ligand files (small: fast) and a label table."""
    require_shared()
    root.mkdir(parents=True, exist_ok=True)
    for complex_id in ids:
        (root / complex_id).mkdir()
        for part in ("pocket.pdb", "ligand.sdf"):
            (root / complex_id / f"{complex_id}_{part}").symlink_to(PDBBIND / complex_id / f"{complex_id}_{part}")
    if table is not None:
        (root / name).write_text(table)
    return root


# Label tables as re-releases and users write them: (header + rows, pK of 1a30, of 1bcu).
LABEL_TABLES = [
    ("pdb_id,pK", "pdb_id,pK\n1a30,4.3\n1bcu,3.28\n", 4.3, 3.28),
    ("PDB;-logKd/Ki", "PDB;-logKd/Ki\n1A30;4.3\n1BCU;3.28\n", 4.3, 3.28),
    ("id,pKd", "id,pKd\n1a30,4.3\n1bcu,3.28\n", 4.3, 3.28),
    ("code,affinity-strings", "code,affinity\n1a30,Ki=50uM\n1bcu,Kd=0.53mM\n", 4.30103, 3.27572),
    ("pdbid,affinity-range", "pdbid,affinity\n1a30,Ki=40-62.5uM\n1bcu,Kd=0.53mM\n", (4.39794 + 4.20412) / 2, 3.27572),
    ("Complex ID,Kd_nM", "Complex ID,Kd_nM\n1a30,50000\n1bcu,530000\n", 4.30103, 3.27572),
    ("id,Ki-with-units", "id,Ki\n1a30,50uM\n1bcu,<0.53mM\n", 4.30103, 3.27572),
    ("tab-separated", "pdb_id\tneglog_aff\n1a30\t4.3\n1bcu\t3.28\n", 4.3, 3.28),
]


@pytest.mark.parametrize("table,pk_1a30,pk_1bcu", [c[1:] for c in LABEL_TABLES], ids=[c[0] for c in LABEL_TABLES])
def test_folders_with_a_label_table_are_detected_and_read(tmp_path, table, pk_1a30, pk_1bcu):
    from lba_cli.choices import SourceFormat
    from lba_cli.data.sources import resolve_sources

    root = _label_folder(tmp_path / "c", table=table)
    assert resolve_sources([root], SourceFormat.auto) == [((root,), SourceFormat.folders_csv)]
    items = list(folders_csv.iter_records((root,), GridConfig()))
    records = {i.complex_id: i.affinity_pk for i in items if not isinstance(i, (Skipped, SourceNote))}
    assert records == pytest.approx({"1a30": pk_1a30, "1bcu": pk_1bcu}, abs=1e-4)


def test_label_table_named_with_labels_and_its_problems(tmp_path):
    from lba_cli.choices import SourceFormat
    from lba_cli.data.records import SourceOptions
    from lba_cli.data.sources import resolve_sources

    root = _label_folder(tmp_path / "c", ids=("1a30", "1bcu", "1bzc"))
    elsewhere = tmp_path / "mine.csv"
    elsewhere.write_text("id,pK\n1a30,4.3\n1bcu,abc\n1e66,9.0\n")
    with pytest.raises(DataError, match="cannot tell what"):  # no table in the folder: not detected
        resolve_sources([root], SourceFormat.auto)
    options = SourceOptions(labels=elsewhere)
    assert resolve_sources([root], SourceFormat.auto, options) == [((root,), SourceFormat.folders_csv)]
    items = list(folders_csv.iter_records((root,), GridConfig(), options))
    skipped = {i.complex_id: (i.stage, i.reason) for i in items if isinstance(i, Skipped)}
    notes = [i.text for i in items if isinstance(i, SourceNote)]
    assert skipped == {"1bcu": ("label", "unreadable label in mine.csv row 3: pK column 'pK': 'abc' is not a number\n"
                                         "expected: pK = -log10(K / M), e.g. 6.5"),
                       "1bzc": ("label", "no row in mine.csv")}
    assert any("1 ids of mine.csv have no complex folder" in n and "1e66" in n for n in notes)
    (root / "a.csv").write_text("id,pK\n1a30,4\n")
    (root / "b.csv").write_text("pdb,pKd\n1a30,4\n")
    with pytest.raises(DataError, match="several label tables"):
        list(folders_csv.iter_records((root,), GridConfig()))


def test_a_pdbbind_index_still_wins_without_labels(tmp_path):
    from lba_cli.choices import SourceFormat
    from lba_cli.data.records import SourceOptions
    from lba_cli.data.sources import resolve_sources

    subset = make_pdbbind_subset(tmp_path / "p", ("1a30",))
    (subset / "labels.csv").write_text("id,pK\n1a30,9.99\n")
    assert resolve_sources([subset], SourceFormat.auto)[0][1] is SourceFormat.pdbbind
    named = SourceOptions(labels=subset / "labels.csv")
    assert resolve_sources([subset], SourceFormat.auto, named)[0][1] is SourceFormat.folders_csv
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,protein,ligand,affinity_pk\n")
    with pytest.raises(DataError, match="--labels"):
        resolve_sources([manifest], SourceFormat.auto, named)


def test_folders_without_a_readable_label_are_predicted_not_trained_on(tmp_path):
    from lba_cli.data.records import ComplexRecord, SourceOptions

    root = _label_folder(tmp_path / "c", ids=("1a30", "1bcu", "1bzc"), table="id,pK\n1a30,4.3\n1bcu,abc\n")
    trained = {i.complex_id: i for i in folders_csv.iter_records((root,), GridConfig())
               if not isinstance(i, SourceNote)}
    assert isinstance(trained["1bcu"], Skipped) and isinstance(trained["1bzc"], Skipped)
    predicted = {i.complex_id: i for i in folders_csv.iter_records((root,), GridConfig(),
                                                                   SourceOptions(require_labels=False))
                 if not isinstance(i, SourceNote)}
    assert all(isinstance(i, ComplexRecord) for i in predicted.values()) and len(predicted) == 3
    assert predicted["1a30"].affinity_pk == pytest.approx(4.3)
    assert predicted["1bcu"].affinity_pk is None and any("read without a measured pK" in n
                                                         for n in predicted["1bcu"].notes)
    assert predicted["1bzc"].affinity_pk is None and not any("measured pK" in n for n in predicted["1bzc"].notes)
