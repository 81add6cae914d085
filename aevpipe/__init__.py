"""aevpipe: train ANI-style neural-network potentials from cached AEV shards.

Stage one (`featurize`) computes atomic environment vectors once and stores them as
per-element Zarr shards; stage two (`train`) streams those shards into per-element
networks with bounded memory, so epochs never recompute features.
"""

__version__ = "0.1.0"
