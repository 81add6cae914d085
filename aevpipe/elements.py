"""Chemical element symbols and atomic numbers (no dependencies)."""

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe"
).split()

ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(SYMBOLS, start=1)}


def symbol_of(atomic_number: int) -> str:
    """The element symbol of an atomic number; ValueError if out of the table."""
    if not 1 <= atomic_number <= len(SYMBOLS):
        raise ValueError(f"unknown atomic number {atomic_number}")
    return SYMBOLS[atomic_number - 1]


def formula(symbols: list[str]) -> str:
    """Hill-ordered formula of a list of symbols, e.g. C H H H H -> CH4."""
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    order = sorted(counts)
    if "C" in counts:
        order = (
            ["C"]
            + (["H"] if "H" in counts else [])
            + [s for s in order if s not in ("C", "H")]
        )
    return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order)
