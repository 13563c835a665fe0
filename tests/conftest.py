"""Shared fixtures: tiny Fashion-MNIST-shaped IDX files and an environment that hides the real data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from torchslim.data import fashion_mnist as fm
from torchslim.data.idx import write_idx

N_TRAIN, N_TEST = 40, 20
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def tiny_fmnist_arrays(n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images with labels cycling through 0..9.

    Pixel (0, 0) of training image i is i, so a test can tell which images ended up in which split.
    """
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(n_train, dtype=np.uint8)
    return {
        "train-images-idx3-ubyte": train,
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }


@pytest.fixture
def fmnist_arrays() -> dict[str, np.ndarray]:
    return tiny_fmnist_arrays()


@pytest.fixture
def write_fmnist(fmnist_arrays) -> Callable[..., Path]:
    """``write(directory, compress=False, **replacements)``: the four IDX files in ``directory``.

    A keyword replaces one file's array (``labels=...`` is short for the training labels).
    """

    def write(directory: Path, compress: bool = False, **replacements: np.ndarray) -> Path:
        aliases = {"labels": "train-labels-idx1-ubyte", "images": "train-images-idx3-ubyte"}
        arrays = dict(fmnist_arrays)
        for key, array in replacements.items():
            arrays[aliases.get(key, key)] = array
        directory.mkdir(parents=True, exist_ok=True)
        for stem, array in arrays.items():
            write_idx(directory / (stem + (".gz" if compress else "")), array, compress=compress)
        return directory

    return write


@dataclass
class Places:
    """The directories the loader searches, all inside a test's tmp dir."""

    env: Path  # $TORCHSLIM_DATA/fashion-mnist
    system: Path  # stands in for /usr/share/datasets/fashion-mnist
    cache: Path  # $XDG_CACHE_HOME/torchslim/fashion-mnist


@pytest.fixture
def places(tmp_path, monkeypatch) -> Places:
    """Point every search location into ``tmp_path`` so the machine's own data never leaks in."""
    data_root, cache_home, home = tmp_path / "env", tmp_path / "xdg-cache", tmp_path / "home"
    monkeypatch.setenv("TORCHSLIM_DATA", str(data_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setenv("HOME", str(home))
    system = tmp_path / "system"
    original = fm.search_paths

    def search_paths(root=None):
        paths = original(root)
        assert DEBIAN_DIR in paths, f"the loader no longer looks in {DEBIAN_DIR}; update this fixture"
        return [system if p == DEBIAN_DIR else p for p in paths]

    monkeypatch.setattr(fm, "search_paths", search_paths)
    return Places(env=data_root / "fashion-mnist", system=system,
                  cache=cache_home / "torchslim" / "fashion-mnist")
