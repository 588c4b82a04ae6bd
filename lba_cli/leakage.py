"""Leakage between the complexes a model is scored on and the complexes it learnt from.

A model scored on complexes it was trained on, or on the same proteins or ligands, measures
memory, not prediction. Wherever data meets a run (``lba evaluate RUN --data FILE``, ``lba
predict``), the scored complexes are compared with the run's training data (its data file's
train and val splits; val chose the best epoch) by:

- complex id (the same PDB entry);
- protein: sequence identity of at least `MAX_IDENTITY` (0.3, the ATOM3D LBA split threshold)
  between a chain of each, as `lba_cli.identity` defines and computes it, where both sides
  carry chain sequences (files written by `lba voxelize` since it stores them); otherwise the
  identity key `lba voxelize` stores per complex (``protein_group``: the UniProt id, else an
  identical chain sequence), which catches the same protein only;
- ligand: the InChIKey of the ligand's SMILES (RDKit; canonical SMILES where RDKit cannot make
  an InChI), so the same molecule drawn differently still matches.

Only the data a run recorded is used: `lba_cli.runs.provenance.check_run_data` first.

`corpus_overlap` does the same for pre-training (``lba finetune --init RUN``): the chains of
the parent's corpus against the val and test proteins of the fine-tuning file.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ComplexKeys", "LeakageReport", "ligand_key", "read_complex_keys", "keys_from_records", "find_leakage",
           "run_training_keys", "corpus_overlap", "TRAINING_SPLITS", "MAX_IDENTITY"]

MAX_IDENTITY = 0.3

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
        sequences: each complex's receptor chain sequences, or None when not known.
    """

    ids: list[str]
    splits: list[str]
    proteins: list[str]
    ligands: list[str]
    sequences: list[list[str]] | None = None

    def subset(self, splits: Iterable[str]) -> ComplexKeys:
        """Only the complexes of these splits."""
        keep = [i for i, s in enumerate(self.splits) if s in set(splits)]
        columns = [[values[i] for i in keep] for values in (self.ids, self.splits, self.proteins, self.ligands)]
        return ComplexKeys(*columns, [self.sequences[i] for i in keep] if self.sequences is not None else None)


def read_complex_keys(path: Path) -> ComplexKeys:
    """The ids, splits, protein keys and ligand keys of every complex of an `lba voxelize` file.

    Raises:
        DataError: if the file is not an `lba voxelize` file.
    """
    from lba_cli.data.grids_h5 import DATASET_SEQUENCES, SEQUENCE_SEPARATOR, open_grids

    with open_grids(Path(path)) as f:
        complexes = f["complexes"]

        def text(name: str) -> list[str]:
            return complexes[name].asstr()[...].astype(str).tolist() if name in complexes else [""] * len(
                complexes["id"])

        sequences = ([[s for s in t.split(SEQUENCE_SEPARATOR) if s] for t in text(DATASET_SEQUENCES)]
                     if DATASET_SEQUENCES in complexes else None)
        return ComplexKeys(text("id"), text("split"), text("protein_group"),
                           [ligand_key(s) for s in text("ligand_smiles")], sequences)


def keys_from_records(records: Iterable) -> ComplexKeys:
    """Keys of complexes read by `lba_cli.data.build.read_sources` (`ComplexRecord`), with
    protein keys made as `lba voxelize` makes them."""
    from lba_cli.data.build import protein_groups

    records = list(records)
    return ComplexKeys([r.complex_id for r in records], [r.split or "" for r in records], protein_groups(records),
                       [ligand_key(r.ligand_smiles) for r in records], [list(r.sequences) for r in records])


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
    method: str = "protein key"
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
               f"{len(self.proteins)} share a protein ({self.method}){examples(self.proteins)}, "
               f"{len(self.ligands)} share a ligand{examples(self.ligands)}"]
        if self.unknown:
            out.append(f"{self.unknown} scored complexes have no protein identity (no chain sequence to compare): "
                       "their proteins were not compared")
        return out


def find_leakage(scored: ComplexKeys, training: ComplexKeys, against: str,
                 max_identity: float = MAX_IDENTITY) -> LeakageReport:
    """Compare scored complexes with training complexes by id, protein and ligand key.

    Proteins are compared by sequence identity (at least ``max_identity`` between any chains,
    `lba_cli.identity.find_similar`) when both sides carry chain sequences, else by key.
    """
    if scored.sequences is not None and training.sequences is not None:
        return _find_leakage_by_identity(scored, training, against, max_identity)
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


def _find_leakage_by_identity(scored: ComplexKeys, training: ComplexKeys, against: str,
                              max_identity: float) -> LeakageReport:
    from lba_cli.identity import MIN_CHAIN_LENGTH, find_similar

    by_key = find_leakage(dataclasses.replace(scored, sequences=None), dataclasses.replace(training, sequences=None),
                          against)
    chains, owners = [], []
    for index, sequences in enumerate(scored.sequences):
        chains.extend(sequences)
        owners.extend([index] * len(sequences))
    queries, query_owners = [], []
    for index, sequences in enumerate(training.sequences):
        queries.extend(sequences)
        query_owners.extend([index] * len(sequences))
    first: dict[int, tuple[str, str, str]] = {}
    for hit in find_similar(chains, queries, max_identity):
        scored_index, training_index = owners[hit.corpus_index], query_owners[hit.query_index]
        first.setdefault(scored_index, (scored.ids[scored_index], training.ids[training_index],
                                        training.splits[training_index]))
    by_key.proteins = [first[i] for i in sorted(first)]
    by_key.unknown = sum(not any(len(c) >= MIN_CHAIN_LENGTH for c in sequences) for sequences in scored.sequences)
    by_key.method = f">= {max_identity:.0%} sequence identity"
    return by_key


def _pretraining_sequences(paths: list[Path]) -> tuple[list[list[str]], int]:
    """Chain sequences of each structure a pre-training run was given, and how many could
    not be read: a corpus file's stored chains, an `lba voxelize` file's train-split
    receptors (the only ones pre-training takes), each structure file read with gemmi."""
    from lba_cli.corpus import Corpus, collect_structure_files, is_corpus_file
    from lba_cli.data.atoms import chain_sequences, read_structure
    from lba_cli.data.grids_h5 import read_chain_sequences
    from lba_cli.errors import LbaError

    out: list[list[str]] = []
    unreadable = 0
    files = []
    for path in paths:
        if is_corpus_file(path):
            out.extend(Corpus(path).read_sequences())
        elif path.is_file() and path.name.endswith((".h5", ".hdf5")):
            _, split, sequences = read_chain_sequences(path)
            out.extend(chains for part, chains in zip(split, sequences) if part == "train")
        else:
            files.append(path)
    for path in collect_structure_files(files) if files else ():
        try:
            out.append(chain_sequences(read_structure(path)))
        except LbaError:
            unreadable += 1
    return out, unreadable


def corpus_overlap(parent, data_path: Path, max_identity: float = MAX_IDENTITY) -> list[str]:
    """How many pre-training structures of ``parent`` are similar to the val/test proteins of
    the fine-tuning file ``data_path``, as lines for the user.

    The parent's own ``--exclude-similar-to`` record answers when it excluded against this
    very file (same SHA-256) at a threshold at least as strict; otherwise the chains of the
    parent's structures (corpus files, structure files or folders, as `_pretraining_sequences`
    reads them) are aligned with the file's val and test chains (`lba_cli.identity.find_similar`,
    at least ``max_identity``, 0.3: the ATOM3D LBA split threshold). Structures that
    pre-training itself left out (no zone, ``--exclude-ids``) are counted too: an upper bound.

    Raises:
        DataError: when the parent's structures or the file's chain sequences cannot be read.
    """
    from lba_cli.data.grids_h5 import read_chain_sequences
    from lba_cli.identity import find_similar
    from lba_cli.runs.provenance import hash_data_path

    config = parent.config
    data_sha = hash_data_path(data_path)["sha256"]
    threshold = (config.get("neighbor") or {}).get("max_identity", 1.0)
    excluded_against = [p for p in config.get("exclude_similar_to") or ()
                        if Path(p).exists() and hash_data_path(p)["sha256"] == data_sha]
    if excluded_against and threshold <= max_identity:
        count = len(parent.status.get("excluded_similar") or [])
        return [f"pre-training corpus of {parent.id}: structures with >= {threshold:.0%} identity to this file's "
                f"val/test proteins were left out before pre-training ({count} excluded): no overlap"]
    _, split, sequences = read_chain_sequences(Path(data_path))
    queries = [chain for part, chains in zip(split, sequences) if part in ("val", "test") for chain in chains]
    structures, unreadable = _pretraining_sequences([Path(p) for p in config.get("structures") or ()])
    chains, owners = [], []
    for index, structure in enumerate(structures):
        chains.extend(structure)
        owners.extend([index] * len(structure))
    similar = {owners[hit.corpus_index] for hit in find_similar(chains, queries, max_identity)}
    total = len(structures)
    unread = f" ({unreadable} unreadable structure files not compared)" if unreadable else ""
    if similar:
        return [f"pre-training corpus of {parent.id}: {len(similar)} of {total} structures have a chain with >= "
                f"{max_identity:.0%} identity to a val/test protein of {Path(data_path).name}{unread}: the encoder "
                "has seen those proteins (pre-train with --exclude-similar-to to keep them out)"]
    return [f"pre-training corpus of {parent.id}: none of its {total} structures reaches {max_identity:.0%} identity "
            f"to a val/test protein of {Path(data_path).name}{unread}"]


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
