"""The shipped default teacher and student: hash-checked loading and their recorded accuracy."""

from pathlib import Path

import pytest

from torchslim import data, zoo
from torchslim.core.errors import CheckpointError, UnknownNameError
from torchslim.models.checkpoint import read_meta
from torchslim.train import evaluate

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("name", zoo.list())
def test_shipped_model_loads_with_its_recorded_hash(name):
    model, meta = zoo.load(name)
    assert meta["sha256"] == zoo.ZOO.get(name)
    assert (zoo.path(name) / "MODEL_CARD.md").is_file()
    assert meta["history"]["test"]["accuracy"] > 85


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    import shutil

    name = "fashion-mnist-student"
    copy = tmp_path / name
    shutil.copytree(zoo.path(name), copy)
    raw = bytearray((copy / "model.safetensors").read_bytes())
    raw[-1] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(raw))
    monkeypatch.setattr(zoo, "ROOT", tmp_path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        zoo.load(name)


def test_unknown_shipped_name():
    with pytest.raises(UnknownNameError, match="fashion-mnist-teacher"):
        zoo.load("fashion-mnist-teachr")


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN.is_dir() and not data.fashion_mnist.cache_dir().is_dir(),
                    reason="Fashion-MNIST files not installed")
@pytest.mark.parametrize("name", zoo.list())
def test_shipped_accuracy_reproduces_on_the_whole_test_set(name):
    model, meta = zoo.load(name)
    bundle = data.load("fashion-mnist", download=False)
    measured = evaluate(model, bundle.test)
    assert measured["n"] == 10000
    assert measured["accuracy"] == pytest.approx(read_meta(zoo.path(name))["history"]["test"]["accuracy"], abs=1e-6)
