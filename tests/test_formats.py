"""Every input format users bring, and the quirks of real files, each on data derived from
../shared/data inside the test."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import PDBBIND, make_pdbbind_subset, require_shared

from lba_cli.choices import SourceFormat
from lba_cli.config import GridConfig
from lba_cli.data.atoms import read_ligand_atoms, read_structure, read_structure_atoms, structure_atoms
from lba_cli.data.build import build_dataset, protein_groups
from lba_cli.data.grids_h5 import read_grid_set
from lba_cli.data.records import ComplexRecord, Skipped, SourceOptions
from lba_cli.data.sources import csv_manifest, resolve_sources, sdf_series
from lba_cli.data.sources.sdf_series import series_label_to_pk
from lba_cli.errors import DataError


def protein_lines(complex_id: str = "1a30") -> list[str]:
    require_shared()
    with gzip.open(PDBBIND / complex_id / f"{complex_id}_protein.pdb.gz", "rt") as handle:
        return handle.read().splitlines()


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def heavy(path: Path, **kwargs) -> int:
    return read_structure_atoms(path, **kwargs).height


# ------------------------------------------------------------------ structure formats


def test_mmcif_and_gzip_give_the_same_atoms_as_pdb(tmp_path):
    import gemmi

    pdb = write(tmp_path / "p.pdb", protein_lines())
    structure = gemmi.read_structure(str(pdb))
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(tmp_path / "p.cif"))
    with gzip.open(tmp_path / "p.cif.gz", "wb") as dst:
        dst.write((tmp_path / "p.cif").read_bytes())
    a = read_structure_atoms(pdb)
    for other in (tmp_path / "p.cif", tmp_path / "p.cif.gz", PDBBIND / "1a30" / "1a30_protein.pdb.gz"):
        b = read_structure_atoms(other)
        assert b.height == a.height
        assert np.allclose(a.select("x_A", "y_A", "z_A").to_numpy(), b.select("x_A", "y_A", "z_A").to_numpy(),
                           atol=1e-3)
        assert a["atomic_number"].to_list() == b["atomic_number"].to_list()


AUTODOCK = {"C": "C", "N": "NA", "O": "OA", "S": "SA", "H": "HD"}


def as_pdbqt(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line.startswith(("ATOM", "HETATM")):
            element = line[76:78].strip()
            atom_type = "A" if line[12:16].strip() in ("CG", "CD1", "CD2", "CE1", "CE2",
                                                       "CZ") else AUTODOCK.get(element, element)
            out.append(line[:66].ljust(66) + "    +0.000 " + atom_type.ljust(2))
        else:
            out.append(line)
    return out


def test_pdbqt_autodock_types_map_to_elements(tmp_path):
    """A (aromatic C), NA, OA, SA, HD are AutoDock types, not elements; Cl stays chlorine."""
    lines = protein_lines()
    pdbqt = write(tmp_path / "p.pdbqt", as_pdbqt(lines))
    reference = read_structure_atoms(write(tmp_path / "p.pdb", lines))
    got = read_structure_atoms(pdbqt)
    assert got["atomic_number"].to_list() == reference["atomic_number"].to_list()
    ligand = write(tmp_path / "lig.pdbqt", [
        "MODEL 1", "ROOT",
        "HETATM    1  C1  LIG A   1       1.000   2.000   3.000  0.00  0.00    +0.100 A ",
        "HETATM    2 CL1  LIG A   1       2.700   2.000   3.000  0.00  0.00    -0.100 Cl",
        "ENDROOT", "TORSDOF 0", "ENDMDL"])
    read = read_ligand_atoms([ligand])
    assert read.atoms["atomic_number"].to_list() == [6, 17]


def test_missing_element_column_is_inferred_from_atom_names(tmp_path):
    lines = [l[:76] if l.startswith(("ATOM", "HETATM")) else l for l in protein_lines()]
    assert read_structure_atoms(write(tmp_path / "noelement.pdb", lines))["atomic_number"].to_list() == \
        read_structure_atoms(write(tmp_path / "p.pdb", protein_lines()))["atomic_number"].to_list()


def test_alternate_locations_keep_the_most_occupied(tmp_path):
    lines = protein_lines()
    index = next(i for i, l in enumerate(lines) if l.startswith("ATOM") and l[12:16].strip() == "CB")
    line = lines[index]
    low = line[:16] + "A" + line[17:54] + "  0.30" + line[60:]
    moved = f"{float(line[30:38]) + 1.5:8.3f}"
    high = line[:16] + "B" + line[17:30] + moved + line[38:54] + "  0.70" + line[60:]
    altered = lines[:index] + [low, high] + lines[index + 1:]
    atoms = read_structure_atoms(write(tmp_path / "alt.pdb", altered))
    original = read_structure_atoms(write(tmp_path / "p.pdb", lines))
    assert atoms.height == original.height  # one copy kept
    assert np.isclose(atoms["x_A"].to_numpy(), float(moved), atol=1e-3).sum() == 1  # the 0.70 one


def test_insertion_codes_are_distinct_residues(tmp_path):
    """A copy of residue 1 with insertion code A (moved away) adds its atoms; it is not an altloc."""
    lines = protein_lines()
    at = [i for i, l in enumerate(lines) if l.startswith("ATOM") and l[21] == "A" and l[22:26] == "   1"]
    residue = [lines[i] for i in at if lines[i][76:78].strip() != "H"]
    inserted = [l[:26] + "A" + l[27:30] + f"{float(l[30:38]) + 30:8.3f}" + l[38:] for l in residue]
    changed = lines[:at[-1] + 1] + inserted + lines[at[-1] + 1:]
    atoms = read_structure_atoms(write(tmp_path / "ins.pdb", changed))
    assert atoms.height == read_structure_atoms(write(tmp_path / "p.pdb", lines)).height + len(residue) > len(residue)


def test_selenomethionine_counts_with_sulfur(tmp_path):
    from lba_cli.voxel import make_channel_lookup

    lines = protein_lines("1bcu")
    mse = []
    for l in lines:
        if l.startswith("ATOM") and l[17:20] == "MET":
            l = "HETATM" + l[6:17] + "MSE" + l[20:]
            if l[12:16].strip() == "SD":
                l = l[:12] + " SE " + l[16:76] + "SE" + l[78:]
        mse.append(l)
    atoms = read_structure_atoms(write(tmp_path / "mse.pdb", mse))
    numbers = atoms["atomic_number"].to_numpy()
    assert (numbers == 34).sum() > 0
    lookup = make_channel_lookup(GridConfig())
    assert lookup[34] == lookup[16] == GridConfig().channel_names.index("S,SE")


def test_deuterium_is_removed_like_hydrogen(tmp_path):
    lines = [l[:76] + " D" + l[78:] if l.startswith("ATOM") and l[76:78].strip() == "H" else l for l in protein_lines()]
    deuterated = write(tmp_path / "d.pdb", lines)
    assert heavy(deuterated) == heavy(write(tmp_path / "p.pdb", protein_lines()))
    assert heavy(deuterated, keep_hydrogens=True) > heavy(deuterated)


def test_shifted_water_residue_numbers_in_demo_pockets_are_read():
    """690 water records in 48 demo pockets put the insertion code in the residue number."""
    require_shared()
    quirky = [p for p in sorted(PDBBIND.glob("*/*_pocket.pdb"))
              if any(line.startswith("HETATM") and line[17:20] == "HOH" and line[25].isalpha()
                     for line in p.read_text().splitlines())]
    assert len(quirky) == 48
    for pocket in quirky[:10]:
        waters = sum(1 for l in pocket.read_text().splitlines()
                     if l.startswith("HETATM") and l[17:20] == "HOH" and l[76:78].strip() == "O")
        assert heavy(pocket, keep_water=True) - heavy(pocket) == waters


def test_ions_are_kept_in_the_other_channel():
    from lba_cli.voxel import make_channel_lookup

    require_shared()
    pocket = next(p for p in sorted(PDBBIND.glob("*/*_pocket.pdb")) if " ZN " in p.read_text())
    numbers = read_structure_atoms(pocket)["atomic_number"].to_list()
    assert 30 in numbers and make_channel_lookup(GridConfig())[30] == GridConfig().channel_names.index("*")


# ------------------------------------------------------------------------- ligands


def test_unsanitisable_ligand_is_read_unsanitised_and_recorded():
    require_shared()
    read = read_ligand_atoms([PDBBIND / "4x6p" / "4x6p_ligand.sdf", PDBBIND / "4x6p" / "4x6p_ligand.mol2"])
    assert not read.sanitized and read.path.name.endswith(".sdf") and read.atoms.height > 0


def test_broken_sdf_falls_back_to_the_mol2(tmp_path):
    require_shared()
    (tmp_path / "x_ligand.sdf").write_text("garbage\n")
    read = read_ligand_atoms([tmp_path / "x_ligand.sdf", PDBBIND / "1a30" / "1a30_ligand.mol2"])
    assert read.path.suffix == ".mol2" and read.atoms.height > 0
    with pytest.raises(DataError, match="x_ligand.sdf"):
        read_ligand_atoms([tmp_path / "x_ligand.sdf"])


def test_ligand_element_case_is_normalised():
    require_shared()
    # 5aba's SDF spells Br and Cl; ATOM3D spells BR and CL: both must give 35 and 17
    read = read_ligand_atoms([PDBBIND / "5aba" / "5aba_ligand.sdf"])
    assert {35, 17} <= set(read.atoms["atomic_number"].to_list())


# ------------------------------------------------------------------- CSV manifests


def test_csv_manifest_with_labels_strings_splits_and_bad_rows(tmp_path):
    require_shared()
    rows = [
        "id,protein,ligand,affinity,split",
        f"1a30,{PDBBIND}/1a30/1a30_protein.pdb.gz,{PDBBIND}/1a30/1a30_ligand.sdf,Ki=50uM,train",
        f"1bcu,{PDBBIND}/1bcu/1bcu_protein.pdb.gz,{PDBBIND}/1bcu/1bcu_ligand.mol2,Kd=0.53mM,test",
        f"nolabel,{PDBBIND}/1bzc/1bzc_protein.pdb.gz,{PDBBIND}/1bzc/1bzc_ligand.sdf,,train",
        f"badlabel,{PDBBIND}/1bzc/1bzc_protein.pdb.gz,{PDBBIND}/1bzc/1bzc_ligand.sdf,strong,train",
        f"missing,{PDBBIND}/1bzc/nope.pdb,{PDBBIND}/1bzc/1bzc_ligand.sdf,Ki=1nM,val",
    ]
    manifest = write(tmp_path / "m.csv", rows)
    items = list(csv_manifest.iter_records((manifest,), GridConfig()))
    records = {i.complex_id: i for i in items if isinstance(i, ComplexRecord)}
    skipped = {i.complex_id: i for i in items if isinstance(i, Skipped)}
    assert set(records) == {"1a30", "1bcu"} and set(skipped) == {"nolabel", "badlabel", "missing"}
    assert records["1a30"].affinity_pk == pytest.approx(-math.log10(50e-6))
    assert (records["1a30"].measure, records["1a30"].operator, records["1bcu"].split) == ("Ki", "=", "test")
    assert skipped["nolabel"].stage == "label" and skipped["missing"].stage == "read"


def test_csv_manifest_relative_paths_and_numeric_pk(tmp_path):
    require_shared()
    for cid in ("1a30", "1bcu"):
        shutil.copytree(PDBBIND / cid, tmp_path / cid)
    write(tmp_path / "m.csv", ["id,protein,ligand,affinity_pk",
                               "1a30,1a30/1a30_protein.pdb.gz,1a30/1a30_ligand.sdf,4.3",
                               "1bcu,1bcu/1bcu_protein.pdb.gz,1bcu/1bcu_ligand.sdf,3.28"])
    assert resolve_sources([tmp_path / "m.csv"], SourceFormat.auto)[0][1] is SourceFormat.csv
    report = build_dataset([tmp_path / "m.csv"], tmp_path / "m.h5", GridConfig(), split=None)
    assert report.num_written == 2


# ---------------------------------------------------------------------- SDF series

SERIES_UNITS = [("pK", "7.5", 7.5), ("nM", "10", 8.0), ("uM", "2", 5.69897), ("M", "1e-6", 6.0),
                ("kcal/mol", "-8.184", 6.0), ("kJ/mol", "-34.24", 6.0), ("nM", "Ki=10nM", 8.0)]


@pytest.mark.parametrize("unit,value,pk", SERIES_UNITS, ids=[f"{u}:{v}" for u, v, _ in SERIES_UNITS])
def test_series_label_units(unit, value, pk):
    assert series_label_to_pk(value, unit) == pytest.approx(pk, abs=2e-3)


def test_sdf_series_one_protein_many_records(tmp_path):
    """A free-energy-benchmark layout built from real ligands: ΔG in kcal/mol per record."""
    from rdkit import Chem

    require_shared()
    writer = Chem.SDWriter(str(tmp_path / "series.sdf"))
    for n, name in enumerate(("lig a", "lig b", "lig c")):  # poses in the protein's frame, as in a series
        mol = Chem.MolFromMolFile(str(PDBBIND / "1a30" / "1a30_ligand.sdf"), removeHs=False)
        mol.SetProp("_Name", name)
        if n < 2:
            mol.SetProp("dG", str(-6.0 - n))
        writer.write(mol)
    writer.close()
    protein = PDBBIND / "1a30" / "1a30_protein.pdb.gz"
    items = list(sdf_series.iter_records((protein, tmp_path / "series.sdf"), GridConfig(), SourceOptions("dG",
                                                                                                         "kcal/mol")))
    records = [i for i in items if isinstance(i, ComplexRecord)]
    assert [r.complex_id for r in records] == ["lig_a_1", "lig_b_2"]
    assert records[0].affinity_pk == pytest.approx(6.0 / (1.987204e-3 * 298.15 * math.log(10)), abs=1e-3)
    assert isinstance(items[2], Skipped) and "dG" in items[2].reason
    report = build_dataset([protein, tmp_path / "series.sdf"], tmp_path / "s.h5", GridConfig(), split=None,
                           label_field="dG", label_unit="kcal/mol")
    assert report.num_written == 2


# ---------------------------------------------------------------- whole folders


def test_measure_and_smiles_columns_are_stored(demo_h5s):
    import h5py

    with h5py.File(demo_h5s[1]) as f:
        measures = set(f["complexes/affinity_measure"].asstr()[...])
        smiles = f["complexes/ligand_smiles"].asstr()[...]
    assert measures == {"Kd", "Ki"} and sum(1 for s in smiles if s) > 200


def test_empty_pocket_and_duplicate_ids_are_reported(tmp_path):
    subset = make_pdbbind_subset(tmp_path / "a", ("1a30", "1bcu"))
    # an empty receptor file: the folder is copied so it can be changed
    (subset / "1bcu").unlink()
    shutil.copytree(PDBBIND / "1bcu", subset / "1bcu")
    (subset / "1bcu" / "1bcu_protein.pdb.gz").unlink()
    (subset / "1bcu" / "1bcu_pocket.pdb").write_text("END\n")
    again = make_pdbbind_subset(tmp_path / "b", ("1a30",))
    report = build_dataset([subset, again], tmp_path / "x.h5", GridConfig(), split=None)
    reasons = {s.complex_id: (s.stage, s.reason) for s in report.skipped}
    assert report.num_written == 1
    assert reasons["1bcu"][0] == "read" and "1bcu_pocket.pdb" in reasons["1bcu"][1]
    assert reasons["1a30"][0] == "dedupe"


def test_protein_split_by_chain_sequence_identity_without_uniprot(tmp_path):
    """Without a name index, complexes sharing a chain sequence stay in one split."""
    require_shared()
    ids = ("4tmn", "5tmn", "1a30", "1bcu", "1bzc", "1c5z", "1e66", "1eby", "1g2k", "1gpk")
    subset = make_pdbbind_subset(tmp_path / "p", ids)
    (subset / "index" / "INDEX_demo_PL_name.2021").unlink()
    report = build_dataset([subset], tmp_path / "x.h5", GridConfig(), split=None)
    data = read_grid_set(tmp_path / "x.h5")
    split = dict(zip(data.ids, data.split))
    group = dict(zip(data.ids, data.protein_group))
    assert group["4tmn"] == group["5tmn"] != group["1a30"]  # both thermolysin
    assert split["4tmn"] == split["5tmn"]
    assert report.unknown_proteins == 0 and sum(report.leakage.values()) == 0


def test_unknown_protein_identity_is_said(tmp_path):
    require_shared()
    rec = ComplexRecord("x", 5.0, structure_atoms(read_structure(PDBBIND / "1a30" / "1a30_pocket.pdb")),
                        read_ligand_atoms([PDBBIND / "1a30" / "1a30_ligand.sdf"]).atoms)
    assert protein_groups([rec]) == [""]


def test_one_level_too_high_is_resolved_or_listed(tmp_path):
    require_shared()
    (resolved, fmt), = resolve_sources([PDBBIND.parent / "atom3d_lba_demo"], SourceFormat.auto)
    assert fmt is SourceFormat.atom3d and resolved[0].name == "split-by-protein"
    with pytest.raises(DataError, match="give one of") as error:
        resolve_sources([PDBBIND.parent], SourceFormat.auto)
    assert "pdbbind_demo" in str(error.value) and "split-by-protein" in str(error.value)
    assert "pdbbind_index" not in str(error.value)  # labels only, no structures


def test_ligand_outside_the_receptor_frame_is_skipped(tmp_path):
    """A ligand moved 100 Å away (a docking pose in another frame) leaves the box without protein."""
    require_shared()
    lines = (PDBBIND / "1bcu" / "1bcu_ligand.sdf").read_text().splitlines()
    counts = lines[3]
    n_atoms = int(counts[:3])
    moved = lines[:4] + [f"{float(l[:10]) + 100:10.4f}" + l[10:] for l in lines[4:4 + n_atoms]] + lines[4 + n_atoms:]
    write(tmp_path / "far.sdf", moved)
    write(tmp_path / "m.csv", ["id,protein,ligand,affinity_pk",
                               f"near,{PDBBIND}/1bcu/1bcu_protein.pdb.gz,{PDBBIND}/1bcu/1bcu_ligand.sdf,3.3",
                               f"far,{PDBBIND}/1bcu/1bcu_protein.pdb.gz,far.sdf,3.3"])
    report = build_dataset([tmp_path / "m.csv"], tmp_path / "m.h5", GridConfig(), split=None)
    assert report.num_written == 1
    (skip,) = report.skipped
    assert skip.complex_id == "far" and skip.stage == "box" and "coordinate frame" in skip.reason


def test_ligand_atoms_beyond_the_box_are_noted(tmp_path):
    require_shared()
    subset = make_pdbbind_subset(tmp_path / "p", ("1a30",))
    report = build_dataset([subset], tmp_path / "x.h5", GridConfig(box_size_voxels=7), split=None)
    assert any("ligand atoms lie outside the box" in note for _, note in report.notes)


# --------------------------------------------- faults found in real use, whole kinds (see test_faults.py)


def _ligand_forms(tmp_path: Path, complex_id: str = "1a30") -> dict[str, Path]:
    """One real ligand written in every ligand format, plain and gzip-compressed."""
    from rdkit import Chem

    require_shared()
    tmp_path.mkdir(parents=True, exist_ok=True)
    sdf = PDBBIND / complex_id / f"{complex_id}_ligand.sdf"
    mol = next(iter(Chem.SDMolSupplier(str(sdf), removeHs=False)))
    texts = {".sdf": sdf.read_text(), ".mol2": (PDBBIND / complex_id / f"{complex_id}_ligand.mol2").read_text(),
             ".mol": Chem.MolToMolBlock(mol), ".pdb": Chem.MolToPDBBlock(mol)}
    forms = {}
    for suffix, text in texts.items():
        forms[suffix] = write(tmp_path / f"plain{suffix}", text.splitlines())
        with gzip.open(tmp_path / f"packed{suffix}.gz", "wt") as handle:
            handle.write(text)
        forms[suffix + ".gz"] = tmp_path / f"packed{suffix}.gz"
    return forms


@pytest.mark.parametrize("suffix", [".sdf", ".mol2", ".mol", ".pdb"])
def test_every_ligand_format_reads_the_same_gzip_compressed(tmp_path, suffix):
    forms = _ligand_forms(tmp_path)
    plain, packed = read_ligand_atoms([forms[suffix]]), read_ligand_atoms([forms[suffix + ".gz"]])
    assert packed.atoms.height == plain.atoms.height > 0 and packed.sanitized == plain.sanitized
    assert np.allclose(plain.atoms.select("x_A", "y_A", "z_A").to_numpy(),
                       packed.atoms.select("x_A", "y_A", "z_A").to_numpy())


def test_a_broken_gzip_ligand_says_so(tmp_path):
    (tmp_path / "x_ligand.sdf.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(DataError, match="x_ligand.sdf.gz: not a valid gzip file"):
        read_ligand_atoms([tmp_path / "x_ligand.sdf.gz"], siblings=False)


SIBLINGS = [  # (named file, the sibling present beside it, the file that must be read)
    ("bad.sdf", "good.mol2", ".mol2"),
    ("bad.mol2", "good.sdf", ".sdf"),
    ("bad.sdf", "good.sdf.gz", ".sdf.gz"),
    ("missing.mol2", "good.sdf", ".sdf"),
    ("bad.mol2.gz", "good.pdb", ".pdb"),
]


@pytest.mark.parametrize("named,present,used", SIBLINGS, ids=[f"{a}->{b}" for a, b, _ in SIBLINGS])
def test_unreadable_named_ligand_falls_back_to_its_same_stem_sibling(tmp_path, named, present, used):
    forms = _ligand_forms(tmp_path / "forms")
    folder = tmp_path / "c"
    folder.mkdir()
    kind, state = named.split(".", 1)[1], named.split(".")[0]
    if state == "bad":
        (folder / f"x_ligand.{kind}").write_bytes(b"\x1f\x8b\x08\x00junk" if kind.endswith("gz") else b"junk\n")
    shutil.copy(forms["." + present.split(".", 1)[1]], folder / f"x_ligand.{present.split('.', 1)[1]}")
    read = read_ligand_atoms([folder / f"x_ligand.{kind}"])
    assert read.path.name == f"x_ligand{used}" and read.atoms.height == read_ligand_atoms([forms[".sdf"]]).atoms.height
    assert read.failures and read.failures[0].startswith(f"x_ligand.{kind}: ")
    with pytest.raises(DataError, match=f"x_ligand.{kind}"):
        read_ligand_atoms([folder / f"x_ligand.{kind}"], siblings=False)


# Manifest cells as people write them: each row must read 1a30 (its files are copied beside the CSV).
CELLS = [
    ("plain", ",", "1a30,1a30_protein.pdb.gz,1a30_ligand.sdf,Ki=50uM", "utf-8"),
    ("spaces-and-tabs", ",", " 1a30 ,\t1a30_protein.pdb.gz , 1a30_ligand.sdf\t, Ki=50uM ", "utf-8"),
    ("quoted-cells", ",", '"1a30"," 1a30_protein.pdb.gz","1a30_ligand.sdf ","Ki=50uM"', "utf-8"),
    ("backslashes", ",", "1a30,sub\\1a30_protein.pdb.gz,sub\\1a30_ligand.sdf,Ki=50uM", "utf-8"),
    ("windows-absolute", ",", "1a30,C:\\Users\\me\\1a30_protein.pdb.gz,C:\\Users\\me\\1a30_ligand.sdf,Ki=50uM",
     "utf-8"),
    ("other-case", ",", "1a30,1A30_PROTEIN.PDB.GZ,1A30_Ligand.SDF,Ki=50uM", "utf-8"),
    ("semicolons", ";", "1a30;1a30_protein.pdb.gz;1a30_ligand.sdf;Ki=50uM", "utf-8"),
    ("byte-order-mark", ",", "1a30,1a30_protein.pdb.gz,1a30_ligand.sdf,Ki=50uM", "utf-8-sig"),
    ("windows-1252", ",", "1a30,1a30_protein.pdb.gz,1a30_ligand.sdf,Ki=50µM", "cp1252"),
    ("file-url", ",", "1a30,file://{folder}/1a30_protein.pdb.gz,1a30_ligand.sdf,Ki=50uM", "utf-8"),
]


@pytest.mark.parametrize("separator,row,encoding", [c[1:] for c in CELLS], ids=[c[0] for c in CELLS])
def test_manifest_cells_as_people_write_them(tmp_path, separator, row, encoding):
    require_shared()
    for folder in (tmp_path, tmp_path / "sub"):
        folder.mkdir(exist_ok=True)
        for name in ("1a30_protein.pdb.gz", "1a30_ligand.sdf"):
            shutil.copy(PDBBIND / "1a30" / name, folder / name)
    header = separator.join([" ID", "Protein ", "ligand", "Affinity"])
    (tmp_path / "m.csv").write_bytes(f"{header}\r\n{row.format(folder=tmp_path)}\r\n".encode(encoding))
    items = list(csv_manifest.iter_records((tmp_path / "m.csv",), GridConfig()))
    (record,) = [i for i in items if isinstance(i, ComplexRecord)]
    assert record.complex_id == "1a30" and record.affinity_pk == pytest.approx(-math.log10(50e-6))
    assert record.ligand.height == read_ligand_atoms([PDBBIND / "1a30" / "1a30_ligand.sdf"]).atoms.height


def test_unresolvable_manifest_path_is_reported_as_written(tmp_path):
    write(tmp_path / "m.csv", ["id,protein,ligand,affinity", "x,\tno such.pdb ,x.sdf,Kd=1nM"])
    (skip,) = [i for i in csv_manifest.iter_records((tmp_path / "m.csv",), GridConfig()) if isinstance(i, Skipped)]
    assert skip.stage == "read" and skip.reason == (f"protein file '\\tno such.pdb ' not found "
                                                    f"(looked for {tmp_path / 'no such.pdb'})")


def test_a_receptor_that_holds_its_ligand_loses_only_the_copy():
    from lba_cli.data.atoms import drop_ligand_copy, make_atom_table

    ligand = make_atom_table(np.array([[0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]]), np.array([6, 8, 17]), False)
    protein = make_atom_table(np.array([[0.2, 0.1, 0], [1.5, 0.3, 0.2], [3.0, 0, 0], [5, 0, 0], [0, 3.5, 0]]),
                              np.array([6, 8, 6, 7, 6]), True)
    kept, dropped = drop_ligand_copy(protein, ligand)
    # C and O within 0.5 Å of a ligand C and O are the copy; a C on top of the ligand's Cl is not
    assert dropped == 2 and kept["atomic_number"].to_list() == [6, 7, 6]
    assert drop_ligand_copy(protein, ligand, tolerance_A=0.1)[1] == 0


def test_a_real_complex_file_with_its_ligand_is_stored_like_pocket_and_ligand(tmp_path):
    """Any source: a PDBbind folder whose protein file also holds the ligand (HETATM)."""
    require_shared()
    from rdkit import Chem

    subset = make_pdbbind_subset(tmp_path / "p", ("1a30",))
    (subset / "1a30").unlink()
    shutil.copytree(PDBBIND / "1a30", subset / "1a30")
    mol = next(iter(Chem.SDMolSupplier(str(PDBBIND / "1a30" / "1a30_ligand.sdf"))))
    lines = [l for l in protein_lines() if not l.startswith(("END", "MASTER", "CONECT"))]
    lines += [l for l in Chem.MolToPDBBlock(mol).splitlines() if l.startswith("HETATM")] + ["END"]
    with gzip.open(subset / "1a30" / "1a30_protein.pdb.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    build_dataset([make_pdbbind_subset(tmp_path / "q", ("1a30",))], tmp_path / "a.h5", GridConfig())
    holding = build_dataset([subset], tmp_path / "b.h5", GridConfig())
    assert [note for _, note in holding.notes if "coincide" in note] == [
        "26 atoms of the receptor file coincide with ligand atoms (same element within 0.5 Å): dropped as the "
        "ligand's copy"]
    a, b = read_grid_set(tmp_path / "a.h5"), read_grid_set(tmp_path / "b.h5")  # the same atoms, the same flags
    assert np.array_equal(np.sort(a.xyz_A, axis=0), np.sort(b.xyz_A, axis=0))
    assert a.is_protein.sum() == b.is_protein.sum()


def test_when_every_complex_is_skipped_at_the_box_check_the_report_is_written(tmp_path):
    require_shared()
    lines = (PDBBIND / "1bcu" / "1bcu_ligand.sdf").read_text().splitlines()
    n_atoms = int(lines[3][:3])
    write(tmp_path / "far.sdf", lines[:4] + [f"{float(l[:10]) + 100:10.4f}" + l[10:] for l in lines[4:4 + n_atoms]]
          + lines[4 + n_atoms:])
    write(tmp_path / "m.csv", ["id,protein,ligand,affinity_pk", f"far,{PDBBIND}/1bcu/1bcu_protein.pdb.gz,far.sdf,3.3"])
    with pytest.raises(DataError, match="no complex could be used") as error:
        build_dataset([tmp_path / "m.csv"], tmp_path / "m.h5", GridConfig(), report=tmp_path / "skipped.csv")
    assert "far (box)" in str(error.value) and str(tmp_path / "skipped.csv") in str(error.value)
    assert (tmp_path / "skipped.csv").read_text().splitlines()[1].startswith(f"far,{tmp_path / 'm.csv'}:2,box,")
    assert not (tmp_path / "m.h5").exists()
