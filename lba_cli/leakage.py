"""Leakage between the complexes a model is scored on and the complexes it learnt from.

A model scored on complexes it was trained on, or on the same proteins or ligands, measures
memory, not prediction. Wherever data meets a run (``lba evaluate RUN --data FILE``, ``lba
predict``), the scored complexes are compared with the run's training data (its data file's
train and val splits; val chose the best epoch) by:

- complex id (the same PDB entry);
- protein: the identity key `lba voxelize` stores per complex (``protein_group``: the UniProt id
  where the source gives one, else the set of complexes sharing an identical chain sequence),
  which catches the same protein, not homologues;
- ligand: the InChIKey of the ligand's SMILES (RDKit; canonical SMILES where RDKit cannot make
  an InChI), so the same molecule drawn differently still matches.

Only the data a run recorded is used: `lba_cli.runs.provenance.check_run_data` first.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ComplexKeys", "LeakageReport", "ligand_key", "read_complex_keys", "keys_from_records", "find_leakage",
           "run_training_keys", "TRAINING_SPLITS"]

# The splits a run learnt from: train fits the weights, val picks the best epoch.
TRAINING_SPLITS = ("train", "val")


@functools.lru_cache(maxsize=100_000)
def ligand_key(smiles: str) -> str:
    """InChIKey of a ligand given as SMILES ("" when empty); its canonical SMILES when RDKit
    reads it but cannot make an InChI; the SMILES as given when RDKit cannot read it."""
    if not smiles:
        return ""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return smiles
    key = Chem.MolToInchiKey(mol)
    return key or Chem.MolToSmiles(mol)


@dataclass
class ComplexKeys:
    """What identifies each complex of a set, for leakage checks.

    Attributes:
        ids: complex ids, (M,).
        splits: the split of each complex ("" when it has none), (M,).
        proteins: protein identity keys ("" when unknown), (M,).
        ligands: ligand keys (`ligand_key`; "" when unknown), (M,).
    """

    ids: list[str]
    splits: list[str]
    proteins: list[str]
    ligands: list[str]

    def subset(self, splits: Iterable[str]) -> ComplexKeys:
        """Only the complexes of these splits."""
        keep = [i for i, s in enumerate(self.splits) if s in set(splits)]
        return ComplexKeys(*([values[i] for i in keep] for values in (self.ids, self.splits, self.proteins,
                                                                        self.ligands)))


def read_complex_keys(path: Path) -> ComplexKeys:
    """The ids, splits, protein keys and ligand keys of every complex of an `lba voxelize` file.

    Raises:
        DataError: if the file is not an `lba voxelize` file.
    """
    from lba_cli.data.grids_h5 import open_grids

    with open_grids(Path(path)) as f:
        complexes = f["complexes"]

        def text(name: str) -> list[str]:
            return complexes[name].asstr()[...].astype(str).tolist() if name in complexes else [""] * len(
                complexes["id"])

        return ComplexKeys(text("id"), text("split"), text("protein_group"),
                           [ligand_key(s) for s in text("ligand_smiles")])


def keys_from_records(records: Iterable) -> ComplexKeys:
    """Keys of complexes read by `lba_cli.data.build.read_sources` (`ComplexRecord`), with
    protein keys made as `lba voxelize` makes them."""
    from lba_cli.data.build import protein_groups

    records = list(records)
    return ComplexKeys([r.complex_id for r in records], [r.split or "" for r in records], protein_groups(records),
                       [ligand_key(r.ligand_smiles) for r in records])


@dataclass
class LeakageReport:
    """Overlap between scored complexes and a run's training data.

    Attributes:
        against: what the scored complexes were compared with (e.g. "train and val of run X").
        num_scored: complexes compared.
        same_ids: (scored id, training split) for complexes that are in the training data.
        proteins: (scored id, training id, training split) for scored complexes whose
            protein is a protein of the training data (first match).
        ligands: (scored id, training id, training split) likewise for ligands.
        unknown: scored complexes with no protein key (not checked for proteins).
    """

    against: str
    num_scored: int
    same_ids: list[tuple[str, str]] = field(default_factory=list)
    proteins: list[tuple[str, str, str]] = field(default_factory=list)
    ligands: list[tuple[str, str, str]] = field(default_factory=list)
    unknown: int = 0

    @property
    def leaky(self) -> bool:
        return bool(self.same_ids or self.proteins or self.ligands)

    def lines(self) -> list[str]:
        """The report for the user, one line per finding (examples named)."""

        def examples(items: list[tuple]) -> str:
            shown = ", ".join(item[0] if len(item) == 2 else f"{item[0]} ~ {item[1]}" for item in items[:5])
            return f" (e.g. {shown}{', …' if len(items) > 5 else ''})" if items else ""

        out = [f"leakage check against {self.against}: of {self.num_scored} scored complexes, "
               f"{len(self.same_ids)} are training complexes{examples(self.same_ids)}, "
               f"{len(self.proteins)} share a protein{examples(self.proteins)}, "
               f"{len(self.ligands)} share a ligand{examples(self.ligands)}"]
        if self.unknown:
            out.append(f"{self.unknown} scored complexes have no protein identity (no UniProt id, no chain sequence): "
                       "their proteins were not compared")
        return out


def find_leakage(scored: ComplexKeys, training: ComplexKeys, against: str) -> LeakageReport:
    """Compare scored complexes with training complexes by id, protein key and ligand key."""
    first: dict[str, dict[str, tuple[str, str]]] = {"ids": {}, "proteins": {}, "ligands": {}}
    for complex_id, split, protein, ligand in zip(training.ids, training.splits, training.proteins, training.ligands):
        for kind, key in (("ids", complex_id), ("proteins", protein), ("ligands", ligand)):
            if key:
                first[kind].setdefault(key, (complex_id, split))
    report = LeakageReport(against, len(scored.ids))
    for complex_id, protein, ligand in zip(scored.ids, scored.proteins, scored.ligands):
        if complex_id in first["ids"]:
            report.same_ids.append((complex_id, first["ids"][complex_id][1]))
        if not protein:
            report.unknown += 1
        elif protein in first["proteins"]:
            report.proteins.append((complex_id, *first["proteins"][protein]))
        if ligand and ligand in first["ligands"]:
            report.ligands.append((complex_id, *first["ligands"][ligand]))
    return report


def run_training_keys(run, *, force: bool = False) -> tuple[ComplexKeys, list[str]]:
    """The keys of a fine-tuning run's training data (`TRAINING_SPLITS` of its own file),
    after checking the file is the one the run recorded.

    Returns:
        (keys, notes from the data check).

    Raises:
        DataChangedError: if the file changed since the run (and not ``force``).
        DataError: if it is gone.
    """
    from lba_cli.runs.provenance import check_run_data

    notes = check_run_data(run, force=force, fields=("finetune.data_path",))
    keys = read_complex_keys(Path(run.config["finetune"]["data_path"])).subset(TRAINING_SPLITS)
    return keys, notes
