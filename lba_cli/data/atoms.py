"""Structure and ligand files -> atom tables (polars), with gemmi and RDKit.

An atom table is a polars frame with schema `ATOM_SCHEMA`:

    x_A, y_A, z_A   Float32  coordinates, Å (required)
    atomic_number   UInt8    0 for an unknown element (required)
    is_protein      Boolean  True for receptor atoms, False for ligand atoms (required)

Hydrogens (H and D) and waters are removed unless asked for; element symbols of any case
are accepted. Only the first model of a file is read, and of alternate locations only the
most occupied one is kept.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lba_cli.config import GridConfig
from lba_cli.errors import DataError

__all__ = [
    "ATOM_SCHEMA",
    "WATER_NAMES",
    "LigandRead",
    "make_atom_table",
    "atomic_number",
    "read_structure",
    "structure_atoms",
    "chain_sequences",
    "read_structure_atoms",
    "read_ligand_atoms",
    "read_complex_files",
    "mol_atoms",
    "ligand_siblings",
    "read_text",
    "ligand_notes",
    "drop_ligand_copy",
    "LIGAND_SUFFIXES",
    "STRUCTURE_SUFFIXES",
    "is_structure_file",
]

ATOM_SCHEMA: dict[str, pl.DataType] = {
    "x_A": pl.Float32,
    "y_A": pl.Float32,
    "z_A": pl.Float32,
    "atomic_number": pl.UInt8,
    "is_protein": pl.Boolean,
}
WATER_NAMES = frozenset({"HOH", "WAT", "H2O", "DOD", "D2O", "TIP", "TIP3", "SOL"})
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdbqt")
_HYDROGEN = 1


def is_structure_file(path: Path) -> bool:
    """True for PDB, mmCIF and PDBQT files, gzip-compressed or not."""
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(STRUCTURE_SUFFIXES)


@functools.lru_cache(maxsize=512)
def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol of any case (``CL``, ``Cl``); 0 if unknown (cached)."""
    import gemmi

    return gemmi.Element(symbol.strip()).atomic_number if symbol and symbol.strip() else 0


def make_atom_table(xyz_A: np.ndarray, atomic_numbers: np.ndarray, is_protein: bool | np.ndarray) -> pl.DataFrame:
    """Build an atom table from arrays.

    Args:
        xyz_A: float array of shape (N, 3), Å.
        atomic_numbers: integer array of shape (N,).
        is_protein: one bool for all atoms, or a bool array of shape (N,).
    """
    xyz_A = np.asarray(xyz_A, dtype=np.float32).reshape(-1, 3)
    flags = np.broadcast_to(np.asarray(is_protein, dtype=bool), (len(xyz_A),))
    return pl.DataFrame(
        {"x_A": xyz_A[:, 0], "y_A": xyz_A[:, 1], "z_A": xyz_A[:, 2],
         "atomic_number": np.asarray(atomic_numbers, dtype=np.uint8), "is_protein": flags},
        schema=ATOM_SCHEMA,
    )


# AutoDock atom types (PDBQT columns 78-79) that are not element symbols.
_AUTODOCK_ELEMENTS = {"A": "C", "NA": "N", "NS": "N", "OA": "O", "OS": "O", "SA": "S", "HD": "H", "HS": "H",
                      "G0": "C", "G1": "C", "G2": "C", "G3": "C", "CG0": "C", "CG1": "C", "CG2": "C", "CG3": "C",
                      "W": "O"}


def _pdbqt_as_pdb(text: str) -> str:
    """Rewrite PDBQT atom records as PDB: the AutoDock type becomes the element column.

    PDBQT puts a partial charge in columns 71-76 and an AutoDock type in 78-79 where PDB has
    the element in 77-78 (so an aromatic carbon "A" or a chlorine "Cl" would be misread).
    """
    lines = []
    for line in text.splitlines():
        if line.startswith(("ATOM", "HETATM")):
            autodock = line[77:79].strip().upper() if len(line) > 77 else ""
            element = _AUTODOCK_ELEMENTS.get(autodock, autodock)
            line = line[:66].ljust(66) + " " * 10 + element.rjust(2)
        elif line.startswith(("ROOT", "ENDROOT", "BRANCH", "ENDBRANCH", "TORSDOF", "REMARK")):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _check_gzip(path: Path) -> None:
    """Read a gzip file through to its end, where the length and CRC are checked: a file cut
    off at a line boundary would otherwise read as a structure with atoms missing.

    Raises:
        DataError: naming the file when it is not gzip or is truncated or damaged.
    """
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as error:
        reason = "truncated" if isinstance(error, EOFError) else (
            "not gzip-compressed" if "Not a gzipped file" in str(error) else "damaged")
        raise DataError(f"cannot read structure {path}: the gzip file is {reason} ({error})") from None


def read_structure(path: Path):
    """Read a PDB, mmCIF or PDBQT file (gzip or not) with gemmi.

    Returns:
        A ``gemmi.Structure``.

    Raises:
        DataError: if the file is missing, a gzip file is truncated or damaged, or gemmi
            cannot read it.
    """
    import gzip

    import gemmi

    path = Path(path)
    name = path.name.lower()
    if name.endswith(".gz"):
        _check_gzip(path)
    try:
        if name.endswith((".pdbqt", ".pdbqt.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt") as handle:
                structure = gemmi.read_pdb_string(_pdbqt_as_pdb(handle.read()))
        else:
            structure = gemmi.read_structure(str(path), merge_chain_parts=True)
    except (RuntimeError, ValueError, OSError, EOFError) as error:
        raise DataError(f"cannot read structure {path}: {error}") from None
    if len(structure) == 0:
        raise DataError(f"no models in structure {path}")
    return structure


def structure_atoms(structure, *, keep_hydrogens: bool = False, keep_water: bool = False,
                    is_protein: bool = True, with_occupancy: bool = False) -> pl.DataFrame:
    """Atom table of the first model of a gemmi structure.

    Waters (HOH, WAT, DOD, ...) and hydrogens (H, D) are dropped unless kept; of alternate
    locations of an atom, the most occupied is kept (the first on a tie). Elements missing
    from the file were inferred from atom names by gemmi.

    Args:
        with_occupancy: add a column ``occupancy`` (Float32, the file's value in [0, 1]).

    Returns:
        An atom table (`ATOM_SCHEMA`, plus ``occupancy`` when asked), possibly empty.
    """
    xyz: list[tuple[float, float, float]] = []
    numbers: list[int] = []
    occupancy: list[float] = []
    best_altloc: dict[tuple, tuple[float, int]] = {}
    for chain in structure[0]:
        for residue in chain:
            if not keep_water and (residue.is_water() or residue.name.upper() in WATER_NAMES):
                continue
            for atom in residue:
                number = atom.element.atomic_number
                if number == _HYDROGEN and not keep_hydrogens:
                    continue
                if atom.altloc != "\0":
                    key = (chain.name, str(residue.seqid), residue.name, atom.name)
                    seen = best_altloc.get(key)
                    if seen is not None:
                        if atom.occ > seen[0]:
                            xyz[seen[1]] = (atom.pos.x, atom.pos.y, atom.pos.z)
                            numbers[seen[1]] = number
                            occupancy[seen[1]] = atom.occ
                            best_altloc[key] = (atom.occ, seen[1])
                        continue
                    best_altloc[key] = (atom.occ, len(xyz))
                xyz.append((atom.pos.x, atom.pos.y, atom.pos.z))
                numbers.append(number)
                occupancy.append(atom.occ)
    table = make_atom_table(np.array(xyz).reshape(-1, 3), np.array(numbers, dtype=np.int64), is_protein)
    if with_occupancy:
        table = table.with_columns(pl.Series("occupancy", np.array(occupancy, dtype=np.float32)))
    return table


def chain_sequences(structure) -> list[str]:
    """One-letter sequences of the polymer chains of the first model (for sequence-identity splits).

    Entities are set up from residue names first, so files without SEQRES or entity records
    (most unbound structures and PDBbind receptors) still give their chains.
    """
    import gemmi

    structure.setup_entities()
    sequences = []
    for chain in structure[0]:
        polymer = chain.get_polymer()
        if len(polymer) >= 10:
            sequences.append(gemmi.one_letter_code([r.name for r in polymer]))
    return sequences


def read_structure_atoms(path: Path, *, keep_hydrogens: bool = False, keep_water: bool = False) -> pl.DataFrame:
    """Read the atoms of a receptor or pre-training structure (see `read_structure`, `structure_atoms`).

    Returns:
        An atom table with ``is_protein`` True for every atom.

    Raises:
        DataError: if the file cannot be read or no atom is left.
    """
    atoms = structure_atoms(read_structure(path), keep_hydrogens=keep_hydrogens, keep_water=keep_water)
    if atoms.height == 0:
        raise DataError(f"no atoms left in {path} after removing hydrogens and waters")
    return atoms


@dataclass(frozen=True)
class LigandRead:
    """A ligand read from file: its atoms and how it was read.

    Attributes:
        atoms: atom table with ``is_protein`` False.
        path: the file that was used.
        sanitized: False when RDKit could read it only without sanitisation (or it was read
            by gemmi, without bonds).
        smiles: canonical SMILES (RDKit) when the ligand was sanitised, else None.
        failures: ``"<file>: <reason>"`` for each file tried before ``path`` (named files
            that were missing or unreadable).
    """

    atoms: pl.DataFrame
    path: Path
    sanitized: bool
    smiles: str | None = None
    failures: tuple[str, ...] = ()


# Ligand formats, in the order in which same-stem siblings of a named file are tried.
LIGAND_SUFFIXES = (".sdf", ".mol2", ".mol", ".pdb", ".pdbqt")
LIGAND_COPY_TOLERANCE_A = 0.5


def _ligand_stem(path: Path) -> tuple[str, str] | None:
    """(stem, ligand suffix) of a ligand file name, ``.gz`` or not; None for another format."""
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    suffix = next((s for s in sorted(LIGAND_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    return None if suffix is None else (path.name[:len(name) - len(suffix)], suffix)


def ligand_siblings(path: Path) -> list[Path]:
    """Existing files beside ``path`` with the same stem in another ligand format (or the
    other compression), in the order of `LIGAND_SUFFIXES`: ``x.mol2`` -> ``x.sdf``, ``x.sdf.gz``, ..."""
    parsed = _ligand_stem(Path(path))
    if parsed is None:
        return []
    stem, _ = parsed
    folder = Path(path).parent
    out = []
    for suffix in LIGAND_SUFFIXES:
        for gz in ("", ".gz"):
            candidate = folder / f"{stem}{suffix}{gz}"
            if candidate.name != Path(path).name and candidate.is_file():
                out.append(candidate)
    return out


def read_text(path: Path) -> str:
    """The text of a file, gzip-compressed (``.gz``) or not (undecodable bytes replaced).

    Raises:
        OSError, EOFError: for an unreadable file or a broken gzip stream.
    """
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def _read_rdkit(path: Path, text: str, sanitize: bool):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # failures are reported by us, with the file's name
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".sdf", ".mol")):
        supplier = Chem.SDMolSupplier()
        supplier.SetData(text, sanitize=sanitize, removeHs=False)
        return next((mol for mol in supplier if mol is not None), None) if len(supplier) else None
    if name.endswith(".mol2"):
        return Chem.MolFromMol2Block(text, sanitize=sanitize, removeHs=False)
    if name.endswith(".pdb"):
        return Chem.MolFromPDBBlock(text, sanitize=sanitize, removeHs=False)
    return None


def mol_atoms(mol, *, keep_hydrogens: bool = False) -> pl.DataFrame:
    """Atom table (``is_protein`` False) of the first conformer of an RDKit molecule."""
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    xyz = mol.GetConformer().GetPositions()
    keep = numbers != _HYDROGEN if not keep_hydrogens else np.ones(len(numbers), dtype=bool)
    return make_atom_table(xyz[keep], numbers[keep], False)


def _smiles(mol) -> str | None:
    from rdkit import Chem

    try:
        return Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # noqa: BLE001 - RDKit raises many error types; no SMILES is not an error
        return None


def _read_one_ligand(path: Path, keep_hydrogens: bool) -> LigandRead | str:
    """The ligand in one file, or why it could not be read."""
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(LIGAND_SUFFIXES):
        return f"not a ligand format (expected {', '.join(LIGAND_SUFFIXES)}, gzip-compressed or not)"
    try:
        text = read_text(path)
    except (OSError, EOFError) as error:
        reason = "not a valid gzip file" if path.name.lower().endswith(".gz") else "cannot be read"
        return f"{reason} ({error.strerror if isinstance(error, OSError) and error.strerror else error})"
    if not text.strip():
        return "empty file"
    for sanitize in (True, False):
        mol = _read_rdkit(path, text, sanitize)
        if mol is None or mol.GetNumAtoms() == 0 or mol.GetNumConformers() == 0:
            continue
        atoms = mol_atoms(mol, keep_hydrogens=keep_hydrogens)
        if atoms.height == 0:
            break
        return LigandRead(atoms, path, sanitize, _smiles(mol) if sanitize else None)
    if name.endswith((".pdb", ".pdbqt")):
        try:
            atoms = structure_atoms(read_structure(path), keep_hydrogens=keep_hydrogens, keep_water=True,
                                    is_protein=False)
        except DataError as error:
            return str(error)
        if atoms.height:
            return LigandRead(atoms, path, False, None)
    return "could not be read, even unsanitised"


def read_ligand_atoms(paths: list[Path], *, keep_hydrogens: bool = False, siblings: bool = True) -> LigandRead:
    """Read a ligand, falling back to unsanitised reading, then to the next file.

    SDF, MOL and MOL2 go through RDKit (sanitised, then unsanitised); PDB through RDKit,
    then gemmi; PDBQT (e.g. a docking pose; its first model) through gemmi. Each may be
    gzip-compressed (``.sdf.gz``, ``.mol2.gz``, ...). When no named file can be read, the
    files beside them with the same stem in another ligand format are tried (`ligand_siblings`:
    a truncated ``x.mol2`` falls back to ``x.sdf``); `LigandRead.failures` says what failed first.

    Args:
        paths: candidate files for the same ligand, in order of preference (e.g. the SDF,
            then the MOL2). Missing files are passed over.
        keep_hydrogens: keep H and D atoms.
        siblings: also try the same-stem files in other formats.

    Returns:
        The first successful read.

    Raises:
        DataError: listing each file tried and why it failed.
    """
    failures = []
    named = [Path(p) for p in paths]
    candidates = list(dict.fromkeys(named + ([s for p in named for s in ligand_siblings(p)] if siblings else [])))
    for path in candidates:
        if not path.exists():
            failures.append(f"{path.name}: missing")
            continue
        result = _read_one_ligand(path, keep_hydrogens)
        if isinstance(result, LigandRead):
            return dataclasses.replace(result, failures=tuple(failures))
        failures.append(f"{path.name}: {result}")
    raise DataError("cannot read ligand: " + "; ".join(failures or ["no ligand file given"]))


def ligand_notes(ligand: LigandRead) -> list[str]:
    """What a complex's notes should say about how its ligand was read (fallbacks, sanitisation)."""
    notes = []
    unreadable = [f for f in ligand.failures if not f.endswith(": missing")]
    if unreadable:
        notes.append(f"ligand read from {ligand.path.name} because " + "; ".join(unreadable))
    if not ligand.sanitized:
        notes.append(f"ligand read unsanitised from {ligand.path.name}")
    return notes


def drop_ligand_copy(protein: pl.DataFrame, ligand: pl.DataFrame,
                     tolerance_A: float = LIGAND_COPY_TOLERANCE_A) -> tuple[pl.DataFrame, int]:
    """Remove the receptor atoms that are a copy of the ligand's (a receptor file that still
    holds its ligand, e.g. a whole-complex PDB with the ligand as HETATM).

    A receptor atom is the ligand's copy when a ligand atom of the same element lies within
    ``tolerance_A``. Real receptor atoms never sit that close to a ligand atom (a covalent
    bond is about 1.5 Å), so nothing of the receptor is lost.

    Args:
        protein: atom table of the receptor (`ATOM_SCHEMA`).
        ligand: atom table of the ligand.
        tolerance_A: largest distance between an atom and its copy, Å.

    Returns:
        The receptor without the copy, and how many atoms were dropped.
    """
    from scipy.spatial import cKDTree

    if protein.height == 0 or ligand.height == 0:
        return protein, 0
    ligand_xyz = ligand.select("x_A", "y_A", "z_A").to_numpy().astype(np.float64)
    protein_xyz = protein.select("x_A", "y_A", "z_A").to_numpy().astype(np.float64)
    # the nearest ligand atom is the only candidate: two ligand atoms are never 0.5 Å apart
    distance, nearest = cKDTree(ligand_xyz).query(protein_xyz, distance_upper_bound=tolerance_A)
    hit = np.isfinite(distance)
    copy = np.zeros(protein.height, dtype=bool)
    copy[hit] = ligand["atomic_number"].to_numpy()[nearest[hit]] == protein["atomic_number"].to_numpy()[hit]
    count = int(copy.sum())
    return (protein.filter(pl.Series(~copy)) if count else protein), count


def read_complex_files(protein_path: Path, ligand_paths: list[Path],
                       grid: GridConfig) -> tuple[object, pl.DataFrame, LigandRead]:
    """Receptor and ligand of one complex, filtered as ``grid`` says.

    Args:
        protein_path: the receptor's structure file.
        ligand_paths: candidate files of the ligand, in order of preference (see
            `read_ligand_atoms`).
        grid: its ``keep_hydrogens`` and ``keep_water``.

    Returns:
        The receptor's ``gemmi.Structure`` (for chain sequences), its atom table, and the ligand.

    Raises:
        DataError: the reason the complex cannot be used.
    """
    structure = read_structure(protein_path)
    protein = structure_atoms(structure, keep_hydrogens=grid.keep_hydrogens, keep_water=grid.keep_water)
    if protein.height == 0:
        raise DataError(f"no protein atoms in {protein_path.name}")
    return structure, protein, read_ligand_atoms(ligand_paths, keep_hydrogens=grid.keep_hydrogens)
