"""Tests of training._save_debug: the debug images of labelled replay, written atomically."""
import builtins
import errno
import os

import numpy as np
from PIL import Image
import pytest

import data_loader
import training


def _sample(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (12, 10), dtype=np.uint8)
    label[0, 0] = data_loader.VOID
    return image, label


class _FullDiskFile:
    """A file on a full disk: writes land in the user-space buffer; flushing it (flush, close) fails with
    ENOSPC, as a buffered file's does, and nothing reaches the disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        return len(data)

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        self._f.close()
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _fill_disk(monkeypatch, folder):
    """Every file opened for writing under `folder` is on a full disk (the temporaries' locks excepted)."""
    real_open = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if ("w" in mode or "+" in mode) and "b" in mode and os.fspath(file).startswith(os.fspath(folder)):
            return _FullDiskFile(f)
        return f

    monkeypatch.setattr(builtins, "open", full_disk_open)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


def test_debug_images_written(tmp_path):
    image, label = _sample()
    training._save_debug(str(tmp_path), 20, image, label)
    assert _files(tmp_path) == ["images/20.jpg", "labels/20.png", "rgb_labels/20.png"]
    with Image.open(tmp_path / "images" / "20.jpg") as im:
        assert im.format == "JPEG" and im.size == (10, 12)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "labels" / "20.png")), label)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rgb_labels" / "20.png")), data_loader.colorize(label))


def test_full_disk_leaves_no_file_and_names_it(tmp_path, monkeypatch):
    """Formerly: "[Errno 28] No space left on device" naming no file, and a 0-byte 0.jpg left behind."""
    image, label = _sample()
    training._save_debug(str(tmp_path), 0, image, label)  # an earlier run's complete images
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    _fill_disk(monkeypatch, tmp_path)
    with pytest.raises(OSError, match=r"No space left on device.*images/20\.jpg") as error:
        training._save_debug(str(tmp_path), 20, *_sample(1))
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "images" / "20.jpg")
    with pytest.raises(OSError, match=r"No space left on device.*images/0\.jpg"):
        training._save_debug(str(tmp_path), 0, *_sample(1))  # rewriting one: the old file stays whole
    monkeypatch.undo()
    assert _files(tmp_path) == sorted(before)  # no new, half-written or temporary file
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
