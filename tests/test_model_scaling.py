"""Compound scaling of the model families: ``depth`` beside ``width``, from the factory through
checkpoints to the recipe, the pipeline's fresh models and the command line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchslim import models
from torchslim.core.errors import TorchSlimError
from torchslim.distill.config import DistillConfig
from torchslim.models.checkpoint import load_model, save_model
from torchslim.options import OptionsError
from torchslim.options.fit import TrainConfig
from torchslim.pipeline import RecipeError, parse
from torchslim.pipeline.preflight import preflight
from torchslim.pipeline.runner import Context
from torchslim.pipeline.steps.training import start_model


def blocks(model: nn.Module) -> list[int]:
    return [len(model.layer1), len(model.layer2), len(model.layer3)]


def convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def recipe(*steps: dict):
    return parse({"name": "scaling", "data": {"name": "synthetic"},
                  "strategies": {"s": list(steps)}})


@pytest.mark.parametrize(("name", "depth", "expected"), [
    ("resnet20", 1.0, [3, 3, 3]),
    ("resnet20", 0.5, [2, 2, 2]),   # round(1.5) = 2
    ("resnet20", 0.3, [1, 1, 1]),   # round(0.9) = 1
    ("resnet20", 0.1, [1, 1, 1]),   # round(0.3) = 0, kept at one block
    ("resnet20", 2.0, [6, 6, 6]),
    ("resnet8", 3.0, [3, 3, 3]),
    ("resnet32", 0.5, [2, 2, 2]),   # round(2.5) = 2: Python's round halves to even
    ("resnet56", 1 / 3, [3, 3, 3]),
])
def test_resnet_depth_scales_blocks_per_stage(name, depth, expected):
    model = models.create(name, depth=depth)
    assert blocks(model) == expected
    assert len(convs(model)) == 1 + 2 * sum(expected) + 2  # stem, two per block, two projection shortcuts


@pytest.mark.parametrize(("depth", "layers", "strides"), [
    (1.0, 4, [1, 2, 1, 2]),
    (1.1, 4, [1, 2, 1, 2]),                    # round(0.4) = 0 extra layers
    (1.25, 5, [1, 1, 2, 1, 2]),                # one extra, after base layer 0
    (1.5, 6, [1, 1, 2, 1, 1, 2]),              # after base layers 0 and 1
    (2.0, 8, [1, 1, 2, 1, 1, 1, 2, 1]),        # one after each
    (2.5, 10, [1, 1, 1, 2, 1, 1, 1, 1, 2, 1]),  # extras 4 and 5 after base layers 0 and 1 again
])
def test_cnn_depth_adds_stride_one_layers_after_the_base_layers(depth, layers, strides):
    model = models.create("cnn-small", depth=depth)
    assert len(model.features) == layers and len(convs(model)) == layers
    assert [m.stride[0] for m in convs(model)] == strides
    assert [name for name, _ in model.features.named_children()] == [str(i) for i in range(layers)]
    # the extra layers keep the width of the base layer they follow; the two downsamplings stay
    assert [c.out_channels for c in convs(model)][-1] == 32 and sum(s == 2 for s in strides) == 2


def test_cnn_extra_layer_follows_its_base_layer_at_its_width():
    model = models.create("cnn-small", depth=2)
    widths = [(c.in_channels, c.out_channels) for c in convs(model)]
    assert widths == [(1, 16), (16, 16), (16, 24), (24, 24), (24, 32), (32, 32), (32, 32), (32, 32)]


def test_depth_one_is_the_family_itself():
    for name in ("resnet20", "cnn-small"):
        base, same = models.create(name), models.create(name, depth=1.0)
        assert {k: v.shape for k, v in base.state_dict().items()} == {k: v.shape for k, v in same.state_dict().items()}


@pytest.mark.parametrize("name", ["resnet20", "cnn-small", "cnn-tiny"])
def test_parameter_counts_grow_with_depth_and_width(name):
    def count(width: float, depth: float) -> int:
        return models.num_parameters(models.create(name, width=width, depth=depth))

    assert count(1, 1) < count(1, 1.5) < count(1, 2) < count(1, 3)
    assert count(0.5, 2) < count(1, 2) < count(2, 2)
    assert count(1, 2) < count(1.5, 2.5)  # compound: both at once
    if name == "resnet20":
        assert count(1, 0.5) < count(1, 1)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("resnet20", {"depth": 0.5}), ("resnet20", {"depth": 2.0, "width": 0.5}), ("resnet8", {"depth": 2.0}),
    ("cnn-small", {"depth": 2.0}), ("cnn-small", {"depth": 1.5, "width": 0.5}), ("cnn-tiny", {"depth": 3.0}),
])
def test_scaled_models_run_forward_and_backward(name, kwargs):
    torch.manual_seed(0)
    model = models.create(name, num_classes=7, **kwargs)
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(("name", "kwargs"), [
    ("resnet20", {"depth": 0.5}), ("cnn-small", {"depth": 1.5, "width": 0.5}),
])
def test_saved_scaled_model_reloads_with_the_same_outputs(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = models.create(name, num_classes=5, **kwargs)
    assert models.spec_of(model)["kwargs"] == kwargs
    model.train()
    model(torch.randn(8, 1, 28, 28))  # BatchNorm running statistics away from their defaults
    save_model(model, tmp_path)
    loaded, meta = load_model(tmp_path)  # rebuilt from the recorded spec alone
    assert meta["model"]["kwargs"] == kwargs
    x = torch.randn(2, 1, 28, 28)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    assert models.num_parameters(loaded) != models.num_parameters(models.create(name, num_classes=5))


@pytest.mark.parametrize("depth", [0, -1.0])
def test_resnet_refuses_a_non_positive_depth(depth):
    with pytest.raises(TorchSlimError, match=f"ResNet depth multiplier must be positive.*got {depth}"):
        models.create("resnet20", depth=depth)


@pytest.mark.parametrize("depth", [0.5, 0.99, 0, -1.0])
def test_cnn_refuses_a_depth_below_one(depth):
    with pytest.raises(TorchSlimError, match=f"depth multiplier must be at least 1, got {depth}.*no layer to drop"):
        models.create("cnn-small", depth=depth)


def test_mlp_has_no_depth_multiplier():
    with pytest.raises(TorchSlimError, match=r"Model 'mlp' does not accept \['depth'\].*'depth'"):
        models.create("mlp", depth=2.0)


@pytest.mark.parametrize("config", [TrainConfig, DistillConfig])
@pytest.mark.parametrize("depth", [0, -1])
def test_the_configs_refuse_a_non_positive_depth(config, depth):
    with pytest.raises(OptionsError, match=f"depth = {depth} is invalid: Input should be greater than 0"):
        config.build("options", {"epochs": 1, "depth": depth})
    with pytest.raises(RecipeError, match=f"distill.depth = {depth} is invalid"):
        recipe({"distill": {"student": "cnn-small", "depth": depth, "epochs": 1}})


def test_recipe_steps_take_depth_beside_width():
    (distill,) = (s.params for s in recipe({"distill": {"student": "cnn-small", "depth": 1.5, "width": 0.5,
                                                         "epochs": 1}}).strategies["s"])
    (train,) = (s.params for s in recipe({"train": {"model": "resnet20", "depth": 2, "epochs": 1}}).strategies["s"])
    assert isinstance(distill, DistillConfig) and (distill.student, distill.depth, distill.width) == \
        ("cnn-small", 1.5, 0.5)
    assert isinstance(train, TrainConfig) and (train.model, train.depth, train.width) == ("resnet20", 2, None)
    assert (DistillConfig(epochs=1).depth, TrainConfig(epochs=1).depth) == (None, None)


def test_start_model_builds_the_fresh_model_at_the_given_depth(tmp_path):
    ctx = Context(recipe=recipe("load"), out=tmp_path, progress=False, log=lambda _: None)
    model = start_model(ctx, "train", None, "model", "cnn-small", 0.5, 2.0, {})
    assert len(model.features) == 8 and models.spec_of(model)["kwargs"] == {"width": 0.5, "depth": 2.0}
    # the step's depth wins over one among model_kwargs; none leaves theirs
    assert len(start_model(ctx, "distill", None, "student", "cnn-small", None, 1.5, {"depth": 3.0}).features) == 6
    assert len(start_model(ctx, "distill", None, "student", "cnn-small", None, None, {"depth": 3.0}).features) == 12
    assert len(start_model(ctx, "train", None, "model", "cnn-small", None, None, {}).features) == 4


def test_preflight_checks_the_scaled_architecture(tmp_path):
    def check(*steps: dict) -> None:
        ctx = Context(recipe=recipe(*steps), out=tmp_path, progress=False, log=lambda _: None)
        preflight(ctx, ["s"])

    train = {"model": "cnn-small", "depth": 2.0, "epochs": 1}
    check({"train": train}, {"prune": {"ratio": 0.5, "ignore": ["features.7.0"]}})  # exists at depth 2 only
    with pytest.raises(RecipeError, match=r"features\.7\.0"):
        check({"train": {**train, "depth": 1.5}}, {"prune": {"ratio": 0.5, "ignore": ["features.7.0"]}})
    with pytest.raises(RecipeError, match=r"step 1 \(train\).*depth multiplier must be at least 1, got 0.5"):
        check({"train": {**train, "depth": 0.5}})


def test_cli_train_takes_depth(tmp_path, capsys):
    from torchslim.cli import main

    out = tmp_path / "run"
    code = main(["train", "--model", "cnn-tiny", "--depth", "1.5", "--width", "0.5", "--data", "synthetic",
                 "--epochs", "1", "--batch-size", "64", "--out", str(out), "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    loaded, meta = load_model(out)
    assert meta["model"]["kwargs"] == {"width": 0.5, "depth": 1.5} and len(loaded.features) == 6


def test_cli_distill_takes_depth_for_the_student(tmp_path, capsys):
    from torchslim.cli import main

    teacher, out = tmp_path / "teacher", tmp_path / "student"
    save_model(models.create("cnn-tiny", num_classes=4), teacher)  # untrained: synthetic data has 4 classes
    code = main(["distill", "--teachers", str(teacher), "--student", "resnet8", "--depth", "2", "--width", "0.25",
                 "--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--out", str(out), "--quiet",
                 "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    loaded, meta = load_model(out)
    assert meta["model"]["kwargs"] == {"width": 0.25, "depth": 2.0} and blocks(loaded) == [2, 2, 2]
