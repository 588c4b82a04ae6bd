"""The element table the training path uses instead of gemmi agrees with gemmi."""

from __future__ import annotations

import gemmi
import pytest

from lba_cli.elements import ELEMENT_SYMBOLS, element_number


def test_every_element_in_every_case_matches_gemmi():
    assert len(ELEMENT_SYMBOLS) == 119 and ELEMENT_SYMBOLS[0] == ""
    for number in range(1, 119):
        symbol = gemmi.Element(number).name
        assert ELEMENT_SYMBOLS[number] == symbol
        for spelling in (symbol, symbol.upper(), symbol.lower(), f" {symbol} "):
            assert element_number(spelling) == gemmi.Element(spelling.strip()).atomic_number == number


@pytest.mark.parametrize("symbol", ["D", "d", "X", "Q", "*", "", "XX", "Uuo"])
def test_aliases_and_unknown_symbols_match_gemmi(symbol):
    assert element_number(symbol) == gemmi.Element(symbol).atomic_number
