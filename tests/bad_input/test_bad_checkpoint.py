"""Bad model checkpoints: a malformed model.json, missing or damaged weights, a model torchslim cannot
rebuild alone. Each is a CheckpointError naming the file and the key (API) and exit 2 (``eval``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import torchslim as ts
from torchslim.core.errors import CheckpointError
from torchslim.core.tensors import sha256_file

DATA = {"name": "synthetic", "kwargs": {"num_classes": 4, "shape": [1, 16, 16], "train_size": 32, "val_size": 0,
                                        "test_size": 16}}


def _saved(directory: Path) -> Path:
    torch.manual_seed(0)
    return ts.save_model(ts.models.create("cnn-tiny", num_classes=4, in_channels=1), directory, {"data": DATA})


def _edit_json(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        result = change(meta)
        (d / "model.json").write_text(json.dumps(meta if result is None else result))
    return apply


def _set(path: str, value: object) -> Callable[[Path], None]:
    keys = path.split(".")

    def change(meta: dict) -> None:
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return _edit_json(change)


def _drop(path: str) -> Callable[[Path], None]:
    keys = path.split(".")

    def change(meta: dict) -> None:
        target = meta
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return _edit_json(change)


def _raw(text: bytes) -> Callable[[Path], None]:
    return lambda d: (d / "model.json").write_bytes(text)


def _truncate(d: Path) -> None:
    weights = d / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _other_tensors(d: Path) -> None:
    other = d / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(other))
    _set("sha256", sha256_file(other))(d)


def _resaved(spec: dict | None) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
        ts.save_model(model, d, {"data": DATA}, spec=spec)
    return apply


# (id, how to damage the checkpoint, what the message must name)
CASES = [
    ("json-list", _raw(b"[1, 2]"), ["model.json", "top level", "list"]),
    ("json-string", _raw(b'"cnn-tiny"'), ["model.json", "top level", "str"]),
    ("not-json", _raw(b"{\"format\": 1,"), ["model.json", "not valid JSON"]),
    ("not-utf8", _raw(b"\xff\xfe\x00garbage"), ["model.json", "not valid JSON"]),
    ("num-classes-string", _set("model.num_classes", "10"), ["model.json", "model.num_classes", "'10'"]),
    ("num-classes-zero", _set("model.num_classes", 0), ["model.json", "model.num_classes", "positive integer"]),
    ("num-classes-bool", _set("model.num_classes", True), ["model.json", "model.num_classes"]),
    ("in-channels-missing", _drop("model.in_channels"), ["model.json", "model.in_channels", "None"]),
    ("unknown-family", _set("model.name", "cnn-tinyy"), ["model.json", "'model'", "cnn-tinyy", "cnn-tiny"]),
    ("model-is-list", _set("model", ["cnn-tiny"]), ["model.json", "'model'", "list"]),
    ("model-no-kind", _drop("model.name"), ["model.json", "'model'", "exactly one of"]),
    ("kwargs-list", _set("model.kwargs", [1]), ["model.json", "model.kwargs"]),
    ("kwargs-unknown", _set("model.kwargs", {"depthh": 3}), ["model.json", "depthh"]),
    ("sha-int", _set("sha256", 5), ["model.json", "sha256"]),
    ("steps-dict", _set("applied_steps", {"kind": "prune.channels"}), ["model.json", "applied_steps"]),
    ("steps-unknown-kind", _set("applied_steps", [{"kind": "prune.chanels"}]), ["prune.chanels"]),
    ("format-99", _set("format", 99), ["model.json", "format", "99"]),
    ("data-string", _set("data", "synthetic"), ["model.json", "'data'"]),
    ("weights-missing", lambda d: (d / "model.safetensors").unlink(), ["model.safetensors"]),
    ("weights-truncated", _truncate, ["model.safetensors", "SHA-256"]),
    ("weights-other-tensors", _other_tensors, ["model.safetensors", "missing", "unexpected"]),
    ("json-missing", lambda d: (d / "model.json").unlink(), ["model.json", "No model checkpoint"]),
    ("own-architecture", _resaved(None), ["model.json", "no model spec", "factory=NAME", "model=YourNet"]),
    ("factory-spec", _resaved({"factory": "mynet", "kwargs": {}}), ["model.json", "factory 'mynet'", "models="]),
    ("teacher-spec", _resaved({"teacher": "given"}), ["model.json", "teacher object", "teacher="]),
]


@pytest.mark.parametrize(("damage", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_load_model_names_the_file_and_key(sandbox, damage, needles):
    directory = _saved(sandbox.inputs / "ckpt")
    damage(directory)
    exc = sandbox.call(lambda: ts.load_model(directory), (CheckpointError, ts.TorchSlimError))
    sandbox.expect_message(exc, *needles)


@pytest.mark.parametrize(("damage", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_eval_exits_2_naming_the_file_and_key(sandbox, damage, needles):
    directory = _saved(sandbox.inputs / "ckpt")
    damage(directory)
    sandbox.expect_exit_2(sandbox.cli("eval", directory, "--batch-sizes", "1"), *needles)
