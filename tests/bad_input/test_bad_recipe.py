"""Bad recipes: every one refused with exit 2 (CLI) or RecipeError (API), before anything is written.

Each case is a small YAML file; it runs through ``torchslim compare``, ``torchslim run`` and the
Python ``compare()``. The message must name the value, ``recipe.yaml:<line>`` and what is valid;
``--out`` must not exist afterwards (validation fails before the run claims it).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from torchslim import models, save_model
from torchslim.pipeline import RecipeError, compare, load_recipe, run

DATA = "data: {name: synthetic, batch_size: 32}\n"
MEASURE = "measure: {batch_sizes: [1, 8], thread_counts: [1], rounds: 1, min_seconds: 0.02}\n"
NAME_RULE = "[A-Za-z0-9][A-Za-z0-9._-]*"
DISTILL = "strategies:\n  s:\n    - distill: {student: cnn-tiny, epochs: 1, losses: [%s]}\n"
TEXT = "teacher: minilm\ndata: {name: wordnet-glosses}\nstrategies:\n  s:\n    - load\n"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """An untrained cnn-tiny saved as a checkpoint: enough to resolve module paths against."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("bad-recipe-teacher") / "teacher"
    save_model(models.create("cnn-tiny", num_classes=4, in_channels=1), out)
    return out


def text_of(body: str, teacher: Path) -> str:
    """The recipe: a header (version, name, and data/measure unless the body has its own) + body."""
    body = textwrap.dedent(body).replace("TEACHER", str(teacher))
    if body.startswith("RAW\n"):
        return body[4:]
    head = "version: 1\nname: bad\n" + ("" if "\ndata:" in "\n" + body else DATA)
    return head + ("" if "\nmeasure:" in "\n" + body else MEASURE) + body


def line_of(text: str, mark: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if mark in line)


# (id, body, mark: a text on the line the message must name (None: only the file), needles)
CASES = [
    # -- YAML itself -------------------------------------------------------------------------------
    ("duplicate-strategy", "strategies:\n  s: [load]\n  s: [load]\n", None,
     ["recipe.yaml:7", "'s'", "given twice", "line 6", "line 7"]),
    ("duplicate-data-key", "data:\n  name: synthetic\n  batch_size: 32\n  batch_size: 64\nstrategies:\n  s: [load]\n",
     "batch_size: 64", ["'batch_size'", "given twice", "line 6", "line 7"]),
    ("alias-bomb", "".join(f"{k}: &{k} [{', '.join(['*' + p] * 10 if p else ['1'] * 10)}]\n" for k, p in
                           zip("abcdef", ["", "a", "b", "c", "d", "e"], strict=True)) + "strategies: {s: [load]}\n",
     None, ["aliases", "10,000"]),
    ("alias-self", "x: &a [*a]\nstrategies: {s: [load]}\n", "x: &a", ["refers to the node that contains it"]),
    ("deep-nesting", "x: " + "[" * 60 + "]" * 60 + "\nstrategies: {s: [load]}\n", "x: [", ["deeper than 50"]),
    ("python-tag", "strategies: !!python/object/apply:os.system ['echo hi']\n", None, ["not valid YAML"]),
    ("yaml-syntax", "strategies: [load\n", None, ["not valid YAML"]),
    ("top-level-list", "RAW\n- load\n- export\n", None, ["a recipe is a mapping", "list"]),
    ("empty-file", "RAW\n", None, ["a recipe is a mapping"]),
    ("version-2", "RAW\nversion: 2\nname: bad\nstrategies: {s: [load]}\n", "version: 2", ["version 2", "version 1"]),
    ("no-strategies", "teacher: x\n", None, ["no `strategies:`"]),
    ("strategies-and-pipeline", "strategies: {s: [load]}\npipeline: [load]\n", None, ["not both"]),
    ("strategies-a-list", "strategies: [load]\n", "strategies:", ["must map a strategy name"]),
    ("strategies-empty", "strategies: {}\n", None, ["at least one strategy"]),
    ("strategy-no-steps", "strategies:\n  s: []\n", "s: []", ["strategies.s", "non-empty list"]),
    # -- names that become paths -------------------------------------------------------------------
    ("name-traversal", "strategies:\n  ../evil: [load]\n", "../evil", ["'../evil'", NAME_RULE, "no '..'"]),
    ("name-absolute", "strategies:\n  /tmp/evil: [load]\n", "/tmp/evil", ["'/tmp/evil'", NAME_RULE]),
    ("name-hidden", "strategies:\n  .hidden: [load]\n", ".hidden", ["'.hidden'", NAME_RULE]),
    ("name-slash", "strategies:\n  a/b: [load]\n", "a/b", ["'a/b'", NAME_RULE]),
    ("name-space", "strategies:\n  'a b': [load]\n", "a b", ["'a b'", NAME_RULE]),
    ("name-dots", "strategies:\n  a..b: [load]\n", "a..b", ["'a..b'", "no '..'"]),
    ("name-too-long", "strategies:\n  " + "a" * 101 + ": [load]\n", "aaaa", ["at most 100"]),
    ("name-boolean", "strategies:\n  true: [load]\n", "true:", ["True", NAME_RULE]),
    # -- loss options, typed at load time ----------------------------------------------------------
    ("loss-T-zero", DISTILL % "{name: kd, T: 0}", "distill:",
     ["strategies.s[0].distill.losses[0].T", "T = 0", "greater than 0", "T: float > 0"]),
    ("loss-T-text", DISTILL % "{name: kd, T: abc}", "distill:", ['"abc"', "valid number", "T: float > 0"]),
    ("loss-T-inf", DISTILL % "{name: kd, T: .inf}", "distill:", ["inf", "finite", "losses[0].T"]),
    ("loss-weight-nan", DISTILL % "{name: kd, weight: .nan}", "distill:", ["nan", "finite", "losses[0].weight"]),
    ("loss-unknown-option", DISTILL % "{name: kd, temperature: 4}", "distill:",
     ["'temperature'", "Its options: T"]),
    ("loss-unknown-name", DISTILL % "{name: kdd}", "distill:", ["'kdd'", "Did you mean 'kd'", "fitnet"]),
    ("loss-missing-taps", DISTILL % "{name: fitnet}", "distill:", ["student_tap", "required", "strategies.s"]),
    ("loss-crd-momentum", DISTILL % "{name: crd, momentum: 1.5}", "distill:", ["momentum", "1.5", "less than 1"]),
    ("loss-dkd-negative", DISTILL % "{name: dkd, alpha: -1}", "distill:", ["alpha", "-1", "greater than or equal"]),
    ("loss-negative-weight", DISTILL % "{name: kd, weight: -1}", "distill:", ["weight", "-1", "greater than or equal"]),
    ("loss-bool-T", DISTILL % "{name: kd, T: true}", "distill:", ["T = True", "valid number"]),
    ("loss-teacher-unknown", DISTILL % "{name: kd, teacher: other}", "distill:", ["'other'", "teachers: teacher"]),
    ("losses-empty", DISTILL % "", "distill:", ["losses", "at least 1"]),
    ("teacher-weights-count", "strategies:\n  s:\n    - distill: {student: cnn-tiny, epochs: 1, "
     "teacher_weights: [0.5, 0.5]}\n", "distill:", ["teacher_weights", "one weight >= 0 per teacher"]),
    ("mix-with-cache", "strategies:\n  s:\n    - distill: {student: cnn-tiny, epochs: 1, mix: mixup}\n", "distill:",
     ["mixup", "set cache to none"]),
    # -- sections ----------------------------------------------------------------------------------
    ("batch-size-zero", "data: {name: synthetic, batch_size: 0}\nstrategies: {s: [load]}\n", "data:",
     ["data.batch_size = 0", "greater than 0"]),
    ("batch-size-negative", "data: {name: synthetic, batch_size: -4}\nstrategies: {s: [load]}\n", "data:",
     ["data.batch_size = -4", "greater than 0"]),
    ("batch-size-text", "data: {name: synthetic, batch_size: '32'}\nstrategies: {s: [load]}\n", "data:",
     ["data.batch_size", "valid integer"]),
    ("train-subset-zero", "data: {name: synthetic, train_subset: 0}\nstrategies: {s: [load]}\n", "data:",
     ["data.train_subset = 0", "greater than 0"]),
    ("data-unknown-key", "data: {name: synthetic, batchsize: 32}\nstrategies: {s: [load]}\n", "data:",
     ["'data.batchsize'", "Did you mean 'batch_size'"]),
    ("measure-empty", "measure: {batch_sizes: []}\nstrategies: {s: [load]}\n", "measure:",
     ["measure.batch_sizes", "at least 1"]),
    ("measure-zero-batch", "measure: {batch_sizes: [0, 8]}\nstrategies: {s: [load]}\n", "measure:",
     ["[0, 8]", "positive integer"]),
    ("measure-rounds-zero", "measure: {rounds: 0}\nstrategies: {s: [load]}\n", "measure:",
     ["measure.rounds = 0", "greater than 0"]),
    ("measure-seconds-inf", "measure: {min_seconds: .inf}\nstrategies: {s: [load]}\n", "measure:",
     ["measure.min_seconds", "finite"]),
    ("scenario-resource", "scenarios: {resource: memory}\nstrategies: {s: [load]}\n", "scenarios:",
     ["\"memory\"", "'latency' or 'bytes'"]),
    ("scenario-budget-zero", "scenarios: {latency_budget: 0}\nstrategies: {s: [load]}\n", "scenarios:",
     ["scenarios.latency_budget = 0", "greater than 0"]),
    ("baseline-unknown", "baseline: nope\nstrategies: {s: [load]}\n", None, ["'nope'", "strategies: s"]),
    ("task-unknown", "task: audio\nstrategies: {s: [load]}\n", "task:", ["\"audio\"", "one of 'image', 'text'"]),
    ("top-level-typo", "stratgies: {x: [load]}\nstrategies: {s: [load]}\n", "stratgies",
     ["'stratgies'", "Did you mean 'strategies'"]),
    ("text-section-image", "text: {max_length: 32}\nstrategies: {s: [load]}\n", "text:", ["`text:`", "image recipe"]),
    ("seed-text", "seed: abc\nstrategies: {s: [load]}\n", "seed:", ["seed = \"abc\"", "valid integer"]),
    ("threads-zero", "threads: 0\nstrategies: {s: [load]}\n", "threads: 0", ["threads = 0", "greater than 0"]),
    # -- steps -------------------------------------------------------------------------------------
    ("step-unknown", "strategies:\n  s:\n    - load\n    - pruen: {ratio: 0.5}\n", "pruen",
     ["'pruen'", "Did you mean 'prune'", "strategies.s[1]"]),
    ("step-two-keys", "strategies:\n  s:\n    - {load: teacher, export: {}}\n", "load: teacher",
     ["must be one step", "strategies.s[0]"]),
    ("train-epochs-zero", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 0}\n", "train:",
     ["strategies.s[0].train.epochs = 0", "greater than 0"]),
    ("train-epochs-missing", "strategies:\n  s:\n    - train: {model: cnn-tiny}\n", "train:",
     ["strategies.s[0].train.epochs is required"]),
    ("train-lr-negative", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, lr: -0.1}\n", "train:",
     ["train.lr = -0.1", "greater than 0"]),
    ("train-lr-nan", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, lr: .nan}\n", "train:",
     ["train.lr", "nan", "finite"]),
    ("train-optimizer", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, optimizer: adam}\n", "train:",
     ["\"adam\"", "'sgd' or 'adamw'"]),
    ("train-schedule", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, schedule: linear}\n", "train:",
     ["\"linear\"", "'onecycle', 'cosine' or 'constant'"]),
    ("train-warmup", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, warmup_epochs: 5}\n", "train:",
     ["warmup_epochs = 5", "less than epochs = 1"]),
    ("train-smoothing", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, label_smoothing: 1.0}\n",
     "train:", ["label_smoothing = 1.0", "less than 1"]),
    ("train-key-typo", "strategies:\n  s:\n    - train: {model: cnn-tiny, epoch: 1}\n", "train:",
     ["'strategies.s[0].train.epoch'", "Did you mean 'epochs'"]),
    ("train-width-negative", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, width: -1.0}\n", "train:",
     ["train.width = -1.0", "greater than 0"]),
    ("prune-ratio-high", "strategies:\n  s:\n    - load\n    - prune: {ratio: 1.5}\n", "prune:",
     ["prune.ratio = 1.5", "less than 1"]),
    ("prune-ratio-zero", "strategies:\n  s:\n    - load\n    - prune: {ratio: 0}\n", "prune:",
     ["prune.ratio = 0", "greater than 0"]),
    ("prune-importance", "strategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, importance: l3}\n", "prune:",
     ["'l3'", "l2"]),
    ("prune-epochs-no-recovery", "strategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, epochs: 3}\n", "prune:",
     ["epochs = 3", "recover='none'"]),
    ("prune-recovery-no-epochs", "strategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, recover: kd}\n", "prune:",
     ["recover='kd'", "epochs > 0"]),
    ("prune-ratios-range", "strategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, ratios: {fc: 2.0}}\n", "prune:",
     ["ratios['fc'] = 2 ", "(0, 1)"]),
    ("sparsify-one", "strategies:\n  s:\n    - load\n    - sparsify: {sparsity: 1.0}\n", "sparsify:",
     ["sparsify.sparsity = 1.0", "less than 1"]),
    ("sparsify-agp-no-epochs", "strategies:\n  s:\n    - load\n    - sparsify: {sparsity: 0.5, ramp: agp}\n",
     "sparsify:", ["ramp='agp'", "epochs > 0"]),
    ("quantize-mode", "strategies:\n  s:\n    - load\n    - quantize: {mode: int4}\n", "quantize:",
     ["\"int4\"", "'static' or 'dynamic'"]),
    ("quantize-calibration-zero", "strategies:\n  s:\n    - load\n    - quantize: {calibration_batches: 0}\n",
     "quantize:", ["calibration_batches = 0", "greater than 0"]),
    ("evaluate-split", "strategies:\n  s:\n    - load\n    - evaluate: {split: train}\n", "evaluate:",
     ["\"train\"", "'test' or 'val'"]),
    ("export-opset-zero", "strategies:\n  s:\n    - load\n    - export: {opset: 0}\n", "export:",
     ["export.opset = 0", "greater than 0"]),
    # -- order of steps ----------------------------------------------------------------------------
    ("order-prune-first", "strategies:\n  s:\n    - prune: {ratio: 0.5}\n", "prune:",
     ["strategy 's', step 1 (prune)", "needs a model from an earlier step", "`load`"]),
    ("order-after-quantize", "strategies:\n  s:\n    - load\n    - quantize\n    - prune: {ratio: 0.5}\n", "prune:",
     ["step 3 (prune)", "step 2 (quantize) produced an ONNX file", "before `quantize`/`export`"]),
    ("order-load-twice", "strategies:\n  s:\n    - load\n    - load\n", None,
     ["recipe.yaml:8", "step 2 (load)", "must be the first step"]),
    ("order-fresh-after-load", "strategies:\n  s:\n    - load\n    - train: {model: cnn-tiny, epochs: 1}\n", "train:",
     ["step 2 (train)", "drop `model:`"]),
    ("order-evaluate-first", "strategies:\n  s:\n    - evaluate\n", "evaluate", ["step 1 (evaluate)", "needs a model"]),
    # -- text recipes (refused while parsing: no encoder is loaded) ---------------------------------
    ("text-keep-zero", TEXT + "    - layers: {keep: 0}\n", "layers:", ["layers.keep = 0", "greater than 0"]),
    ("text-keep-and-layers", TEXT + "    - layers: {keep: 2, layers: [0, 1]}\n", "layers:", ["exactly one of keep"]),
    ("text-prune-nothing", TEXT + "    - prune: {heads: 0, ffn: 0}\n", "prune:", ["heads and ffn are both 0"]),
    ("text-quantize-static", TEXT + "    - quantize: static\n", "quantize:", ["\"static\"", "'dynamic'"]),
    ("text-image-step", TEXT + "    - sparsify: {sparsity: 0.5}\n", "sparsify:",
     ["'sparsify'", "an image step", "a text recipe"]),
    ("text-step-in-image", "strategies:\n  s:\n    - load\n    - layers: 3\n", "layers:",
     ["'layers'", "a text step", "an image recipe"]),
    ("text-loss-teacher", TEXT + "    - distill: {epochs: 1, losses: [{name: embed-cos, teacher: other}]}\n",
     "distill:", ["'other'", "one teacher"]),
    ("text-layers-first", TEXT.replace("    - load\n", "") + "    - layers: 3\n", "layers:",
     ["step 1 (layers)", "`- load: teacher`"]),
    ("text-val-size", TEXT.replace("wordnet-glosses}", "wordnet-glosses, val_size: 10}") + "    - evaluate\n",
     "val_size", ["data.val_size", "image datasets", "val_fraction"]),
    # -- found against the data and models, before anything is written ------------------------------
    ("teacher-missing", "teacher: /no/such/teacher\nstrategies: {s: [load]}\n", "teacher:",
     ["/no/such/teacher", "strategy 's'", "shipped model"]),
    ("teacher-not-named", "strategies: {s: [load]}\n", "s: [load]", ["strategy 's'", "names none"]),
    ("load-source-missing", "strategies:\n  s:\n    - load: ./nowhere\n", "load:",
     ["'./nowhere'", "strategy 's'", "fashion-mnist-teacher"]),
    ("student-unknown", "teacher: TEACHER\nstrategies:\n  s:\n    - distill: {student: cnn-tny, epochs: 1}\n",
     "distill:", ["'cnn-tny'", "Did you mean 'cnn-tiny'", "strategy 's'"]),
    ("model-unknown", "strategies:\n  s:\n    - train: {model: resnet21, epochs: 1}\n", "train:",
     ["'resnet21'", "Registered models:", "strategy 's'"]),
    ("model-kwargs", "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, model_kwargs: {heads: 3}}\n",
     "train:", ["'cnn-tiny'", "heads", "strategy 's'"]),
    ("model-import-not-allowed", "strategies:\n  s:\n    - train: {model: 'userpkg:tiny', epochs: 1}\n", "train:",
     ["'userpkg:tiny'", "--allow-import userpkg"]),
    ("dataset-unknown", "data: {name: fashion-mnst}\nstrategies: {s: [load]}\n", "data:",
     ["'fashion-mnst'", "Did you mean 'fashion-mnist'", "synthetic"]),
    ("data-option-unknown", "data: {name: synthetic, options: {noize: 1.0}}\nstrategies:\n  s:\n    - train: "
     "{model: cnn-tiny, epochs: 1}\n", "noize", ["data.options.noize", "Did you mean 'noise'"]),
    ("data-option-value", "data: {name: synthetic, options: {num_classes: 1}}\nstrategies:\n  s:\n    - train: "
     "{model: cnn-tiny, epochs: 1}\n", "data:", ["num_classes", "at least 2"]),
    ("student-tap", "teacher: TEACHER\nstrategies:\n  s:\n    - distill: {student: cnn-tiny, epochs: 1, cache: none, losses: "
     "[{name: fitnet, student_tap: features.9, teacher_tap: features.1}]}\n", "distill:",
     ["'features.9'", "Closest real paths", "strategy 's'", "losses[0]"]),
    ("teacher-tap", "teacher: TEACHER\nstrategies:\n  s:\n    - distill: {student: cnn-tiny, epochs: 1, cache: none, losses: "
     "[{name: fitnet, student_tap: features.1, teacher_tap: layer9}]}\n", "distill:",
     ["'layer9'", "teacher 'teacher'", "Closest real paths"]),
    ("prune-ratios-path", "teacher: TEACHER\nstrategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, ratios: "
     "{features.9: 0.5}}\n", "prune:", ["'features.9'", "Closest real paths", "step 2 (prune)"]),
    ("prune-ignore-path", "teacher: TEACHER\nstrategies:\n  s:\n    - load\n    - prune: {ratio: 0.5, ignore: "
     "[feature.0]}\n", "prune:", ["'feature.0'", "step 2 (prune)"]),
    ("sparsify-ignore-path", "teacher: TEACHER\nstrategies:\n  s:\n    - load\n    - sparsify: {sparsity: 0.5, "
     "ignore: [fc2]}\n", "sparsify:", ["'fc2'", "step 2 (sparsify)"]),
    ("evaluate-no-val", "teacher: TEACHER\ndata: {name: synthetic, options: {val_size: 0}}\nstrategies:\n  s:\n"
     "    - load\n    - evaluate: {split: val}\n", "evaluate:", ["split: val", "no validation split"]),
]

IDS = [c[0] for c in CASES]


def _write(sandbox, teacher_dir: Path, body: str) -> tuple[Path, str]:
    text = text_of(body, teacher_dir)
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def _needles(text: str, mark: str | None, needles: list[str]) -> list[str]:
    where = "recipe.yaml" if mark is None else f"recipe.yaml:{line_of(text, mark)}"
    return [where, *needles]


@pytest.mark.parametrize("command", ["compare", "run"])
@pytest.mark.parametrize(("case", "body", "mark", "needles"), CASES, ids=IDS)
def test_bad_recipe_cli(sandbox, teacher_dir, command, case, body, mark, needles):
    path, text = _write(sandbox, teacher_dir, body)
    extra = ["--strategy", "s"] if command == "run" else []
    result = sandbox.cli(command, path, "--out", sandbox.out, "--quiet", *extra)
    sandbox.expect_exit_2(result, *_needles(text, mark, needles))
    assert not sandbox.out.exists(), "a recipe that fails validation must not create --out"


@pytest.mark.parametrize(("case", "body", "mark", "needles"), CASES, ids=IDS)
def test_bad_recipe_api(sandbox, teacher_dir, case, body, mark, needles):
    path, text = _write(sandbox, teacher_dir, body)
    exc = sandbox.call(lambda: compare(path, sandbox.out, progress=False, log=lambda _: None), RecipeError)
    sandbox.expect_message(exc, *_needles(text, mark, needles))
    assert not sandbox.out.exists()


# -- the file itself -------------------------------------------------------------------------------


def test_non_utf8_names_byte_and_line(sandbox):
    path = sandbox.inputs / "recipe.yaml"
    path.write_bytes(b"version: 1\nname: bad\nstrategies:\n  s: [load]  # caf\xe9\n")
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, "recipe.yaml:4", "not UTF-8", "0xe9", "byte offset 51")
    sandbox.expect_exit_2(sandbox.cli("compare", path, "--out", sandbox.out), "recipe.yaml:4", "UTF-8")


def test_oversized_recipe_is_refused_unread(sandbox):
    path = sandbox.inputs / "recipe.yaml"
    path.write_text("version: 1\nname: big\nstrategies: {s: [load]}\n" + "#" * (2 << 20))
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, "recipe.yaml", "2,097,", "at most 1 MiB")
    sandbox.expect_exit_2(sandbox.cli("run", path, "--out", sandbox.out), "at most 1 MiB")
    assert not sandbox.out.exists()


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_recipe_path_that_is_not_a_file(sandbox, what):
    path = sandbox.inputs / "recipe.yaml"
    if what == "directory":
        path.mkdir()
    result = sandbox.cli("compare", path, "--out", sandbox.out)
    sandbox.expect_exit_2(result, "recipe.yaml", "no such file" if what == "missing" else "a directory")


# -- the output directory --------------------------------------------------------------------------


GOOD = "strategies:\n  s:\n    - train: {model: cnn-tiny, epochs: 1, channels_last: false}\n"


def test_out_is_a_file(sandbox, teacher_dir):
    path, _ = _write(sandbox, teacher_dir, GOOD)
    sandbox.out.write_text("not a directory")
    for command in ("compare", "run"):
        sandbox.expect_exit_2(sandbox.cli(command, path, "--out", sandbox.out, "--quiet"),
                              "--out", "is a file, not a directory")


def test_out_under_a_file(sandbox, teacher_dir):
    path, _ = _write(sandbox, teacher_dir, GOOD)
    blocker = sandbox.inputs / "file"
    blocker.write_text("x")
    result = sandbox.cli("compare", path, "--out", blocker / "out", "--quiet")
    sandbox.expect_exit_2(result, "cannot be created", "is a file")


@pytest.mark.parametrize("command", ["compare", "run"])
def test_resume_with_force(sandbox, teacher_dir, command):
    path, _ = _write(sandbox, teacher_dir, GOOD)
    result = sandbox.cli(command, path, "--out", sandbox.out, "--resume", "--force", "--quiet")
    sandbox.expect_exit_2(result, "--resume", "--force")
    assert not sandbox.out.exists()


def test_unknown_strategy_flags(sandbox, teacher_dir):
    path, _ = _write(sandbox, teacher_dir, GOOD)
    sandbox.expect_exit_2(sandbox.cli("run", path, "--out", sandbox.out, "--strategy", "t"),
                          "'t'", "Strategies: s")
    sandbox.expect_exit_2(sandbox.cli("compare", path, "--out", sandbox.out, "--strategies", "s,x"),
                          "'x'", "Strategies of 'bad': s")
    assert not sandbox.out.exists()


def test_fixed_recipe_runs_after_a_refused_one(sandbox, teacher_dir):
    bad = GOOD.replace("epochs: 1", "epochs: 1, lr: .inf")
    path, _ = _write(sandbox, teacher_dir, bad)
    sandbox.expect_exit_2(sandbox.cli("run", path, "--out", sandbox.out, "--quiet"), "train.lr", "finite")
    assert not sandbox.out.exists()
    _write(sandbox, teacher_dir, GOOD)
    code, out, err = sandbox.cli("run", path, "--out", sandbox.out, "--quiet")
    assert code == 0, out + err


def test_fixed_recipe_claims_the_folder_of_a_run_that_finished_no_step(sandbox, teacher_dir):
    """A run that fails while training (lr 1e30: the loss becomes NaN) finished no step; the fixed
    recipe, run by the same command, takes the folder over without --force."""
    path, _ = _write(sandbox, teacher_dir, GOOD.replace("epochs: 1", "epochs: 1, lr: 1.0e+30"))
    code, out, err = sandbox.cli("run", path, "--out", sandbox.out, "--quiet")
    assert code == 2 and "nan" in (out + err).lower(), out + err
    _write(sandbox, teacher_dir, GOOD)
    code, out, err = sandbox.cli("run", path, "--out", sandbox.out, "--quiet")
    assert code == 0, out + err
    assert "finished no step" in out


def test_load_recipe_api_names_the_strategy(sandbox):
    path = sandbox.inputs / "recipe.yaml"
    path.write_text("version: 1\nname: bad\nstrategies:\n  good: [load]\n  bad-one:\n    - prune: {ratio: 0.5}\n")
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, "recipe.yaml:6", "strategy 'bad-one'", "step 1 (prune)")
    exc = sandbox.call(lambda: run(path, sandbox.out, strategy="good", progress=False), RecipeError)
    sandbox.expect_message(exc, "strategy 'bad-one'")


# -- the same typed loss options in Python ----------------------------------------------------------


@pytest.mark.parametrize(("name", "options", "needles"), [
    ("kd", {"T": float("inf")}, ["kd", "T = inf", "finite", "T: float > 0"]),
    ("kd", {"T": float("nan")}, ["kd", "T", "nan"]),
    ("dkd", {"beta": float("inf")}, ["dkd", "beta = inf", "finite"]),
    ("dist", {"gamma": "1"}, ["dist", "gamma", "'1'"]),
    ("crd", {"num_data": 100, "nce_k": 2.5}, ["crd", "nce_k", "2.5"]),
    ("relation-kl", {"student_tap": "a", "teacher_tap": "b", "heads": 0}, ["relation-kl", "heads", "0"]),
], ids=["kd-T-inf", "kd-T-nan", "dkd-beta-inf", "dist-gamma-text", "crd-nce-k-float", "relation-kl-heads-zero"])
def test_loss_options_in_python(sandbox, name, options, needles):
    from torchslim.core.errors import TorchSlimError
    from torchslim.distill import losses as L

    exc = sandbox.call(lambda: L.create(name, **options), TorchSlimError)
    sandbox.expect_message(exc, *needles)
