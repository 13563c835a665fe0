"""Shared fixtures: tiny Fashion-MNIST-shaped IDX files and an environment that hides the real data;
one torch thread, tiny models and data; the bad-input suite's sandbox."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from torchslim import data, models
from torchslim.cli import main
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


# -- tiny models and data shared by the unit tests ------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test, restored afterwards: timings and kernel choices stay
    comparable on a shared machine, and a test never competes with itself for cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_IMAGES = {"num_classes": 4, "shape": (1, 8, 8), "train_size": 32, "val_size": 0, "test_size": 40,
               "eval_batch_size": 16}


@pytest.fixture(scope="session")
def tiny_images() -> Callable[..., data.DataBundle]:
    """``tiny_images(**overrides)``: a fresh synthetic bundle, by default 4 classes of 1x8x8 images,
    32 to train on and 40 to test; a keyword replaces one ``data.load("synthetic", ...)`` argument."""

    def make(**overrides: Any) -> data.DataBundle:
        return data.load("synthetic", **{**TINY_IMAGES, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_cnn() -> Callable[..., nn.Module]:
    """``tiny_cnn(num_classes=4, in_channels=1, seed=0)``: a fresh ``cnn-tiny``, its weights drawn
    from ``seed`` (the same numbers on every call)."""

    def make(num_classes: int = 4, in_channels: int = 1, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return models.create("cnn-tiny", num_classes=num_classes, in_channels=in_channels)

    return make


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_scripts(monkeypatch) -> Iterator[None]:
    """The scripts in ``benchmarks/`` importable as modules (they import their sibling ``_common``),
    and torch's thread count put back afterwards, whatever a script set."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


# -- the bad-input suite (tests/bad_input/) ---------------------------------------------------------
# Every input torchslim accepts, given wrong, by front end. Each case asserts the exit code (CLI: 2)
# or the torchslim error type (API), that the message names the bad value, and that nothing appeared
# outside the output directory. ``sandbox`` gives each case a working directory of its own and the
# check for the last part.


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@dataclass
class Sandbox:
    """A test's folder: ``inputs`` for what the case writes first, ``out`` for the run's output."""

    root: Path
    capsys: pytest.CaptureFixture

    @property
    def inputs(self) -> Path:
        path = self.root / "inputs"
        path.mkdir(exist_ok=True)
        return path

    @property
    def out(self) -> Path:
        return self.root / "out"

    def cli(self, *argv: str, allowed: Iterable[Path] = ()) -> tuple[int, str, str]:
        """Runs ``torchslim ARGV`` in-process; checks that nothing appeared outside ``out``.

        ``allowed`` names other paths the command may legitimately create (none, usually).
        Returns ``(exit code, stdout, stderr)``; argparse's SystemExit becomes its code.
        """
        before = _files(self.root)
        self.capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self.capsys.readouterr()
        self.assert_nothing_outside(before, allowed)
        return code, captured.out, captured.err

    def call(self, fn: Callable[[], object], error: type[BaseException],
             allowed: Iterable[Path] = ()) -> BaseException:
        """Calls ``fn`` expecting ``error``; checks nothing appeared outside ``out``; returns it."""
        before = _files(self.root)
        with pytest.raises(error) as info:
            fn()
        self.assert_nothing_outside(before, allowed)
        return info.value

    def assert_nothing_outside(self, before: set[Path], allowed: Iterable[Path] = ()) -> None:
        keep = [self.out, *map(Path, allowed)]
        new = [p for p in _files(self.root) - before
               if not any(p == k or k in p.parents for k in keep)]
        assert not new, f"files appeared outside the output directory: {sorted(map(str, new))}"


@pytest.fixture
def sandbox(tmp_path, capsys, monkeypatch) -> Sandbox:
    """A fresh folder as the working directory (relative paths land inside it)."""
    root = tmp_path / "case"
    root.mkdir()
    monkeypatch.chdir(root)
    return Sandbox(root, capsys)


def _expect_exit_2(result: tuple[int, str, str], *needles: str) -> str:
    """The CLI exited 2 with one clear message (no traceback) that contains every needle."""
    code, out, err = result
    text = out + err
    assert code == 2, f"exit {code}, expected 2; output:\n{text}"
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in:\n{text}"
    return text


def _expect_message(exc: BaseException, *needles: str) -> str:
    text = str(exc)
    for needle in needles:
        assert needle.lower() in text.lower(), f"{needle!r} not in: {text}"
    return text


Sandbox.expect_exit_2 = staticmethod(_expect_exit_2)
Sandbox.expect_message = staticmethod(_expect_message)


@pytest.fixture(autouse=True)
def _fresh_teacher_caches() -> Iterator[None]:
    """Every test starts without the in-memory teacher caches an earlier test left in the process."""
    yield
    cache = sys.modules.get("torchslim.distill.cache")
    if cache is not None:
        cache.forget_shared()
