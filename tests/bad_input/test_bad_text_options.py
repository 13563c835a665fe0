"""Bad options of the text task's methods, refused by every front end in the same words.

Each case is one bad input to one method (``layers``, ``prune``, ``distill``, ``quantize``), given
four ways: a recipe step (the message names ``recipe.yaml:LINE`` and the key path), the flags of
``torchslim text METHOD`` and of ``torchslim distill --data wordnet-glosses`` (exit 2, the flag
named) and the library function's keyword arguments (``OptionsError`` naming the function). All are refused while the options are
read: no encoder, tokenizer or corpus is loaded and nothing is written.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from torchslim.options import OptionsError
from torchslim.options.cli import flag
from torchslim.pipeline import RecipeError, load_recipe

RECIPE = ("version: 1\nname: bad\ntask: text\nteacher: minilm\ndata: {name: wordnet-glosses}\n"
          "strategies:\n  s:\n    - load\n")
CLI = ["distill", "--teachers", "minilm", "--data", "wordnet-glosses", "--quiet"]
# What a case adds when it does not set these itself: a distillation needs epochs, and a text
# student on the command line is made one way or another.
BASE = {"distill": {"epochs": 1}, "layers": {}, "prune": {}, "quantize": {}}
CLI_BASE = {"epochs": ("--epochs", "1"), "student": ("--keep", "2")}
FUNCTION = {"layers": "shrink_layers", "prune": "prune_encoder", "distill": "distill_encoder",
            "quantize": "quantize_int8"}

# (id, step, options as a recipe writes them, the same as flags (None: no flag for it), the option
# named in the message (None: a rule over several options), words every front end says)
CASES = [
    ("keep-zero", "layers", {"keep": 0}, ["--keep", "0"], "keep", "Input should be greater than 0"),
    ("keep-fraction", "layers", {"keep": 2.5}, ["--keep", "2.5"], "keep", "Input should be a valid integer"),
    ("keep-and-layers", "layers", {"keep": 2, "layers": [0, 1]}, ["--keep", "2", "--layers", "0,1"], None,
     "give exactly one of keep (how many layers: the best-agreeing ones are chosen) or layers"),
    ("layers-out-of-order", "layers", {"layers": [2, 1]}, ["--layers", "2,1"], None,
     "layers = [2, 1] must be distinct and increasing"),
    ("layers-repeated", "layers", {"layers": [1, 1]}, ["--layers", "1,1"], None,
     "layers = [1, 1] must be distinct and increasing"),
    ("layers-negative", "layers", {"layers": [0, -1]}, ["--layers=0,-1"], None,
     "layers = [0, -1] holds a negative index; teacher layers are numbered from 0"),
    ("layers-empty", "layers", {"layers": []}, None, "layers", "List should have at least 1 item"),
    ("layers-sample-one", "layers", {"keep": 2, "sample_size": 1}, ["--keep", "2", "--sample-size", "1"],
     "sample_size", "Input should be greater than or equal to 2"),
    ("heads-one", "prune", {"heads": 1.0}, ["--heads", "1.0"], "heads", "Input should be less than 1"),
    ("ffn-negative", "prune", {"ffn": -0.25}, ["--ffn=-0.25"], "ffn", "Input should be greater than or equal to 0"),
    ("heads-word", "prune", {"heads": "half"}, ["--heads", "half"], "heads", "Input should be a valid number"),
    ("prune-nothing", "prune", {"heads": 0.0, "ffn": 0.0}, ["--heads", "0.0", "--ffn", "0.0"], None,
     "heads and ffn are both 0: nothing would be pruned"),
    ("prune-sample-zero", "prune", {"heads": 0.5, "sample_size": 0}, ["--heads", "0.5", "--sample-size", "0"],
     "sample_size", "Input should be greater than 0"),
    ("epochs-zero", "distill", {"epochs": 0}, ["--epochs", "0"], "epochs", "Input should be greater than 0"),
    ("lr-negative", "distill", {"lr": -1}, ["--lr=-1"], "lr", "Input should be greater than 0"),
    ("weight-decay-negative", "distill", {"weight_decay": -0.01}, ["--weight-decay=-0.01"], "weight_decay",
     "Input should be greater than or equal to 0"),
    ("max-grad-norm-zero", "distill", {"max_grad_norm": 0.0}, ["--max-grad-norm", "0.0"], "max_grad_norm",
     "Input should be greater than 0"),
    ("optimizer-unknown", "distill", {"optimizer": "adam"}, ["--optimizer", "adam"], "optimizer",
     "Input should be 'sgd' or 'adamw'"),
    ("schedule-unknown", "distill", {"schedule": "cosin"}, ["--schedule", "cosin"], "schedule",
     "did you mean 'cosine'"),
    ("warmup-longer-than-run", "distill", {"epochs": 1, "warmup_epochs": 2.0}, ["--epochs", "1", "--warmup-epochs", "2.0"],
     None, "warmup_epochs = 2.0 must be less than epochs = 1"),
    ("cache-unknown", "distill", {"cache": "ram"}, ["--cache", "ram"], "cache",
     "Input should be 'memory', 'disk' or 'none'"),
    ("loss-unknown", "distill", {"losses": [{"name": "embed-coss"}]}, ["--losses", "embed-coss"], "losses[0].name",
     "Did you mean 'embed-cos'?"),
    ("loss-option-unknown", "distill", {"losses": [{"name": "embed-cos", "tap": "x"}]}, ["--losses", "embed-cos:tap=x"],
     None, "loss 'embed-cos' has no option 'tap'"),
    ("loss-weight-negative", "distill", {"losses": [{"name": "embed-cos", "weight": -1.0}]},
     ["--losses", "embed-cos:weight=-1.0"], "losses[0].weight", "Input should be greater than or equal to 0"),
    ("loss-second-teacher", "distill", {"losses": [{"name": "embed-cos", "teacher": "other"}]},
     ["--losses", "embed-cos:teacher=other"], None, "loss 'embed-cos' names teacher 'other', but text distillation "
     "has one teacher"),
    ("no-losses", "distill", {"losses": []}, None, "losses", "List should have at least 1 item"),
    ("quantize-static", "quantize", {"mode": "static"}, ["--mode", "static"], "mode", "Input should be 'dynamic'"),
]
IDS = [c[0] for c in CASES]


def _value(options: dict, option: str) -> object:
    """The value at ``option`` (``losses[0].name``) in ``options``."""
    value = options
    for part in re.findall(r"\w+", option):
        value = value[int(part)] if part.isdigit() else value[part]
    return value


def _named(name: str | None, options: dict, option: str | None) -> list[str]:
    """The words naming the bad value (``name = value is invalid``), ``name`` being the option as
    the front end writes it; a rule over several options names them in its own words."""
    return [] if option is None else [f"{name} = {json.dumps(_value(options, option))} is invalid"]


@pytest.mark.parametrize(("case", "step", "options", "argv", "option", "words"), CASES, ids=IDS)
def test_bad_text_option_in_a_recipe(sandbox, case, step, options, argv, option, words):
    body = yaml.safe_dump({step: {**BASE[step], **options}}, default_flow_style=True, width=1000).strip()
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(RECIPE + f"    - {body}\n", encoding="utf-8")
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, "recipe.yaml:9", *_named(f"strategies.s[1].{step}.{option}", options, option), words)


CLI_CASES = [c for c in CASES if c[3] is not None]
# `torchslim distill --data wordnet-glosses` makes a student and distils it: no quantize there.
DISTILL_CASES = [c for c in CLI_CASES if c[1] != "quantize"]


def _flag_named(option: str | None) -> str | None:
    head = re.match(r"\w+", option or "")
    return flag(head[0]) + option[head.end():] if head else None  # losses[0].name -> --losses[0].name


@pytest.mark.parametrize(("case", "step", "options", "argv", "option", "words"), DISTILL_CASES,
                         ids=[c[0] for c in DISTILL_CASES])
def test_bad_text_option_in_torchslim_distill(sandbox, case, step, options, argv, option, words):
    extra = (() if "epochs" in options else CLI_BASE["epochs"]) + (() if step in ("layers", "prune") else
                                                                    CLI_BASE["student"])
    result = sandbox.cli(*CLI, *argv, *extra, "--out", sandbox.out)
    sandbox.expect_exit_2(result, *_named(_flag_named(option), options, option), words)
    assert not sandbox.out.exists(), "options are refused before the run claims --out"


@pytest.mark.parametrize(("case", "step", "options", "argv", "option", "words"), CLI_CASES,
                         ids=[c[0] for c in CLI_CASES])
def test_bad_text_option_in_torchslim_text(sandbox, case, step, options, argv, option, words):
    extra = CLI_BASE["epochs"] if step == "distill" and "epochs" not in options else ()
    result = sandbox.cli("text", step, "minilm", *argv, *extra, "--out", sandbox.out)
    sandbox.expect_exit_2(result, *_named(_flag_named(option), options, option), words)
    assert not sandbox.out.exists(), "options are refused before the command claims --out"


@pytest.mark.parametrize(("case", "step", "options", "argv", "option", "words"), CASES, ids=IDS)
def test_bad_text_option_in_the_library(sandbox, case, step, options, argv, option, words):
    from torchslim import text

    # The options are read before the model, the data or the ONNX file is touched, so none is given.
    args = {"layers": (None, None), "prune": (None, None), "distill": (None, None, None),
            "quantize": (sandbox.inputs / "fp32.onnx", sandbox.out / "int8.onnx")}[step]
    call = getattr(text, FUNCTION[step])
    exc = sandbox.call(lambda: call(*args, **{**BASE[step], **options}), OptionsError)
    sandbox.expect_message(exc, f"text.{FUNCTION[step]}:", *_named(option, options, option), words)


# Flags of `torchslim distill` that a text run cannot use, and a text student asked for wrongly.
DISTILL_MODE = [
    ("image-only-option", ["--keep", "2", "--epochs", "1", "--teacher-weights", "1"],
     ["--teacher-weights is an option of image distillation", "TextDistillConfig"]),
    ("no-student", ["--epochs", "1"], ["give exactly one of --keep N, --layers I,J,... or --heads/--ffn"]),
    ("two-students", ["--keep", "2", "--heads", "0.5", "--epochs", "1"], ["give exactly one of --keep N"]),
]


@pytest.mark.parametrize(("argv", "needles"), [c[1:] for c in DISTILL_MODE], ids=[c[0] for c in DISTILL_MODE])
def test_text_distill_mode_refuses_what_it_cannot_use(sandbox, argv, needles):
    sandbox.expect_exit_2(sandbox.cli(*CLI, *argv, "--out", sandbox.out), *needles)
    assert not sandbox.out.exists()
