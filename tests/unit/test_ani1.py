"""The HDF5 reader: both layouts, and one clear error per kind of bad input."""

import h5py
import numpy as np
import pytest

from aevpipe.ani1 import ANI1File
from aevpipe.errors import InputError


def test_release_layout(release_file):
    with ANI1File(release_file) as f:
        mols = f.molecules()
        assert [m.formula for m in mols] == ["CH4", "H3N", "H2O", "CH4O"]
        assert [m.n_conformations for m in mols] == [120, 90, 60, 75]
        block = f.read(mols[0].group, 10, 20)
    assert block.coordinates.shape == (10, 5, 3)
    assert block.coordinates.dtype == np.float32
    assert block.symbols.shape == (10, 5) and block.symbols[0, 0] == "C"


def test_flat_layout(flat_file):
    with ANI1File(flat_file) as f:
        mols = f.molecules()
        assert sorted(m.formula for m in mols) == ["CH4", "CHN", "H2O"]
        block = f.read("/CH4", 0, 5)
    assert sorted(block.symbols[0]) == ["C", "H", "H", "H", "H"]
    assert not (block.symbols == block.symbols[0]).all()  # per-conformation order


def test_scan_order_and_what_counts_as_a_molecule_group(tmp_path):
    """Depth first, members in natural name order (mol-2 before mol-10); a group
    with any of the three datasets is a molecule group and is not looked into
    (a missing one is its error); other groups are looked into, soft links
    followed; other datasets are ignored. Species as fixed or variable-length
    strings, or atomic numbers, read alike."""
    path = tmp_path / "layout.h5"
    coords = np.zeros((2, 2, 3), "f4")
    coords[:, 1, 0] = 1.0

    def molecule(g, species=(b"H", b"H")):
        g.create_dataset("coordinates", data=coords)
        g.create_dataset("energies", data=np.zeros(2))
        g.create_dataset("species", data=species)

    with h5py.File(path, "w") as f:
        f.create_dataset("notes", data=np.arange(3))
        for name in ("mol-10", "mol-2", "mol-1"):
            molecule(f.create_group(f"set/{name}"))
        molecule(f.create_group("set/mol-2/inner"))  # inside a molecule group
        f["set/mol-2"].create_dataset("smiles", data=b"[H][H]")
        molecule(
            f.create_group("a/vlen"),
            np.array(["H", "H"], dtype=h5py.string_dtype()),
        )
        molecule(f.create_group("a/numbers"), np.array([[1, 1], [1, 1]]))
        f.create_group("a/empty")
        f["b"] = h5py.SoftLink("/set/mol-1")
        part = f.create_group("c/part")
        part.create_dataset("coordinates", data=coords)
    with ANI1File(path) as f:
        found = list(f.scan())
    assert [name for name, _ in found] == [
        "/a/numbers",
        "/a/vlen",
        "/b",
        "/c/part",
        "/set/mol-1",
        "/set/mol-2",
        "/set/mol-10",
    ]
    infos = dict(found)
    assert isinstance(infos["/c/part"], InputError)
    assert "missing dataset(s) ['energies', 'species']" in str(infos["/c/part"])
    for name in ("/a/numbers", "/a/vlen", "/b", "/set/mol-2"):
        assert infos[name].formula == "H2" and infos[name].symbols == ("H", "H")


def test_rows_read_as_numpy_slices_them(tmp_path):
    """Low-level reads: the file's types converted as NumPy converts (float64
    coordinates to float32, overflow to infinity, so the finite check sees it),
    slices past the end clipped, a compressed and chunked dataset."""
    path = tmp_path / "rows.h5"
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(50, 4, 3)) * 3
    coords[7, 1, 2] = 1e300
    with h5py.File(path, "w") as h:
        g = h.create_group("m")
        g.create_dataset(
            "coordinates", data=coords, chunks=(8, 2, 3), compression="gzip"
        )
        g.create_dataset("energies", data=rng.normal(size=50).astype(np.float32))
        g.create_dataset("species", data=np.array([b"C", b"H", b"H", b"O"]))
    with ANI1File(path) as f, h5py.File(path, "r") as h:
        for start, stop in ((0, 50), (5, 13), (45, 80), (60, 70)):
            block = f.read("/m", start, stop)
            expected = np.asarray(h["m/coordinates"][start:stop], dtype=np.float32)
            assert np.array_equal(block.coordinates, expected)
            assert block.coordinates.dtype == np.float32
            energies = np.asarray(h["m/energies"][start:stop], dtype=np.float64)
            assert np.array_equal(block.energies, energies)
            assert block.energies.dtype == np.float64
        assert np.isinf(f.read("/m", 7, 8).coordinates[0, 1, 2])
        with pytest.raises(InputError, match="coordinates has NaN or infinite.*7"):
            f.read("/m", 0, 50, check_finite=True)


def test_pickle_drops_handle(release_file):
    import pickle

    with ANI1File(release_file) as f:
        f.molecules()
        clone = pickle.loads(pickle.dumps(f))
    assert clone._h5 is None and len(clone.molecules()) == 4


def _corrupt(path, edit):
    with h5py.File(path, "a") as f:
        edit(f["gdb11_s01/gdb11_s01-1"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda g: g.__delitem__("energies"), "missing dataset"),
        (
            lambda g: (
                g.__delitem__("energies"),
                g.create_dataset("energies", data=np.zeros(3)),
            ),
            "disagrees",
        ),
        (
            lambda g: (
                g.__delitem__("species"),
                g.create_dataset("species", data=np.array([b"X", b"H", b"H", b"H"])),
            ),
            "unknown element",
        ),
        (
            lambda g: (
                g.__delitem__("coordinates"),
                g.__delitem__("energies"),
                g.create_dataset("coordinates", data=np.zeros((0, 4, 3), "f4")),
                g.create_dataset("energies", data=np.zeros(0)),
            ),
            "empty group",
        ),
    ],
)
def test_bad_groups_name_file_and_group(release_file, edit, message):
    _corrupt(release_file, edit)
    with pytest.raises(InputError, match=message) as info:
        ANI1File(release_file).molecules()
    assert info.value.group == "/gdb11_s01/gdb11_s01-1"
    assert str(release_file) in str(info.value)


def test_nan_values(release_file):
    def poison(g):
        g["coordinates"][7, 1, 2] = np.nan

    _corrupt(release_file, poison)
    f = ANI1File(release_file)
    with pytest.raises(InputError, match="NaN or infinite.*conformation 7"):
        f.check_finite("/gdb11_s01/gdb11_s01-1", block_size=4)
    with pytest.raises(InputError, match="coordinates has NaN.*conformation 7"):
        f.read("/gdb11_s01/gdb11_s01-1", 5, 9, check_finite=True)
    f.read("/gdb11_s01/gdb11_s01-1", 5, 9)  # unchecked: the caller's choice
    f.read("/gdb11_s01/gdb11_s01-1", 8, 20, check_finite=True)


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        ANI1File(tmp_path / "none.h5").molecules()
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file"):
        ANI1File(text).molecules()
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(InputError, match="no molecule groups"):
        ANI1File(empty).molecules()


def test_species_indices_of_broadcast_and_full_rows_agree():
    from aevpipe.units import species_indices

    elements = ("H", "C", "N", "O")
    row = np.array(["C", "H", "O", "H"])
    full = np.array([row, row[::-1], row])
    broadcast = np.broadcast_to(row, (3, 4))
    np.testing.assert_array_equal(
        species_indices(broadcast, elements, "f", "g"),
        species_indices(np.ascontiguousarray(broadcast), elements, "f", "g"),
    )
    assert species_indices(full, elements, "f", "g")[1].tolist() == [0, 3, 0, 1]
    with pytest.raises(InputError, match="f:g 7: .*'X'"):
        species_indices(
            np.broadcast_to(np.array(["C", "X"]), (2, 2)),
            elements,
            "f",
            "g",
            np.array([7, 8]),
        )


def test_a_group_name_that_is_not_utf8_is_one_error(tmp_path):
    """Named in the error (as Latin-1), never a KeyError later."""
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as f:
        bad = h5py.h5g.create(f.id, b"caf\xe9")
        good = f.create_group("ok")
        for group in (h5py.Group(bad), good):
            group["coordinates"] = np.zeros((2, 1, 3), np.float32)
            group["energies"] = np.zeros(2)
            group["species"] = np.array([b"H"])
    with ANI1File(path) as f:
        found = dict(f.scan())
    assert isinstance(found["/caf\xe9"], InputError)
    assert "group name is not UTF-8" in str(found["/caf\xe9"])
    assert found["/ok"].formula == "H"
