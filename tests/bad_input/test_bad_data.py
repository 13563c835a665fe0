"""Bad data: NaN/Inf samples, loaders that cannot be read reproducibly, labels and shapes that do not
fit, data locations that do not hold the files, models that do not fit the data. Each is refused
before work with the split, sample, path or sizes named (API), and with exit 2 (CLI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import torchslim as ts
from torchslim.core.errors import DataNotFoundError, TorchSlimError
from torchslim.data import fashion_mnist as fm
from torchslim.data import wordnet as wn
from torchslim.data.idx import write_idx
from torchslim.quantize.calibration import CalibrationError

SYNTH = {"num_classes": 4, "shape": [1, 16, 16], "train_size": 32, "val_size": 0, "test_size": 16}


def images(n: int = 20, c: int = 1, bad: tuple[int, float] | None = None) -> torch.Tensor:
    x = torch.randn(n, c, 8, 8, generator=torch.Generator().manual_seed(0))
    if bad is not None:
        x[bad[0], 0, 3, 3] = bad[1]
    return x


def labels(n: int = 20, k: int = 4) -> torch.Tensor:
    return torch.arange(n) % k


def loader(x: torch.Tensor, y: torch.Tensor, **kwargs) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=4, **kwargs)


class UnseededLoader:
    """A loader without a map-style dataset whose order comes from an unseeded RandomSampler."""

    def __init__(self) -> None:
        self.x, self.y = images(), labels()
        self.sampler = RandomSampler(range(20))

    def __iter__(self):
        order = list(self.sampler)
        for i in range(0, 20, 4):
            yield self.x[order[i:i + 4]], self.y[order[i:i + 4]]


GOOD = loader(images(), labels())

# --- from_loaders: API only (no CLI reads user loaders) -------------------------------------------

FROM_LOADERS = [
    ("nan-train", lambda: ts.data.from_loaders(loader(images(bad=(5, float("nan"))), labels()), GOOD),
     ["train split", "NaN or Inf", "sample 5"]),
    ("inf-test", lambda: ts.data.from_loaders(GOOD, loader(images(bad=(7, float("inf"))), labels())),
     ["test split", "sample 7"]),
    ("nan-val-shuffled", lambda: ts.data.from_loaders(GOOD, GOOD, val=loader(images(bad=(11, float("nan"))), labels(),
                                                                             shuffle=True)),
     ["val split", "sample 11", "index order"]),
    ("unseeded-sampler", lambda: ts.data.from_loaders(UnseededLoader(), GOOD),
     ["train loader", "RandomSampler", "shuffle=False", "manual_seed"]),
    ("float-labels", lambda: ts.data.from_loaders(loader(images(), labels().float()), GOOD),
     ["train loader", "labels", "float32", "integer class indices"]),
    ("negative-label", lambda: ts.data.from_loaders(GOOD, loader(images(), labels() - 1)),
     ["test split", "label -1", "start at 0"]),
    ("flat-images", lambda: ts.data.from_loaders([(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))], GOOD),
     ["train loader", "(4, 64)", "(N, C, H, W)"]),
    ("not-a-pair", lambda: ts.data.from_loaders([torch.zeros(4, 1, 8, 8)], GOOD), ["train loader", "Tensor",
                                                                                   "(inputs, labels)"]),
    ("empty", lambda: ts.data.from_loaders([], GOOD), ["train loader yielded no batches"]),
    ("split-shapes", lambda: ts.data.from_loaders(GOOD, loader(images(c=3), labels())), ["shapes differ", "(3, 8, 8)"]),
    ("label-over-num-classes", lambda: ts.data.from_loaders(GOOD, GOOD, num_classes=3), ["label 3", "num_classes=3"]),
    ("smaller-than-a-batch", lambda: ts.data.from_loaders(GOOD, GOOD, batch_size=64), ["20 samples", "batch of 64"]),
    ("batch-size-zero", lambda: ts.data.from_loaders(GOOD, GOOD, batch_size=-1), ["batch_size", "-1"]),
]


@pytest.mark.parametrize(("make", "needles"), [c[1:] for c in FROM_LOADERS], ids=[c[0] for c in FROM_LOADERS])
def test_from_loaders_refuses(sandbox, make, needles):
    sandbox.expect_message(sandbox.call(make, TorchSlimError), *needles)


# --- data locations: given and incomplete is refused, never replaced by the system copy -----------


def _write_fmnist(directory, skip: str | None = None):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(10) % 10).astype(np.uint8)}
    for stem, array in arrays.items():
        if stem != skip:
            write_idx(directory / stem, array)
    return directory


LOCATIONS = [
    ("root-missing", lambda s: s.inputs / "nowhere", None, ["nowhere", "does not exist", "root="]),
    ("root-empty", lambda s: (s.inputs / "empty").mkdir() or s.inputs / "empty", None,
     ["empty", "train-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]"]),
    ("root-incomplete", lambda s: _write_fmnist(s.inputs / "part", skip="t10k-labels-idx1-ubyte"), None,
     ["part", "lacks t10k-labels-idx1-ubyte[.gz]"]),
    ("env-empty", lambda s: s.inputs / "env", "env", ["$TORCHSLIM_DATA", "env/fashion-mnist", "does not exist"]),
]


def _location(sandbox, monkeypatch, make, env):
    monkeypatch.delenv("TORCHSLIM_DATA", raising=False)
    path = make(sandbox)
    if env:
        path.mkdir(exist_ok=True)
        monkeypatch.setenv("TORCHSLIM_DATA", str(path))
        return None
    return path


@pytest.mark.parametrize(("make", "env", "needles"), [c[1:] for c in LOCATIONS], ids=[c[0] for c in LOCATIONS])
def test_fashion_mnist_location_api(sandbox, monkeypatch, make, env, needles):
    root = _location(sandbox, monkeypatch, make, env)
    exc = sandbox.call(lambda: ts.data.load("fashion-mnist", root=root, download=False), DataNotFoundError)
    sandbox.expect_message(exc, *needles)


@pytest.mark.parametrize(("make", "env", "needles"), [c[1:] for c in LOCATIONS], ids=[c[0] for c in LOCATIONS])
def test_fashion_mnist_location_cli(sandbox, monkeypatch, make, env, needles):
    root = _location(sandbox, monkeypatch, make, env)
    argv = ["train", "--model", "cnn-tiny", "--data", "fashion-mnist", "--epochs", "1", "--out", sandbox.out, "--quiet"]
    sandbox.expect_exit_2(sandbox.cli(*argv, *(["--data-root", root] if root else [])), *needles)


def test_wordnet_root_incomplete(sandbox):
    (sandbox.inputs / "wn").mkdir()
    (sandbox.inputs / "wn" / "data.noun").write_text("")
    exc = sandbox.call(lambda: wn.locate(sandbox.inputs / "wn"), DataNotFoundError)
    sandbox.expect_message(exc, "wn", "data.verb", "wordnet-base")


def test_eval_data_root_for_a_dataset_without_files(sandbox):
    ckpt = ts.save_model(ts.models.create("cnn-tiny", num_classes=4), sandbox.inputs / "c",
                         {"data": {"name": "synthetic", "kwargs": SYNTH}})
    sandbox.expect_exit_2(sandbox.cli("eval", ckpt, "--data-root", sandbox.inputs, "--batch-sizes", "1"),
                          "--data-root", "'synthetic'", "reads no files", "fashion-mnist")


def test_fashion_mnist_search_never_lists_the_system_copy_for_a_given_root(sandbox):
    root = sandbox.inputs / "x"
    exc = sandbox.call(lambda: fm.locate(root, download=False), DataNotFoundError)
    assert "/usr/share/datasets" not in str(exc).split("installs them in")[0]


# --- models that do not fit the data ---------------------------------------------------------------


def _bundle(classes: int = 4, channels: int = 1, nan: bool = False):
    bundle = ts.data.load("synthetic", batch_size=8, num_classes=classes, shape=(channels, 16, 16), train_size=32,
                          val_size=0, test_size=16)
    if nan:
        bundle.train.dataset.images[9, 0, 0, 0] = float("nan")
    return bundle


def _cnn(classes: int, channels: int = 1) -> nn.Module:
    return ts.models.create("cnn-tiny", num_classes=classes, in_channels=channels)


MISFITS = [
    ("fit-channels", lambda: ts.fit(_cnn(4, 3), _bundle(), 1, progress=False), ["fit", "3 input channel", "has 1"]),
    ("fit-classes", lambda: ts.fit(_cnn(10), _bundle(), 1, progress=False), ["fit", "10 outputs", "4 classes"]),
    ("measure-channels", lambda: ts.measure(_cnn(4, 3), _bundle().test, batch_sizes=[1]),
     ["measure", "3 input channel", "has 1"]),
    ("measure-classes", lambda: ts.measure(_cnn(10), _bundle().test, batch_sizes=[1], num_classes=4),
     ["measure", "10 outputs", "4 classes"]),
    ("evaluate-fewer-outputs", lambda: ts.evaluate(_cnn(3), _bundle().test), ["3 outputs", "label 3"]),
    ("evaluate-nan", lambda: ts.evaluate(_cnn(4), [(images(bad=(2, float("nan")))[:4], labels(4))]),
     ["batch 0", "NaN or Inf", "sample 2"]),
    ("fit-nan-bundle", lambda: __import__("torchslim.data.custom", fromlist=["x"]).check_finite(_bundle(nan=True)),
     ["train split", "sample 9"]),
    ("calibration-nan", None, ["Calibration batch 1", "NaN or Inf", "sample 3"]),
]


def _calibrate_nan(out):
    x = images(16, bad=(7, float("nan")))
    return ts.quantize.static_int8(_cnn(4), loader(x, labels(16)), out=out, calibration_batches=4)


@pytest.mark.parametrize(("make", "needles"), [c[1:] for c in MISFITS], ids=[c[0] for c in MISFITS])
def test_model_and_data_must_fit(sandbox, make, needles):
    error = TorchSlimError if make else CalibrationError
    make = make or (lambda: _calibrate_nan(sandbox.out))
    sandbox.expect_message(sandbox.call(make, error), *needles)


EVAL_MISFITS = [
    ("ten-on-four", lambda: _cnn(10), ["10 outputs", "4 classes"]),
    ("three-on-four", lambda: _cnn(3), ["3 outputs", "4 classes"]),
    ("three-channels-on-one", lambda: _cnn(4, 3), ["3 input channel", "has 1"]),
]


@pytest.mark.parametrize(("make", "needles"), [c[1:] for c in EVAL_MISFITS], ids=[c[0] for c in EVAL_MISFITS])
def test_eval_refuses_a_model_that_does_not_fit_its_data(sandbox, make, needles):
    ckpt = ts.save_model(make(), sandbox.inputs / "c", {"data": {"name": "synthetic", "kwargs": SYNTH}})
    sandbox.expect_exit_2(sandbox.cli("eval", ckpt, "--batch-sizes", "1"), *needles)


def test_compare_recipe_data_root_without_the_files(sandbox, monkeypatch):
    monkeypatch.delenv("TORCHSLIM_DATA", raising=False)
    root = sandbox.inputs / "fm"
    _write_fmnist(root, skip="train-images-idx3-ubyte")
    recipe = sandbox.inputs / "r.yaml"
    recipe.write_text(f"version: 1\nname: r\nteacher: fashion-mnist-student\ndata: {{name: fashion-mnist, root: {root}}}\n"
                      "strategies:\n  t: [load]\n")
    sandbox.expect_exit_2(sandbox.cli("compare", recipe, "--out", sandbox.out, "--quiet"),
                          str(root), "lacks train-images-idx3-ubyte[.gz]")
