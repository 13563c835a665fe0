"""Bad deployment targets, timing caps and scenario floors/budgets: ``torchslim compare`` exits 2
naming the key, its ``recipe.yaml:<line>`` and what is valid, before any training or output
directory; the Python ``parse`` raises :class:`RecipeError` with the same message."""

from __future__ import annotations

import pytest

from torchslim.pipeline import RecipeError
from torchslim.pipeline.recipe import parse

HEAD = ("version: 1\nname: bad-matrix\ndata: {name: synthetic, batch_size: 32}\n"
        "strategies:\n  teacher: [load]\n  student:\n    - train: {model: cnn-tiny, epochs: 1}\n")

# (id, extra YAML, a text on the line the message must name, needles)
CASES = [
    ("unknown-target", "measure: {targets: [torch-fp32, ort-fp23]}\n", "ort-fp23",
     ["measure.targets", "'ort-fp23'", "did you mean 'ort-fp32'", "torch-fp32, ort-fp32, ort-int8"]),
    ("target-case", "measure: {targets: [ORT-INT8]}\n", "ORT-INT8", ["'ORT-INT8'", "ort-int8"]),
    ("empty-targets", "measure: {targets: []}\n", "targets", ["measure.targets", "at least 1"]),
    ("repeated-target", "measure: {targets: [ort-fp32, ort-fp32]}\n", "targets",
     ["measure.targets", "more than once"]),
    ("target-not-text", "measure: {targets: [3]}\n", "targets", ["measure.targets", "3"]),
    ("floor-nan", "scenarios: {accuracy_floor: .nan}\n", "accuracy_floor",
     ["scenarios.accuracy_floor", "nan", "finite"]),
    ("floor-negative", "scenarios: {accuracy_floor: -1.0}\n", "accuracy_floor",
     ["scenarios.accuracy_floor", "-1", "greater than or equal to 0"]),
    ("sensitive-floor-above-100", "scenarios: {sensitive_floor: 150.0}\n", "sensitive_floor",
     ["scenarios.sensitive_floor", "150", "less than or equal to 100"]),
    ("balanced-floor-infinite", "scenarios: {balanced_floor: .inf}\n", "balanced_floor",
     ["scenarios.balanced_floor", "finite"]),
    ("latency-budget-zero", "scenarios: {latency_budget: 0.0}\n", "latency_budget",
     ["scenarios.latency_budget", "greater than 0"]),
    ("resource-budget-negative", "scenarios: {resource_budget: -0.5}\n", "resource_budget",
     ["scenarios.resource_budget", "-0.5", "greater than 0"]),
    ("balanced-budget-zero", "scenarios: {balanced_budget: 0.0}\n", "balanced_budget",
     ["scenarios.balanced_budget", "greater than 0"]),
    ("size-budget-zero", "scenarios: {size_budget: 0.0}\n", "size_budget",
     ["scenarios.size_budget", "greater than 0"]),
    ("resource-unknown", "scenarios: {resource: speed}\n", "resource",
     ["scenarios.resource", '"speed"', "'latency' or 'bytes'"]),
    ("floor-misspelt", "scenarios: {acuracy_floor: 1.0}\n", "acuracy_floor",
     ["scenarios.acuracy_floor", "accuracy_floor"]),
    ("max-seconds-zero", "measure: {max_seconds: 0.0}\n", "max_seconds",
     ["measure.max_seconds", "greater than 0"]),
    ("max-seconds-hours", "measure: {max_seconds: 36000.0}\n", "max_seconds",
     ["measure.max_seconds", "36000", "less than or equal to 600"]),
    ("rounds-zero", "measure: {rounds: 0}\n", "rounds", ["measure.rounds", "greater than 0"]),
    ("baseline-missing", "baseline: teacher-fp32\n", None,
     ["baseline 'teacher-fp32' is not a strategy", "teacher, student"]),
]


def _line(text: str, mark: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if mark in line)


@pytest.mark.parametrize("body, mark, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compare_refuses(sandbox, body, mark, needles):
    text = HEAD + body
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(text)
    where = f"recipe.yaml:{_line(text, mark)}" if mark else "recipe.yaml"
    sandbox.expect_exit_2(sandbox.cli("compare", path, "--out", sandbox.out, "--quiet"), where, *needles)
    assert not sandbox.out.exists()


@pytest.mark.parametrize("body, mark, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_refuses(sandbox, body, mark, needles):
    import yaml

    data = yaml.safe_load(HEAD + body)
    exc = sandbox.call(lambda: parse(data, "recipe.yaml"), RecipeError)
    sandbox.expect_message(exc, *needles)
