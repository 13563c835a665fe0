"""Taps on a module that runs several times per forward: a warning by default, every call on
request, or an error; never a silent last call."""

import warnings

import pytest
import torch
from torch import nn

from torchslim import models
from torchslim.core.errors import TorchSlimError
from torchslim.core.taps import Taps
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.distill.losses import Outputs

X = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))


class Shared(nn.Module):
    """One block applied twice (weight sharing), then a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block, self.head = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.relu(self.block(x))))


def calls_of_block(model: Shared, x: torch.Tensor) -> list[torch.Tensor]:
    first = model.block(x)
    return [first, model.block(torch.relu(first))]


def test_a_module_that_runs_twice_warns_with_its_path_and_count_once():
    model = Shared()
    expected = calls_of_block(model, X)
    with Taps(model, ["block"]) as taps:
        with pytest.warns(UserWarning, match=r"Tap on 'block' of the model: the module ran 2 times in one forward pass.*calls='all'"):
            model(X)
        torch.testing.assert_close(taps.outputs["block"], expected[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(X)  # the same module again: warned once already


def test_all_records_every_call_in_order_and_restarts_each_forward():
    model = Shared()
    expected = calls_of_block(model, X)
    with Taps(model, ["block", "head"], calls="all") as taps:
        model(X)
        model(X)
        assert isinstance(taps.outputs["block"], tuple) and len(taps.outputs["block"]) == 2
        for got, want in zip(taps.outputs["block"], expected, strict=True):
            torch.testing.assert_close(got, want)
        assert len(taps.outputs["head"]) == 1  # a module that ran once: a tuple of one


def test_last_is_silent_and_error_refuses_at_the_second_call():
    model = Shared()
    expected = calls_of_block(model, X)
    with Taps(model, ["block"], calls="last") as taps, warnings.catch_warnings():
        warnings.simplefilter("error")
        model(X)
        torch.testing.assert_close(taps.outputs["block"], expected[-1])
    with Taps(model, ["block"], owner="student", calls="error"), pytest.raises(
            TorchSlimError, match=r"'block' of the student: the module ran 2 times in one forward pass.*calls='error'"):
        model(X)


def test_a_module_that_runs_once_is_not_warned_about():
    model = Shared()
    with Taps(model, ["head"]) as taps, warnings.catch_warnings():
        warnings.simplefilter("error")
        model(X)
        model(X)
        assert taps.outputs["head"].shape == (2, 3)


def test_distillation_warns_about_weight_shared_taps_of_student_and_teacher():
    student, teacher = Shared(), Shared()
    losses = [L.create("kd"), L.create("fitnet", student_tap="block", teacher_tap="block")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with DistillTask(student, teacher, losses, example_input=X) as task:
            task(X, torch.tensor([0, 1]))
    messages = {str(w.message).split(":")[0] for w in caught if w.category is UserWarning}
    assert messages == {"Tap on 'block' of the student", "Tap on 'block' of the teacher 'teacher'"}


def test_a_feature_loss_refuses_a_tap_holding_every_call():
    model = Shared()
    with Taps(model, ["block"], calls="all") as taps:
        model(X)
        features = dict(taps.outputs)
    loss = L.create("fitnet", student_tap="block", teacher_tap="block")
    loss.build(torch.Size((2, 8)), torch.Size((2, 8)))
    with pytest.raises(TorchSlimError, match=r"student tap 'block' holds 2 outputs .*compares one tensor"):
        loss(Outputs(None, features), Outputs(None, {"block": features["block"][-1]}), {})
    loss(Outputs(None, {"block": features["block"][0]}), Outputs(None, {"block": features["block"][-1]}), {})


def test_taps_on_a_real_model_are_unchanged_by_the_call_counting():
    model = models.create("cnn-tiny", num_classes=4).eval()
    with Taps(model, ["features.1"]) as taps, warnings.catch_warnings():
        warnings.simplefilter("error")
        model(torch.randn(2, 1, 16, 16))
        assert taps.outputs["features.1"].ndim == 4
