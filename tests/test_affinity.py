"""Affinity strings -> pK, and PDBbind index files (real 2019 and 2021-demo indexes)."""

from __future__ import annotations

import math

import pytest
from conftest import PDBBIND, PDBBIND_INDEX, require_shared

from lba_cli.data.affinity import parse_affinity, pk_from_delta_g
from lba_cli.data.sources.pdbbind import read_pdbbind_index
from lba_cli.errors import DataError

CASES = [
    ("Ki=50uM", "Ki", "=", 4.30103),
    ("Kd=0.53mM", "Kd", "=", 3.27572),
    ("Ki=0.068nM", "Ki", "=", 10.16749),
    ("Kd=10mM", "Kd", "=", 2.0),
    ("Ki=1fM", "Ki", "=", 15.0),
    ("Kd=1M", "Kd", "=", 0.0),
    ("Kd=5pM", "Kd", "=", 11.30103),
    ("IC50<=10nM", "IC50", "<=", 8.0),
    ("IC50>=2uM", "IC50", ">=", 5.69897),
    ("Kd<10uM", "Kd", "<", 5.0),
    ("Kd>1mM", "Kd", ">", 3.0),
    ("Ki~5uM", "Ki", "~", 5.30103),
    ("kd=3.2nM", "Kd", "=", 8.49485),
]


@pytest.mark.parametrize("text,measure,operator,pk", CASES, ids=[c[0] for c in CASES])
def test_parse_affinity(text, measure, operator, pk):
    affinity = parse_affinity(text)
    assert (affinity.measure, affinity.operator) == (measure, operator)
    assert affinity.affinity_pk == pytest.approx(pk, abs=1e-5)


@pytest.mark.parametrize("text", ["Kd=3mm", "Kd=", "pKd=5", "Kd=-1nM", "Kd=1 kM", ""], ids=repr)
def test_parse_affinity_rejects(text):
    with pytest.raises(DataError, match="cannot read affinity|positive"):
        parse_affinity(text)


def test_delta_g_to_pk_at_298K():
    # ΔG = -RT ln(10) pK: 1 pK unit is 1.364 kcal/mol at 298.15 K.
    assert pk_from_delta_g(-1.3642) == pytest.approx(1.0, abs=1e-3)
    assert pk_from_delta_g(-8.0) == pytest.approx(5.864, abs=1e-3)


def test_every_line_of_the_2019_indexes_parses():
    require_shared()
    refined = read_pdbbind_index(PDBBIND_INDEX / "INDEX_refined_data.2019")
    general = read_pdbbind_index(PDBBIND_INDEX / "INDEX_all.2019")
    assert refined.height == 4852
    assert general.height == 17679  # no header; no pK column: every pK computed
    assert set(general["measure"].unique()) == {"Kd", "Ki", "IC50"}
    assert set(general["operator"].unique()) >= {"=", "<", ">", "~", "<=", ">="}


def test_refined_index_pk_column_agrees_with_the_measurement():
    """The standard index states pK; recomputing it from the raw Kd/Ki must agree to rounding."""
    require_shared()
    refined = read_pdbbind_index(PDBBIND_INDEX / "INDEX_refined_data.2019")
    worst = max(abs(row["affinity_pk"] - parse_affinity(row["raw"]).affinity_pk)
                for row in refined.iter_rows(named=True))
    assert worst <= 0.006


def test_demo_index_without_pk_column_is_computed_from_kd_ki():
    require_shared()
    demo = read_pdbbind_index(PDBBIND / "index" / "INDEX_demo_PL_data.2021")
    assert demo.height == 285
    row = demo.filter(demo["complex_id"] == "1bcu").row(0, named=True)  # Kd=0.53mM
    assert row["affinity_pk"] == pytest.approx(-math.log10(0.53e-3))
