"""Bad pruning and sparsity options, refused alike by the three front ends: a recipe step (with
``recipe.yaml:<line>``), a ``torchslim prune``/``sparsify`` flag (exit 2) and a keyword argument of
``prune.channels``/``prune.sparsify`` (``OptionsError``) — the same words after the option's name,
before any model is loaded or trained, and nothing written outside the output directory."""

from __future__ import annotations

import json

import pytest
import torch

from torchslim import models, prune
from torchslim.options import OptionsError
from torchslim.options.cli import flag
from torchslim.pipeline import RecipeError, load_recipe

X = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))

# id -> (step, options, the words after "<name> = <value> is invalid: ")
CASES = {
    "T-zero": ("prune", {"T": 0}, "Input should be greater than 0"),
    "T-negative": ("prune", {"T": -2.0}, "Input should be greater than 0"),
    "kd-weight-negative": ("prune", {"kd_weight": -0.1}, "Input should be greater than or equal to 0"),
    "kd-weight-over-one": ("prune", {"kd_weight": 1.5}, "Input should be less than or equal to 1"),
    "bn-batches-negative": ("prune", {"bn_batches": -1}, "Input should be greater than or equal to 0"),
    "iterations-zero": ("prune", {"iterations": 0}, "Input should be greater than 0"),
    "cache-unknown": ("prune", {"cache": "ram"}, "Input should be 'none', 'memory' or 'disk'"),
    "recovery-lr-zero": ("prune", {"lr": 0}, "Input should be greater than 0"),
    "recovery-schedule-unknown": ("prune", {"schedule": "agp"}, "Input should be 'onecycle', 'cosine' or 'constant'"),
    "ramp-unknown": ("sparsify", {"ramp": "linear"}, "Input should be 'oneshot' or 'agp'"),
    "ramp-typo": ("sparsify", {"ramp": "agd"}, "Input should be 'oneshot' or 'agp' (did you mean 'agp')"),
    "sparsify-lr-negative": ("sparsify", {"lr": -0.1}, "Input should be greater than 0"),
}
IDS = list(CASES)

# id -> (step, options, a message naming the options together)
CROSS = {
    "kd-without-epochs": ("prune", {"recover": "kd"}, "recover='kd' needs epochs > 0"),
    "epochs-without-recovery": ("prune", {"epochs": 2}, "epochs = 2 recovery epochs with recover='none' would never run"),
    "agp-without-epochs": ("sparsify", {"ramp": "agp"}, "ramp='agp' raises sparsity while training: it needs epochs > 0"),
}


def _expected(name: str, options: dict, reason: str) -> str:
    value = next(iter(options.values()))
    return f"{name} = {json.dumps(value)} is invalid: {reason}"


def _recipe(sandbox, step: str, options: dict) -> tuple:
    base = {"prune": {"ratio": 0.5}, "sparsify": {"sparsity": 0.5}}[step]
    body = json.dumps({**base, **options}).replace('"', "")  # YAML flow mapping
    text = (f"version: 1\nname: bad\ndata: {{name: synthetic, batch_size: 32}}\nstrategies:\n  s:\n    - load\n"
            f"    - {step}: {body}\n")
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path, f"recipe.yaml:{len(text.splitlines())}"


def _library(step: str, options: dict):
    model = models.create("cnn-tiny")
    if step == "prune":
        return lambda: prune.channels(model, X, 0.5, **options)
    return lambda: prune.sparsify(model, 0.5, **options)


def _argv(step: str, options: dict) -> list[str]:
    argv = [step, "fashion-mnist-teacher"]
    for name, value in options.items():
        argv += [flag(name), str(value)]
    return argv


@pytest.mark.parametrize("case", CASES.values(), ids=IDS)
def test_bad_option_in_a_recipe(sandbox, case):
    step, options, reason = case
    path, where = _recipe(sandbox, step, options)
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, where, _expected(f"{step}.{next(iter(options))}", options, reason))


@pytest.mark.parametrize("case", CASES.values(), ids=IDS)
def test_bad_option_flag(sandbox, case):
    step, options, reason = case
    result = sandbox.cli(*_argv(step, options), "--out", sandbox.out)
    sandbox.expect_exit_2(result, _expected(flag(next(iter(options))), options, reason))
    assert not sandbox.out.exists(), "a refused command must not create --out"


@pytest.mark.parametrize("case", CASES.values(), ids=IDS)
def test_bad_option_keyword(sandbox, case):
    step, options, reason = case
    exc = sandbox.call(_library(step, options), OptionsError)
    where = {"prune": "prune.channels", "sparsify": "prune.sparsify"}[step]
    sandbox.expect_message(exc, f"{where}: " + _expected(next(iter(options)), options, reason))


@pytest.mark.parametrize("case", CROSS.values(), ids=list(CROSS))
def test_options_at_odds_refused_by_every_front_end(sandbox, case):
    step, options, message = case
    path, where = _recipe(sandbox, step, options)
    sandbox.expect_message(sandbox.call(lambda: load_recipe(path), RecipeError), where, message)
    sandbox.expect_exit_2(sandbox.cli(*_argv(step, options), "--out", sandbox.out), message)
    sandbox.expect_message(sandbox.call(_library(step, options), OptionsError), message)
    assert not sandbox.out.exists()


# Options renamed so that one word has one meaning: the old names are refused, pointing at the new.
RENAMED = {
    "prune-steps": ("prune", {"steps": 2}, "unknown", "steps'", "iterations"),
    "sparsify-schedule-lr": ("sparsify", {"schedule_lr": "cosine"}, "unknown", "schedule_lr'", "did you mean 'schedule'"),
}


@pytest.mark.parametrize("case", RENAMED.values(), ids=list(RENAMED))
def test_old_option_names_are_refused(sandbox, case):
    step, options, *needles = case
    path, where = _recipe(sandbox, step, options)
    sandbox.expect_message(sandbox.call(lambda: load_recipe(path), RecipeError), where, *needles)
    sandbox.expect_message(sandbox.call(_library(step, options), OptionsError), *needles)
    result = sandbox.cli(*_argv(step, options), "--out", sandbox.out)
    sandbox.expect_exit_2(result, "unrecognized arguments", flag(next(iter(options))))
