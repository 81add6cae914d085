"""Synthetic ANI-1-shaped data, made offline: real small molecules, a real cheap
potential, the ANI-1 release layout. Clearly marked synthetic everywhere.

Molecules: every neutral closed-shell molecule of 1 to 4 heavy atoms (C, N, O) with
hydrogens that RDKit accepts, on all connected graphs of up to 4 atoms and bond
orders 1 to 3, with GDB-11-like rules: no heteroatom-heteroatom bonds, no cumulated
double bonds, no enols, enamines, aminals or acetals, no multiple bonds in 3- and
4-membered rings.
Conformations: normal-mode sampling around each molecule's MMFF94 minimum (random
energy per mode, as in ANI-1's sampling), rejecting broken geometries. Energies:
MMFF94 in Hartree plus per-element offsets of ANI-1's size. RDKit is imported lazily.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from aevpipe.errors import SettingsError
from aevpipe.keys import HARTREE_TO_KCALMOL

# Per-element offsets (Hartree), about ANI-1's wB97X/6-31G(d) atomic energies.
OFFSETS = {"H": -0.5004, "C": -37.8339, "N": -54.5737, "O": -75.0450}
MASSES = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999}
KT_300K = 0.593  # kcal/mol
# Conformations per preset over all molecules (ANI-1 subsets 1-4 hold 864,898).
PRESETS = {"demo": 20_000, "ani1-s01-s04": 864_898}
EDGE_SETS = {
    1: [()],
    2: [((0, 1),)],
    3: [((0, 1), (1, 2)), ((0, 1), (1, 2), (0, 2))],
    4: [
        ((0, 1), (1, 2), (2, 3)),
        ((0, 1), (0, 2), (0, 3)),
        ((0, 1), (1, 2), (2, 3), (3, 0)),
        ((0, 1), (1, 2), (2, 0), (2, 3)),
        ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2)),
        ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)),
    ],
}


@dataclass
class Molecule:
    """A molecule at its MMFF minimum, with its normal modes."""

    smiles: str
    symbols: list[str]
    heavy: int
    coordinates: np.ndarray  # (A, 3) Angstrom at the minimum
    modes: np.ndarray  # (M, A, 3) Cartesian displacement per unit normal coordinate
    force_constants: np.ndarray  # (M,) kcal/mol per (amu^0.5 Angstrom)^2
    forcefield: object
    minimum: float  # kcal/mol


def enumerate_smiles(max_heavy: int = 4) -> list[str]:
    """Canonical SMILES of the molecules described in the module docstring."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    found: set[str] = set()
    for n in range(1, max_heavy + 1):
        for edges in EDGE_SETS[n]:
            for elements in itertools.product("CNO", repeat=n):
                for orders in itertools.product((1, 2, 3), repeat=len(edges)):
                    smiles = _build(Chem, elements, edges, orders)
                    if smiles:
                        found.add(smiles)
    return sorted(found, key=lambda s: (_heavy_atoms(s), s))


def _heavy_atoms(smiles: str) -> int:
    return sum(ch in "CNOcno" for ch in smiles)


# Unstable groups GDB-11 leaves out: enols, enamines and their triple-bond kin
# (ynols, cyanic acid), and aminals, hemiaminals, acetals, geminal diols.
UNSTABLE_SMARTS = ("[N,O;!H0]-C=,#[C,N,O]", "[N,O]-[CX4]-[N,O]")
ENOL = None  # compiled on first use


def _build(Chem, elements, edges, orders) -> str | None:
    global ENOL
    if ENOL is None:
        ENOL = [Chem.MolFromSmarts(p) for p in UNSTABLE_SMARTS]
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    ring = len(edges) >= len(elements) and len(elements) >= 3
    double = [0] * len(elements)
    for (a, b), order in zip(edges, orders, strict=True):
        if elements[a] != "C" and elements[b] != "C":
            return None  # heteroatom-heteroatom bonds: left out, as in GDB-11
        if order == 2:
            double[a] += 1
            double[b] += 1
    if ring and any(o > 1 for o in orders):
        return None  # strained multiple bonds in 3- and 4-rings
    if max(double) > 1:
        return None  # cumulated double bonds (allenes, ketenes)
    mol = Chem.RWMol()
    for e in elements:
        mol.AddAtom(Chem.Atom(e))
    for (a, b), order in zip(edges, orders, strict=True):
        mol.AddBond(a, b, kinds[order])
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several kinds for bad valences
        return None
    if any(a.GetFormalCharge() or a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return None
    if any(mol.HasSubstructMatch(p) for p in ENOL):
        return None
    return Chem.MolToSmiles(mol)


def prepare(smiles: str, seed: int) -> Molecule | None:
    """Embed, MMFF-optimise and find the normal modes; None when RDKit cannot."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        return None
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is None:
        return None
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    ff.Minimize(maxIts=2000)
    x0 = np.array(ff.Positions()).reshape(-1, 3)
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    n = len(symbols)
    if n < 2:
        return None
    # Hessian by central differences of the analytic gradient.
    h = 1e-3
    hess = np.zeros((3 * n, 3 * n))
    flat = x0.ravel()
    for i in range(3 * n):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        hess[i] = (
            np.array(ff.CalcGrad(up.tolist())) - np.array(ff.CalcGrad(down.tolist()))
        ) / (2 * h)
    hess = (hess + hess.T) / 2
    m = np.repeat([MASSES[s] for s in symbols], 3)
    w, v = np.linalg.eigh(hess / np.sqrt(np.outer(m, m)))
    keep = w > 1e-2  # vibrations; drops translations and rotations
    if keep.sum() == 0:
        return None
    modes = (v[:, keep] / np.sqrt(m)[:, None]).T.reshape(-1, n, 3)
    return Molecule(
        smiles,
        symbols,
        _heavy_atoms(smiles),
        x0,
        modes,
        w[keep],
        ff,
        ff.CalcEnergy(flat.tolist()),
    )


def sample(
    mol: Molecule,
    count: int,
    rng: np.random.Generator,
    temperature: float = 1000.0,
    max_energy: float = 80.0,
    min_distance: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` displaced geometries (count, A, 3) and MMFF energies (kcal/mol).

    Each geometry gets a random total harmonic energy up to `temperature` kT per
    mode, split over the modes at random; geometries with atoms closer than
    `min_distance` or MMFF energies over `max_energy` above the minimum are drawn
    again.
    """
    n_modes = len(mol.force_constants)
    coords = np.empty((count, len(mol.symbols), 3))
    energies = np.empty(count)
    filled = 0
    kt = KT_300K * temperature / 300.0
    iu = np.triu_indices(len(mol.symbols), 1)
    while filled < count:
        k = (count - filled) * 2 + 8
        total = rng.uniform(0, n_modes * kt, size=k)
        share = rng.dirichlet(np.ones(n_modes), size=k) * total[:, None]
        amplitude = np.sqrt(2 * share / mol.force_constants) * rng.choice(
            (-1.0, 1.0), size=(k, n_modes)
        )
        trial = mol.coordinates + np.einsum("km,mad->kad", amplitude, mol.modes)
        d = np.linalg.norm(trial[:, iu[0]] - trial[:, iu[1]], axis=-1)
        for x in trial[d.min(axis=1) >= min_distance]:
            e = mol.forcefield.CalcEnergy(x.ravel().tolist()) - mol.minimum
            if 0 <= e <= max_energy:
                coords[filled], energies[filled] = x, e
                filled += 1
                if filled == count:
                    break
    return coords, energies


def allocate(molecules: list[Molecule], total: int) -> list[int]:
    """Conformations per molecule, proportional to vibrational modes, summing to
    `total` (ANI-1 sampled larger molecules more)."""
    weights = np.array([len(m.force_constants) for m in molecules], float)
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: total - counts.sum()]] += 1
    return counts.tolist()


def synthesize(
    out: Path,
    preset: str = "demo",
    seed: int = 0,
    conformations: int | None = None,
    progress=None,
) -> dict:
    """Write ani_gdb_s01.h5 ... ani_gdb_s04.h5 into `out`; returns a summary."""
    if preset not in PRESETS:
        raise SettingsError(
            f"unknown synth preset {preset!r}; choose from {list(PRESETS)}"
        )
    t0 = time.perf_counter()
    total = conformations or PRESETS[preset]
    molecules = [
        m
        for i, s in enumerate(enumerate_smiles())
        if (m := prepare(s, seed + i)) is not None
    ]
    counts = allocate(molecules, total)
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for subset in range(1, 5):
        name = f"gdb11_s{subset:02d}"
        path = out / f"ani_{name.replace('11_', '_')}.h5"
        tmp = path.with_name(path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs["synthetic"] = True
            f.attrs["description"] = (
                "SYNTHETIC data made by `aevpipe synth`: MMFF94 energies (RDKit) in "
                "Hartree plus per-element offsets, normal-mode sampled geometries. "
                "Not DFT."
            )
            top = f.create_group(name)
            index = 0
            for mol, count in zip(molecules, counts, strict=True):
                if mol.heavy != subset:
                    continue
                coords, energies = sample(mol, count, rng)
                g = top.create_group(f"{name}-{index}")
                g["coordinates"] = coords.astype(np.float32)
                g["energies"] = energies / HARTREE_TO_KCALMOL + sum(
                    OFFSETS[s] for s in mol.symbols
                )
                g["species"] = np.array([s.encode() for s in mol.symbols], "S1")
                g["smiles"] = np.array([mol.smiles.encode()])
                index += 1
                if progress:
                    progress(count)
        tmp.replace(path)
        files[path.name] = path.stat().st_size
    return {
        "molecules": len(molecules),
        "conformations": total,
        "files": files,
        "seconds": time.perf_counter() - t0,
    }
