"""Binding-affinity strings such as ``Kd=11.3nM`` or ``IC50<10uM`` -> pK.

pK = -log10(K / (1 mol/L)) for a dissociation or inhibition constant K (Kd, Ki) or a
half-maximal concentration (IC50, EC50), following PDBbind's ``-logKd/Ki`` column.
Operators (``<``, ``>``, ``<=``, ``>=``, ``~``) say the value is a bound or an estimate; the
pK is computed from the number as given and the operator is kept beside it.

Curated re-releases of PDBbind also aggregate several measurements in one string; they are
read with one documented rule (`AFFINITY_RULE`), and the result says how (`Affinity.note`):

- A range ``Ki=60-250nM`` or ``Ki=60..(4)..250nM`` (lowest..(number of measurements)..highest)
  stands for its geometric mean: pK = (pK(low) + pK(high)) / 2; the measure is K.
- Several measurements joined by ``:`` (``IC50=1.1uM:Ki=313nM:Kd=0.45uM``) are read one by
  one and one kind is kept, Kd over Ki over IC50 over EC50 (then Ka), whatever their order;
  several values of the kept kind are averaged in pK. Kd and Ki are equilibrium constants,
  whereas IC50 and EC50 depend on the assay's concentrations, hence the order.
- Each value keeps its own operator; the result's operator is theirs when they agree, else ``~``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lba_cli.errors import DataError

__all__ = ["Affinity", "parse_affinity", "pk_from_molar", "pk_from_delta_g", "UNIT_MOLAR", "MEASURE_ORDER",
           "AFFINITY_RULE"]

UNIT_MOLAR: dict[str, float] = {
    "fM": 1e-15, "pM": 1e-12, "nM": 1e-9, "uM": 1e-6, "µM": 1e-6, "μM": 1e-6, "mM": 1e-3, "M": 1.0,
}
# The kind kept from a list of measurements: the first of these that the list holds.
MEASURE_ORDER = ("Kd", "Ki", "IC50", "EC50", "Ka")
AFFINITY_RULE = ("a range K=a-b or K=a..(n)..b is read as its geometric mean, pK = (pK(a) + pK(b)) / 2; "
                 "several measurements joined by ':' keep one kind, Kd over Ki over IC50 over EC50, and "
                 "several values of that kind are averaged in pK")
_GAS_CONSTANT_KCAL_PER_MOL_K = 1.987204258e-3
_MEASURE = r"(?P<measure>(?i:Kd|Ki|IC50|EC50|Ka))\s*(?P<op><=|>=|=|<|>|~)\s*"
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_UNIT = r"fM|pM|nM|uM|µM|μM|mM|M"
_PATTERN = re.compile(rf"^\s*{_MEASURE}(?P<value>{_NUMBER})\s*(?P<unit>{_UNIT})\s*$")
_RANGE = re.compile(
    rf"^\s*{_MEASURE}(?P<low>{_NUMBER})\s*(?P<low_unit>{_UNIT})?\s*"
    rf"(?:-|\.\.\(\s*(?P<count>[0-9]+)\s*\)\.\.|\.\.)\s*(?P<high>{_NUMBER})\s*(?P<unit>{_UNIT})\s*$")
_EXPECTED = ("expected: Kd, Ki, IC50 or EC50, then =, <, >, <=, >= or ~, a number and a unit fM..M (e.g. Kd=11.3nM); "
             "a range such as Ki=60-250nM or Ki=60..(4)..250nM (read as its geometric mean); or several "
             "measurements joined by ':' (Kd kept over Ki over IC50 over EC50)")


@dataclass(frozen=True)
class Affinity:
    """One parsed affinity (a measurement, or several read with `AFFINITY_RULE`).

    Attributes:
        measure: ``Kd``, ``Ki``, ``IC50``, ``EC50`` or ``Ka``.
        operator: ``=``, ``<``, ``>``, ``<=``, ``>=`` or ``~``.
        value_molar: the number converted to mol/L (for Ka, L/mol); for a range or several
            values, their geometric mean.
        affinity_pk: -log10 of the constant in mol/L (for Ka, +log10).
        note: how a range or a list was read (e.g. ``affinity range 60..250 nM, geometric
            mean``); "" for a single measurement.
    """

    measure: str
    operator: str
    value_molar: float
    affinity_pk: float
    note: str = ""


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


def _measure_name(text: str) -> str:
    return {m.lower(): m for m in MEASURE_ORDER}[text.lower()]


def _pk(measure: str, value_molar: float) -> float:
    pk = pk_from_molar(value_molar)
    return -pk if measure == "Ka" else pk


def _molar_from_pk(measure: str, pk: float) -> float:
    return 10.0 ** (pk if measure == "Ka" else -pk)


def _parse_one(text: str) -> Affinity:
    """A single measurement or a range; raises DataError naming which was expected."""
    match = _PATTERN.match(text)
    if match is not None:
        measure = _measure_name(match["measure"])
        value_molar = float(match["value"]) * UNIT_MOLAR[match["unit"]]
        return Affinity(measure, match["op"], value_molar, _pk(measure, value_molar))
    match = _RANGE.match(text)
    if match is not None:
        measure = _measure_name(match["measure"])
        low = float(match["low"]) * UNIT_MOLAR[match["low_unit"] or match["unit"]]
        high = float(match["high"]) * UNIT_MOLAR[match["unit"]]
        pk = (_pk(measure, low) + _pk(measure, high)) / 2
        unit = match["unit"]
        counted = f", {match['count']} measurements" if match["count"] else ""
        low_text = f"{match['low']}{'' if match['low_unit'] in (None, unit) else ' ' + match['low_unit']}"
        note = f"affinity range {low_text}..{match['high']} {unit}{counted}, geometric mean: {measure} pK {pk:.2f}"
        return Affinity(measure, match["op"], _molar_from_pk(measure, pk), pk, note)
    if ".." in text or re.search(r"[0-9]\s*-\s*[0-9.]", text.split("=", 1)[-1].replace("e-", "e")):
        raise DataError(f"cannot read affinity range {text!r}\n{_EXPECTED}")
    raise DataError(f"cannot read affinity {text!r}\n{_EXPECTED}")


def parse_affinity(text: str) -> Affinity:
    """Parse a PDBbind-style affinity: ``Ki=0.068nM``, ``Kd~5uM``, a range ``IC50=40-90nM`` or
    ``Ki=60..(4)..250nM``, or several measurements ``IC50=1.1uM:Ki=313nM:Kd=0.45uM``.

    Ranges and lists are read with `AFFINITY_RULE` (see the module docstring) and the
    result's ``note`` says so.

    Raises:
        DataError: naming the text (and, in a list, the part) that does not parse, with the
            accepted forms.
    """
    if ":" not in text:
        return _parse_one(text)
    parts = [part.strip() for part in text.split(":")]
    parsed = []
    for part in parts:
        try:
            parsed.append(_parse_one(part))
        except DataError as error:
            detail = str(error).split("\n")[0]
            raise DataError(f"cannot read the list of measurements {text!r}: {detail}\n{_EXPECTED}") from None
    kept_measure = next(m for m in MEASURE_ORDER if any(a.measure == m for a in parsed))
    kept = [a for a in parsed if a.measure == kept_measure]
    pk = sum(a.affinity_pk for a in kept) / len(kept)
    operators = {a.operator for a in kept}
    operator = operators.pop() if len(operators) == 1 else "~"
    averaged = f"mean of {len(kept)} {kept_measure} values in pK" if len(kept) > 1 else f"kept {kept_measure}"
    note = (f"{len(parsed)} measurements {text!r}: {averaged} (Kd over Ki over IC50 over EC50): "
            f"{kept_measure} pK {pk:.2f}")
    return Affinity(kept_measure, operator, _molar_from_pk(kept_measure, pk), pk, note)
