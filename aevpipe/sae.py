"""Self atomic energies: least squares of energies on element counts, streamed.

Fitted on the training split only, so validation and test stay unseen.
"""

from __future__ import annotations

import numpy as np

from aevpipe import keys
from aevpipe.errors import SettingsError
from aevpipe.loader import element_counts
from aevpipe.store import ShardStore


def fit_self_energies(store: ShardStore, split: int = 0) -> np.ndarray:
    """Per-element energies (Hartree) minimising sum (E - counts @ sae)^2.

    Normal equations are summed chunk by chunk: memory does not grow with the data.
    Elements absent from the split get 0.
    """
    n_el = len(store.elements)
    xtx = np.zeros((n_el, n_el))
    xty = np.zeros(n_el)
    for layout in store.layouts:
        c0, c1 = layout.conformation_range(split)
        step = store.array(layout.n_atoms, keys.SPECIES).chunks[0]
        for a in range(c0, c1, step):
            b = min(c1, a + step)
            species = store.read(layout.n_atoms, keys.SPECIES, None, a, b)
            x = element_counts(species, n_el).astype(np.float64)
            xtx += x.T @ x
            xty += x.T @ store.read(layout.n_atoms, keys.ENERGY, None, a, b)
    present = np.diag(xtx) > 0
    if not present.any():
        raise SettingsError("no conformations in the split to fit self energies on")
    sae = np.zeros(n_el)
    sub = np.ix_(present, present)
    sae[present] = np.linalg.lstsq(xtx[sub], xty[present], rcond=None)[0]
    return sae
