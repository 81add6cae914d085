"""aevpipe: train ANI-style neural-network potentials from cached AEV shards.

Stage one (`featurize`) computes atomic environment vectors once and stores them as
per-element Zarr shards; stage two (`train`) streams those shards into per-element
networks with bounded memory, so epochs never recompute features.
"""

import os

# TorchANI warns at import that its CUDA extensions are not built; aevpipe uses
# its PyTorch path then, so the warning says nothing a user must act on.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

__version__ = "0.1.0"
