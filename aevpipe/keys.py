"""Names of the shard store's arrays, groups and attributes, and the units they hold.

Declared once here so that the writer (featurize), the readers (loader, report) and
the tests agree on the on-disk format. Imports nothing.
"""

FORMAT_VERSION = 1
# A store with 16-bit AEVs (ATTR_AEV_DTYPE) is version 2, so that aevpipe from
# before 16-bit stores refuses it instead of reading its bits as float32.
FORMAT_VERSIONS = (1, 2)

HARTREE_TO_KCALMOL = 627.5094740631
HARTREE_TO_EV = 27.211386245988

# Root attributes of a store.
ATTR_FORMAT_VERSION = "format_version"
ATTR_AEV_PARAMS = "aev_params"
ATTR_ELEMENTS = "elements"
ATTR_TORCHANI_VERSION = "torchani_version"
ATTR_SOURCES = "sources"  # [{path, name, sha256, size}]
ATTR_SPLIT = "split"  # {fractions, seed, by}
ATTR_MOLECULES = "molecules"  # [{file, group, formula}]
ATTR_PLAN = "plan"  # fingerprint of the work plan, to resume safely
ATTR_LAYOUT = "layout"  # per group: conformations and rows per element, per split
ATTR_CHUNK_ROWS = "chunk_rows"  # rows per chunk of the AEV arrays
# How AEV values are stored: float32 (when absent), float16, or bfloat16 (its 16
# bits as uint16). Readers always return float32.
ATTR_AEV_DTYPE = "aev_dtype"

MANIFEST = "manifest.json"  # written last: a store without it is incomplete
PROGRESS_DIR = ".progress"  # marker files of finished work units
LOCKS_DIR = ".locks"  # chunk locks for concurrent writers

# Per-conformation arrays of an atom-count group n{A:03d}; C conformations.
ENERGY = "energy"  # (C,) float64 Hartree
SPECIES = "species"  # (C, A) int8 index into the element order, source atom order
MOLECULE = "molecule"  # (C,) int32 index into the molecules attribute
INDEX = "index"  # (C,) int32 conformation index inside its source group
SPLIT = "split"  # (C,) int8, see SPLIT_CODES

# Per-element arrays, under n{A:03d}/{element}/; R rows, one per atom of that element.
AEV = "aev"  # (R, aev_length) float32, or 16 bits a value: see ATTR_AEV_DTYPE
CONFORMATION = "conformation"  # (R,) int32 row -> conformation in this group

SPLIT_NAMES = ("train", "valid", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLIT_NAMES)}


def group_name(n_atoms: int) -> str:
    """Name of the group holding conformations of `n_atoms` atoms."""
    return f"n{n_atoms:03d}"


def array_path(n_atoms: int, name: str, element: str | None = None) -> str:
    """Path in the store of array `name` of the `n_atoms` group, under `element` for
    the per-element arrays: "n005/energy", "n005/H/aev"."""
    return "/".join(filter(None, (group_name(n_atoms), element, name)))
