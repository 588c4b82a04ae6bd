"""Element symbols and atomic numbers, with no chemistry library behind them.

The training path (grids from stored atoms) needs only the symbol -> atomic number map of
the channel settings, so it reads this table rather than gemmi; gemmi and RDKit are
imported only where structure and ligand files are read. A test checks the table against
gemmi's for every element and case.
"""

from __future__ import annotations

__all__ = ["ELEMENT_SYMBOLS", "element_number"]

# Index = atomic number, 1 (H) to 118 (Og), as named by IUPAC (2016); index 0 is "no element".
ELEMENT_SYMBOLS: tuple[str, ...] = (
    "",
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",
    "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce",
    "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir",
    "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm",
    "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc",
    "Lv", "Ts", "Og",
)
# Deuterium counts as hydrogen, as gemmi and the PDB read "D".
_NUMBERS = {symbol.upper(): number for number, symbol in enumerate(ELEMENT_SYMBOLS) if symbol} | {"D": 1}


def element_number(symbol: str) -> int:
    """Atomic number of an element symbol of any case (``CL``, ``Cl``, ``cl``); 0 if unknown.

    Args:
        symbol: an element symbol; surrounding spaces are ignored.

    Returns:
        1..118, or 0 for anything that is not an element symbol (``X``, ``*``, ``""``).
    """
    return _NUMBERS.get(symbol.strip().upper(), 0)
