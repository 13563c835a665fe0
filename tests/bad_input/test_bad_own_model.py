"""Bad own models: a teacher directory torchslim cannot rebuild, a factory that is not given, not
allowed, not importable, not callable as a factory or not giving a fitting classifier, a teacher
object that does not fit the data. Each is refused before any work, through ``compare`` (API) and
``torchslim compare`` (CLI, exit 2), with what to do named."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import yaml
from torch import nn

import torchslim as ts
from torchslim.core.errors import TorchSlimError
from torchslim.pipeline import compare

PACKAGE = "ownpkg_badinput"
SOURCE = """
from torch import nn

def net(num_classes, in_channels, width=8):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))

def not_module(num_classes, in_channels):
    return "a string"

def no_sizes():
    return net(4, 1)

def fixed10(num_classes, in_channels):
    return net(10, in_channels)

def three_channel(num_classes, in_channels):
    return net(num_classes, 3)
"""


@pytest.fixture
def own(sandbox, monkeypatch):
    """The user's package in ``sandbox.inputs`` (no bytecode written), importable by name."""
    package = sandbox.inputs / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(sandbox.inputs))
    monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
    yield sandbox
    sys.modules.pop(PACKAGE, None)


def _net(classes: int = 4, channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, classes))


def _recipe(sandbox, teacher: str | None, student: str | None) -> str:
    strategies = {"teacher": ["load"]}
    if student:
        strategies["student"] = [{"distill": {"student": student, "epochs": 1}}]
    recipe = {"version": 1, "name": "own-bad", "data": {"name": "synthetic", "batch_size": 32},
              "measure": {"batch_sizes": [1], "thread_counts": [1], "rounds": 1}, "strategies": strategies}
    if teacher:
        recipe["teacher"] = teacher
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return str(path)


def _teacher_dir(sandbox, spec: dict | None) -> str:
    return str(ts.save_model(_net(), sandbox.inputs / "teacher", spec=spec))


# (id, teacher: spec of a saved directory or None for a good one, student, allow import, needles)
CASES = [
    ("teacher-own-arch", {}, None, False, ["no model spec", "factory=NAME", "models={NAME: factory}", "teacher="]),
    ("teacher-factory-not-given", {"factory": "mynet"}, None, False, ["factory 'mynet'", "models={'mynet'"]),
    ("teacher-factory-not-allowed", {"factory": f"{PACKAGE}:net"}, None, False, [f"--allow-import {PACKAGE}"]),
    ("teacher-derived-from-object", {"teacher": "given"}, None, False, ["teacher object", "teacher= again"]),
    ("student-not-allowed", None, f"{PACKAGE}:net", False, [f"{PACKAGE}:net", f"--allow-import {PACKAGE}"]),
    ("student-not-a-module", None, f"{PACKAGE}:not_module", True, ["not_module", "returned str", "nn.Module"]),
    ("student-no-sizes", None, f"{PACKAGE}:no_sizes", True, ["no_sizes", "num_classes=", "in_channels="]),
    ("student-wrong-classes", None, f"{PACKAGE}:fixed10", True, ["fixed10", "10 outputs", "4 classes"]),
    ("student-wrong-channels", None, f"{PACKAGE}:three_channel", True, ["three_channel", "3 input channel",
                                                                        "has 1"]),
    ("student-missing-function", None, f"{PACKAGE}:nope", True, [f"{PACKAGE}:nope", "no callable 'nope'"]),
    ("student-missing-module", None, "nopkg_missing_xyz:net", True, ["nopkg_missing_xyz", "cannot import"]),
]


def _setup(sandbox, spec, student, allow):
    if spec is None:  # a good teacher: a registered family built for the data's 4 classes
        teacher = str(ts.save_model(ts.models.create("cnn-tiny", num_classes=4), sandbox.inputs / "teacher"))
    else:
        teacher = _teacher_dir(sandbox, spec or None)
    allowed = (PACKAGE, "nopkg_missing_xyz") if allow else ()
    return _recipe(sandbox, teacher, student), allowed


@pytest.mark.parametrize(("spec", "student", "allow", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compare_api_refuses(own, spec, student, allow, needles):
    recipe, allowed = _setup(own, spec, student, allow)
    exc = own.call(lambda: compare(recipe, own.out, allow_imports=allowed, progress=False, log=lambda _: None),
                   TorchSlimError)
    own.expect_message(exc, *needles)


@pytest.mark.parametrize(("spec", "student", "allow", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compare_cli_exits_2(own, spec, student, allow, needles):
    recipe, allowed = _setup(own, spec, student, allow)
    flags = [f for name in allowed for f in ("--allow-import", name)]
    own.expect_exit_2(own.cli("compare", recipe, "--out", own.out, "--quiet", *flags), *needles)


TEACHER_OBJECTS = [
    ("ten-outputs", lambda: _net(10), ["teacher given", "10 outputs", "4 classes"]),
    ("three-channels", lambda: _net(4, 3), ["teacher given", "3 input channel", "has 1"]),
    ("not-a-module", lambda: (lambda x: x), ["teacher= must be an nn.Module", "function"]),
]


@pytest.mark.parametrize(("make", "needles"), [c[1:] for c in TEACHER_OBJECTS], ids=[c[0] for c in TEACHER_OBJECTS])
def test_compare_refuses_a_teacher_object_that_does_not_fit(sandbox, make, needles):
    recipe = _recipe(sandbox, None, None)
    teacher = make()
    exc = sandbox.call(lambda: compare(recipe, sandbox.out, teacher=teacher, progress=False, log=lambda _: None),
                       TorchSlimError)
    sandbox.expect_message(exc, *needles)


def test_a_models_factory_that_is_not_given_is_named_with_the_given_ones(sandbox):
    recipe = _recipe(sandbox, _teacher_dir(sandbox, {"factory": "mynet"}), None)
    exc = sandbox.call(lambda: compare(recipe, sandbox.out, models={"other": lambda **k: _net()}, progress=False,
                                       log=lambda _: None), TorchSlimError)
    sandbox.expect_message(exc, "factory 'mynet'", "given (other)")
