"""Bad distillation options, one case per input, refused by every front end in the same words.

Each case is one set of ``distill`` options (a :class:`DistillConfig`), given three ways: as a
recipe's ``distill`` step (refused when the recipe is loaded, with ``recipe.yaml:<line>`` of the
bad key), as ``torchslim distill`` flags (exit 2 naming the flag, before any data or teacher is
loaded) and as keyword arguments of ``torchslim.distill.distill`` (an ``OptionsError``). The words
after the place (``losses[0].T = 0 is invalid: ...``) must be the same in all three.
"""

from __future__ import annotations

import json
import re

import pytest

from torchslim import models
from torchslim.distill import distill
from torchslim.options import OptionsError
from torchslim.pipeline import RecipeError, load_recipe

TEACHER = "fashion-mnist-teacher"  # named, never loaded: every case fails before that
TAPS = "student_tap=features.3,teacher_tap=layer3"

# id, the step's options (beside student, epochs, teachers), the same as flags, the bad key, needles
CASES = [
    ("loss-option-unknown", {"losses": [{"name": "kd", "Tt": 4}]}, ["--losses", "kd:Tt=4"], "losses[0].Tt",
     ["no option 'Tt'", "Did you mean 'T'", "T: float > 0"]),
    ("loss-T-text", {"losses": [{"name": "kd", "T": "abc"}]}, ["--losses", "kd:T=abc"], "losses[0].T",
     ['"abc"', "valid number", "T: float > 0"]),
    ("loss-T-bool", {"losses": [{"name": "kd", "T": True}]}, ["--losses", "kd:T=true"], "losses[0].T",
     ["true", "valid number"]),
    ("loss-T-zero", {"losses": [{"name": "kd", "T": 0}]}, ["--losses", "kd:T=0"], "losses[0].T",
     ["= 0", "greater than 0", "T: float > 0"]),
    ("loss-T-negative", {"losses": [{"name": "kd", "T": -2.5}]}, ["--losses", "kd:T=-2.5"], "losses[0].T",
     ["-2.5", "greater than 0"]),
    ("loss-weight-negative", {"losses": [{"name": "kd", "weight": -1}]}, ["--losses", "kd:weight=-1"],
     "losses[0].weight", ["-1", "greater than or equal to 0"]),
    ("loss-teacher-unknown", {"losses": [{"name": "kd", "teacher": "other"}]}, ["--losses", "kd:teacher=other"],
     "losses[0].teacher", ['"other"', f"not among teachers: {TEACHER}"]),
    ("loss-name-unknown", {"losses": [{"name": "kdd"}]}, ["--losses", "kdd"], "losses[0].name",
     ["'kdd'", "Did you mean 'kd'"]),
    ("loss-taps-missing", {"losses": [{"name": "fitnet"}]}, ["--losses", "fitnet"], "losses[0].name",
     ["student_tap and teacher_tap are required by loss 'fitnet'"]),
    ("loss-crd-momentum", {"losses": [{"name": "crd", "momentum": 1.5}]}, ["--losses", "crd:momentum=1.5"],
     "losses[0].momentum", ["1.5", "less than 1"]),
    ("feature-loss-cached", {"losses": [{"name": "at", "student_tap": "features.3", "teacher_tap": "layer3"}],
                             "cache": "memory"}, ["--losses", f"at:{TAPS}", "--cache", "memory"], "cache",
     ["teacher_tap 'layer3'", "set cache to none"]),
    ("mix-cached", {"mix": "mixup"}, ["--mix", "mixup"], "mix", ["live teacher", "cache = 'memory'"]),
    ("cache-draws-live", {"cache": "none", "cache_draws": 2}, ["--cache", "none", "--cache-draws", "2"],
     "cache_draws", ["= 2", "cache = 'none'"]),
    ("teacher-weights-count", {"teacher_weights": [1.0, 1.0]}, ["--teacher-weights", "1,1"], "teacher_weights",
     ["[1.0, 1.0]", "one weight >= 0 per teacher"]),
    ("temperature-without-T", {"losses": [{"name": "ce"}], "temperature": {"start": 8.0, "end": 2.0}},
     ["--losses", "ce", "--temperature", "{start: 8, end: 2}"], "temperature", ["no loss has a temperature T"]),
    ("temperature-start-zero", {"temperature": {"start": 0}}, ["--temperature", "{start: 0}"], "temperature.start",
     ["= 0", "greater than 0"]),
]
IDS = [case[0] for case in CASES]


def recipe_text(options: dict) -> tuple[str, dict[str, int]]:
    """A recipe whose one strategy is the distill step with ``options``, and the line of each key."""
    lines = ["version: 1", "name: bad", "data: {name: synthetic, batch_size: 32}", "strategies:", "  s:",
             "    - distill:", "        student: cnn-tiny", "        epochs: 1", f"        teachers: [{TEACHER}]"]
    where = {}
    for key, value in options.items():
        lines.append(f"        {key}: {json.dumps(value)}")  # JSON is YAML's flow style
        where[key] = len(lines)
    return "\n".join(lines) + "\n", where


def words(text: str, key: str) -> str:
    """The message after ``key = ``: the value and what is wrong, said the same way everywhere."""
    at = text.find(f"{key} = ")
    assert at >= 0, f"{key!r} not in: {text}"
    return " ".join(text[at + len(key):].split()).rstrip(".")


def flag_of(key: str) -> str:
    """The bad key as the command line names it: ``cache_draws`` -> ``--cache-draws``."""
    head = re.match(r"[a-z_]+", key).group()
    return "--" + head.replace("_", "-") + key[len(head):]


@pytest.mark.parametrize(("case", "options", "flags", "key", "needles"), CASES, ids=IDS)
def test_recipe_refuses_at_load(sandbox, case, options, flags, key, needles):
    text, lines = recipe_text(options)
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(text)
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    line = lines[key.split(".")[0].split("[")[0]]
    message = sandbox.expect_message(exc, f"recipe.yaml:{line}", f"strategies.s[0].distill.{key}", *needles)
    assert words(message, key) == words(library_message(options), key)


@pytest.mark.parametrize(("case", "options", "flags", "key", "needles"), CASES, ids=IDS)
def test_cli_exits_2_naming_the_flag(sandbox, case, options, flags, key, needles):
    result = sandbox.cli("distill", "--teachers", TEACHER, "--student", "cnn-tiny", "--data", "synthetic",
                         "--epochs", "1", "--out", sandbox.out, "--quiet", *flags)
    text = sandbox.expect_exit_2(result, flag_of(key), *needles)
    assert words(text, flag_of(key)) == words(library_message(options), key)
    assert not sandbox.out.exists()  # refused before the run claimed its folder


@pytest.mark.parametrize(("case", "options", "flags", "key", "needles"), CASES, ids=IDS)
def test_library_raises_options_error(sandbox, case, options, flags, key, needles):
    student, teacher = models.create("cnn-tiny", num_classes=4), models.create("cnn-tiny", num_classes=4)
    exc = sandbox.call(lambda: distill(student, {TEACHER: teacher}, None, epochs=1, **options), OptionsError)
    sandbox.expect_message(exc, "distill:", key, *needles)


def library_message(options: dict) -> str:
    """What ``distill()`` says of ``options`` (the reference words of a case)."""
    student = models.create("cnn-tiny", num_classes=4)
    with pytest.raises(OptionsError) as info:
        distill(student, {TEACHER: student}, None, epochs=1, **options)
    return str(info.value)
