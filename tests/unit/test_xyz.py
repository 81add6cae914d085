"""The XYZ reader: frames in order, and one error naming the frame for bad ones."""

from __future__ import annotations

import pytest

from aevpipe.errors import InputError
from aevpipe.xyz import read_frames


def test_frames_in_order(tmp_path):
    path = tmp_path / "two.xyz"
    path.write_text("2\nfirst\nH 0 0 0\nH 0 0 0.74\n1\nsecond\nHe 0 0 0\n")
    frames = list(read_frames(path))
    assert [f.comment for f in frames] == ["first", "second"]
    assert frames[0].symbols == ["H", "H"] and frames[1].coordinates.shape == (1, 3)


@pytest.mark.parametrize(
    "text,message",
    [
        ("0\nnone\n", "atom count 0: must be at least 1"),
        ("-1\nnone\n", "atom count -1: must be at least 1"),
        ("two\nx\n", "expected an atom count"),
        ("2\nshort\nH 0 0 0\n", "atom line 2 of 2"),
        ("1\nnan\nH nan 0 0\n", "NaN or infinite"),
    ],
)
def test_bad_frames_are_one_error_naming_the_frame(tmp_path, text, message):
    path = tmp_path / "bad.xyz"
    path.write_text(text)
    with pytest.raises(InputError, match=f"bad.xyz:frame 0: .*{message}"):
        list(read_frames(path))


def test_atomic_numbers_read_as_symbols(tmp_path):
    path = tmp_path / "numbers.xyz"
    path.write_text("3\nwater, by number\n8 0 0 0\n1 0.96 0 0\n1 -0.24 0.93 0\n")
    (frame,) = read_frames(path)
    assert frame.symbols == ["O", "H", "H"] and frame.comment == "water, by number"
    path.write_text("1\nx\n200 0 0 0\n")
    with pytest.raises(InputError, match="unknown atomic number 200"):
        list(read_frames(path))
