"""Binding-affinity strings such as ``Kd=11.3nM`` or ``IC50<10uM`` -> pK.

pK = -log10(K / (1 mol/L)) for a dissociation or inhibition constant K (Kd, Ki) or a
half-maximal concentration (IC50, EC50), following PDBbind's ``-logKd/Ki`` column.
Operators (``<``, ``>``, ``<=``, ``>=``, ``~``) say the value is a bound or an estimate; the
pK is computed from the number as given and the operator is kept beside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lba_cli.errors import DataError

__all__ = ["Affinity", "parse_affinity", "pk_from_molar", "pk_from_delta_g", "UNIT_MOLAR"]

UNIT_MOLAR: dict[str, float] = {
    "fM": 1e-15, "pM": 1e-12, "nM": 1e-9, "uM": 1e-6, "µM": 1e-6, "μM": 1e-6, "mM": 1e-3, "M": 1.0,
}
_GAS_CONSTANT_KCAL_PER_MOL_K = 1.987204258e-3
_PATTERN = re.compile(
    r"^\s*(?P<measure>(?i:Kd|Ki|IC50|EC50|Ka))\s*(?P<op><=|>=|=|<|>|~)\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    r"\s*(?P<unit>fM|pM|nM|uM|µM|μM|mM|M)\s*$",
)


@dataclass(frozen=True)
class Affinity:
    """One parsed affinity measurement.

    Attributes:
        measure: ``Kd``, ``Ki``, ``IC50``, ``EC50`` or ``Ka``.
        operator: ``=``, ``<``, ``>``, ``<=``, ``>=`` or ``~``.
        value_molar: the number converted to mol/L (for Ka, L/mol).
        affinity_pk: -log10 of the constant in mol/L (for Ka, +log10).
    """

    measure: str
    operator: str
    value_molar: float
    affinity_pk: float


def pk_from_molar(value_molar: float) -> float:
    """-log10 of a positive concentration in mol/L.

    Raises:
        DataError: if the value is not positive and finite.
    """
    if not (value_molar > 0 and math.isfinite(value_molar)):
        raise DataError(f"affinity must be a positive concentration, got {value_molar!r} M")
    return 0.0 - math.log10(value_molar)


def pk_from_delta_g(delta_g_kcal_per_mol: float, temperature_K: float = 298.15) -> float:
    """pK from a binding free energy: pK = -ΔG / (RT ln 10), ΔG in kcal/mol (negative binds)."""
    return -delta_g_kcal_per_mol / (_GAS_CONSTANT_KCAL_PER_MOL_K * temperature_K * math.log(10.0))


def parse_affinity(text: str) -> Affinity:
    """Parse a PDBbind-style measurement such as ``Ki=0.068nM`` or ``Kd~5uM``.

    Raises:
        DataError: naming the text and the accepted form when it does not parse.
    """
    match = _PATTERN.match(text)
    if match is None:
        raise DataError(
            f"cannot read affinity {text!r}\n"
            "expected: Kd, Ki or IC50, then =, <, >, <=, >= or ~, a number and a unit fM..M (e.g. Kd=11.3nM)"
        )
    measure = {m.lower(): m for m in ("Kd", "Ki", "IC50", "EC50", "Ka")}[match["measure"].lower()]
    value_molar = float(match["value"]) * UNIT_MOLAR[match["unit"]]
    pk = pk_from_molar(value_molar)
    if measure == "Ka":
        pk = -pk
    return Affinity(measure=measure, operator=match["op"], value_molar=value_molar, affinity_pk=pk)
