"""Models: every registered model is swept through forward, backward and spec round trip."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from torchslim import models
from torchslim.core.errors import TorchSlimError
from torchslim.models.resnet import ResNet

NUM_CLASSES = 7  # not the default, so a model that ignores num_classes fails


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", models.list())
def test_every_model_forward_backward(name, in_channels):
    torch.manual_seed(0)
    model = models.create(name, num_classes=NUM_CLASSES, in_channels=in_channels)
    out = model(torch.randn(2, in_channels, 28, 28))
    assert out.shape == (2, NUM_CLASSES) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    assert any(p.grad.abs().sum() > 0 for p in params.values())
    count = models.num_parameters(model)
    assert count > 0 and count == sum(p.numel() for p in params.values())


@pytest.mark.parametrize("name", models.list())
def test_every_model_rebuilds_from_its_spec(name):
    model = models.create(name, num_classes=NUM_CLASSES, in_channels=3)
    spec = models.spec_of(model)
    assert spec == {"name": name, "num_classes": NUM_CLASSES, "in_channels": 3, "kwargs": {}}
    rebuilt = models.from_spec(json.loads(json.dumps(spec)))  # specs travel as JSON in checkpoints
    assert type(rebuilt) is type(model)
    assert shapes(rebuilt) == shapes(model)
    assert list(shapes(rebuilt)) == list(shapes(model))  # same order too
    assert models.spec_of(rebuilt) == spec


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("resnet20", {"width": 0.5}), ("cnn-small", {"width": 1.5}), ("mlp", {"hidden": (32, 16), "image_size": 8}),
     ("resnet20", {"depth": 0.5}), ("cnn-small", {"depth": 2.0, "width": 0.5})],
)
def test_spec_keeps_keyword_arguments(name, kwargs):
    model = models.create(name, num_classes=4, in_channels=2, **kwargs)
    rebuilt = models.from_spec(json.loads(json.dumps(models.spec_of(model))))
    assert shapes(rebuilt) == shapes(model)
    assert models.num_parameters(rebuilt) != models.num_parameters(models.create(name, 4, 2))


def test_spec_of_a_foreign_model_is_none():
    assert models.spec_of(nn.Linear(2, 2)) is None


def test_known_parameter_counts():
    assert 15_000 <= models.num_parameters(models.create("cnn-small")) <= 25_000
    assert models.num_parameters(models.create("cnn-tiny")) < 10_000
    assert models.num_parameters(models.create("resnet20", num_classes=10, in_channels=1)) == 272_186


def test_resnet_depths_grow():
    counts = [models.num_parameters(models.create(f"resnet{d}")) for d in (8, 14, 20, 32, 56)]
    assert counts == sorted(counts) and len(set(counts)) == 5


def test_width_multiplier_scales_resnet():
    half, one, double = (models.num_parameters(models.create("resnet20", width=w)) for w in (0.5, 1, 2))
    assert half < one < double
    assert 3.5 < double / one < 4.1  # convolutions dominate, and they grow with width squared
    model = models.create("resnet20", width=0.5)
    assert model.stem[0].out_channels == 8 and model.fc.in_features == 32


def test_width_multiplier_scales_cnn():
    assert models.create("cnn-small", width=2).fc.in_features == 64
    assert models.num_parameters(models.create("cnn-small", width=0.5)) < models.num_parameters(
        models.create("cnn-small")
    )


@pytest.mark.parametrize("name", ["resnet20", "cnn-small"])
@pytest.mark.parametrize("width", [0, -1.0])
def test_bad_width_is_rejected(name, width):
    with pytest.raises(TorchSlimError, match=f"width multiplier must be positive, got {width}"):
        models.create(name, width=width)


@pytest.mark.parametrize("depth", [7, 19, 2])
def test_bad_resnet_depth_is_rejected(depth):
    with pytest.raises(TorchSlimError, match=f"6n\\+2.*got {depth}"):
        ResNet(depth)


def test_unknown_keyword_is_named():
    with pytest.raises(TorchSlimError, match="bogus") as info:
        models.create("resnet20", bogus=1)
    assert "'resnet20'" in str(info.value)


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": 0}, {"num_classes": -2}])
def test_non_positive_sizes_are_rejected(kwargs):
    with pytest.raises(TorchSlimError, match="must be positive"):
        models.create("cnn-tiny", **kwargs)


@pytest.mark.parametrize("kwargs", [{"hidden": ()}, {"hidden": (8, 0)}, {"image_size": 0}])
def test_bad_mlp_arguments_are_rejected(kwargs):
    with pytest.raises(TorchSlimError, match="mlp needs"):
        models.create("mlp", **kwargs)


def test_resnet_module_paths_are_stable():
    names = dict(models.create("resnet20").named_modules())
    for path in ("stem", "layer1", "layer2.1", "layer3.2.conv2", "layer2.0.shortcut", "pool", "fc"):
        assert path in names
    assert isinstance(names["layer1.0.shortcut"], nn.Identity)  # same width, stride 1: no projection
