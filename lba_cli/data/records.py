"""What a source reader yields: complexes, skipped complexes and notes about a whole source.

Every reader in `lba_cli.data.sources` yields, for each complex it finds, either a
`ComplexRecord` or a `Skipped` entry with the stage and the reason, so that nothing is
dropped silently; `SourceNote` carries what the user should know about a whole source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import polars as pl

from lba_cli.choices import LabelUnit

__all__ = ["ComplexRecord", "Skipped", "SourceNote", "SourceItem", "SourceOptions"]


@dataclass
class ComplexRecord:
    """One protein-ligand complex, read and filtered, before voxelization.

    Attributes:
        complex_id: e.g. the PDB code ``1a30``.
        affinity_pk: -log10 of Kd/Ki in mol/L; None when the source gives no measured value
            (read only when `SourceOptions.require_labels` is off, as `lba predict` reads).
        protein: atom table of the receptor (columns of `lba_cli.data.atoms.ATOM_SCHEMA`).
        ligand: atom table of the ligand.
        split: ``train``, ``val``, ``test`` or None when the source defines none.
        protein_group: the protein's identity for leakage-free splits (UniProt id), or "".
        source: the file or folder it was read from.
        notes: how it was read when that matters (e.g. "ligand read unsanitised").
        measure: ``Kd``, ``Ki``, ``IC50``, ... when known ("" otherwise).
        operator: ``=``, ``<``, ``>``, ``<=``, ``>=`` or ``~`` when known.
        sequences: the receptor's chain sequences (one-letter), for sequence-identity splits.
        ligand_smiles: canonical SMILES of the ligand when known (leakage check).
    """

    complex_id: str
    affinity_pk: float | None
    protein: pl.DataFrame
    ligand: pl.DataFrame
    split: str | None = None
    protein_group: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    measure: str = ""
    operator: str = ""
    sequences: tuple[str, ...] = ()
    ligand_smiles: str = ""


@dataclass(frozen=True)
class SourceNote:
    """Something about a whole source the user should know (e.g. index entries without files)."""

    text: str


@dataclass(frozen=True)
class Skipped:
    """A complex that could not be used, and why.

    Attributes:
        complex_id: its id, or a position such as ``row 7`` when it has none.
        source: the file, folder or record it came from.
        stage: where it failed: ``read``, ``parse``, ``label``, ``split``, ``dedupe`` or ``box``.
        reason: what was wrong, in words.
    """

    complex_id: str
    source: str
    stage: str
    reason: str


SourceItem = Union[ComplexRecord, Skipped, SourceNote]


@dataclass(frozen=True)
class SourceOptions:
    """Settings that only some readers use.

    Attributes:
        label_field: the SDF property holding each record's affinity (``sdf-series``).
        label_unit: the unit of that property (checked by the reader that uses it).
        require_labels: a complex without a readable measured affinity is skipped (stage
            ``label``), as training data needs; off, it is read with ``affinity_pk`` None (a
            present but unreadable label is noted), as prediction needs.
        labels: a label table (id and affinity columns) for a folder of per-complex
            subfolders (``folders-csv``); None: found in the folder.
    """

    label_field: str | None = None
    label_unit: LabelUnit | str = LabelUnit.pk
    require_labels: bool = True
    labels: Path | None = None

    def unlabelled(self, complex_id: str, source: str, reason: str) -> Skipped | None:
        """What a reader does with a complex whose label is missing or unreadable: a `Skipped`
        entry (stage ``label``) when labels are required, else None (read it without one)."""
        return Skipped(complex_id, source, "label", reason) if self.require_labels else None
