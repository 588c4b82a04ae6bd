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


# Ranges and lists as curated re-releases of PDBbind write them: (text, measure, operator, pK, note fragment).
AGGREGATES = [
    ("Ki=60..(4)..250nM", "Ki", "=", (-math.log10(60e-9) - math.log10(250e-9)) / 2,
     "affinity range 60..250 nM, 4 measurements, geometric"),
    ("IC50=40-90nM", "IC50", "=", -math.log10(60e-9), "affinity range 40..90 nM, geometric mean"),  # = 60 nM
    ("Ki=60..250nM", "Ki", "=", (-math.log10(60e-9) - math.log10(250e-9)) / 2, "affinity range 60..250 nM"),
    ("Kd=5nM-1uM", "Kd", "=", (8.30103 + 6.0) / 2, "affinity range 5 nM..1 uM"),
    ("Kd<1e-3-2e-3M", "Kd", "<", (3.0 + 2.69897) / 2, "affinity range"),
    ("IC50=1.1uM:Ki=313nM:Kd=0.45uM", "Kd", "=", -math.log10(0.45e-6), "3 measurements"),  # Kd kept, whatever the order
    ("Ki=313nM:IC50=1.1uM", "Ki", "=", -math.log10(313e-9), "kept Ki"),
    ("IC50=2uM:EC50=1uM", "IC50", "=", 5.69897, "kept IC50"),
    ("Kd=10nM:Kd=1uM", "Kd", "=", 7.0, "mean of 2 Kd values in pK"),
    ("Kd=10nM:Kd>1uM", "Kd", "~", 7.0, "mean of 2 Kd values"),  # operators disagree: an estimate
    ("Ki<10nM:Ki<1uM", "Ki", "<", 7.0, "mean of 2 Ki values"),  # operators agree: kept
    ("IC50=40-90nM:Kd=60..(3)..250nM", "Kd", "=", (-math.log10(60e-9) - math.log10(250e-9)) / 2, "kept Kd"),
]


@pytest.mark.parametrize("text,measure,operator,pk,note", AGGREGATES, ids=[c[0] for c in AGGREGATES])
def test_ranges_and_lists_follow_the_documented_rule(text, measure, operator, pk, note):
    affinity = parse_affinity(text)
    assert (affinity.measure, affinity.operator) == (measure, operator)
    assert affinity.affinity_pk == pytest.approx(pk, abs=1e-4)
    assert affinity.value_molar == pytest.approx(10 ** -pk, rel=1e-6)
    assert note in affinity.note


def test_a_single_measurement_has_no_note():
    assert parse_affinity("Kd=10nM").note == ""


BAD_AGGREGATES = [("Ki=60..(4)..250", "cannot read affinity range"), ("Ki=60-", "cannot read affinity"),
                  ("Kd=1nM:strong", "cannot read the list of measurements 'Kd=1nM:strong': cannot read affinity "
                                    "'strong'"), ("Kd=1nM:", "cannot read the list of measurements")]


@pytest.mark.parametrize("text,message", BAD_AGGREGATES, ids=[c[0] for c in BAD_AGGREGATES])
def test_unreadable_ranges_and_lists_say_so_and_how_to_write_them(text, message):
    with pytest.raises(DataError) as error:
        parse_affinity(text)
    text = str(error.value)
    assert message in text and "geometric mean" in text and "Kd kept over Ki" in text


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
