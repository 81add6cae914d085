"""The AEV shard store on disk (Zarr v2, format version 1): the only package that
imports Zarr. Its layout is documented for users in docs/FORMAT.md:

    <store>/                 root attrs: format version, AEV parameters, elements, ...
      n005/                  conformations of 5 atoms, ordered train | valid | test
        energy species molecule index split      (per conformation)
        H/aev H/conformation C/aev ...            (per element row)
      .progress/unit-*.json  finished work units (resume)
      .locks/                chunk locks of the writers
      manifest.json          counts, bytes, checksums: written last

`format` says which arrays a layout holds; `files` reads the root attributes and
writes whole files; `writer` creates a store and writes units into it; `manifest`
completes and verifies it; `reader` opens a complete one.
"""

from aevpipe.store.files import is_complete, read_attrs
from aevpipe.store.format import (
    ArraySpec,
    array_specs,
    chunk_shape,
    layout_from_attr,
    layout_to_attr,
    specs_of,
)
from aevpipe.store.manifest import array_checksum, finish, verify
from aevpipe.store.reader import ShardStore
from aevpipe.store.writer import StoreWriter, create, done_units, remove

__all__ = [
    "ArraySpec",
    "ShardStore",
    "StoreWriter",
    "array_checksum",
    "array_specs",
    "chunk_shape",
    "create",
    "done_units",
    "finish",
    "is_complete",
    "layout_from_attr",
    "layout_to_attr",
    "read_attrs",
    "remove",
    "specs_of",
    "verify",
]
