"""Bad searches: every one refused with exit 2 (``torchslim search``), or RecipeError / SearchError
(``torchslim.search.search``), before any training and before the output directory is written.

A ``search:`` section is checked when its recipe is parsed, so a bad space, fixed parameter,
objective or target names ``recipe.yaml:<line>``; the budget, workers, storage URL, student names
and output directory are checked by ``search()`` before it claims ``--out``. Each message names the
value, where it came from and what is valid.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from torchslim import models, save_model
from torchslim.pipeline import RecipeError, load_recipe
from torchslim.search import SearchError, SpaceError, build_space, search

GOOD_SPACE = "search:\n  space:\n    route: [pruned]\n    prune.ratio: {low: 0.2, high: 0.5}\n"
# A budget just over the minimum and one trial: were a refusal to slip through, the search that
# follows stays short instead of running for an hour.
BOUND = ("--budget", "3m", "--trials", "1")
LIMIT = {"budget": "3m", "trials": 1}
TEXT = "version: 1\nname: bad\nteacher: minilm\ndata: {name: wordnet-glosses}\nstrategies:\n  s:\n    - load\n"


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """An untrained cnn-small for the synthetic data: nothing here trains or measures it."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("bad-search-teacher") / "teacher"
    save_model(models.create("cnn-small", num_classes=4, in_channels=1), out)
    return out


def text_of(search_section: str, teacher: Path) -> str:
    """A tiny synthetic image recipe with one strategy, then ``search_section``."""
    head = (f"version: 1\nname: bad\nteacher: {teacher}\ndata: {{name: synthetic, batch_size: 32}}\n"
            "strategies:\n  t: [load]\n")
    return head + textwrap.dedent(search_section)


def write(sandbox, text: str) -> Path:
    path = sandbox.inputs / "recipe.yaml"
    path.write_text(text)
    return path


def line_of(text: str, mark: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if mark in line)


def quiet(_: str) -> None:
    pass


# -- the search section, refused while the recipe is parsed ------------------------------------------
# (id, search section, mark: a text on the line the message must name, needles)
PARSE_CASES = [
    ("space-empty", "search:\n  space: {}\n", "space: {}", ["the space is empty", "leave `space` out"]),
    ("choices-empty", "search:\n  space:\n    prune.importance: []\n", "prune.importance",
     ["prune.importance", "empty list of choices", "at least one value"]),
    ("unknown-field", "search:\n  space:\n    prune.ratoi: {low: 0.2, high: 0.5}\n", "prune.ratoi",
     ["'prune.ratoi'", "no field 'ratoi'", "did you mean 'ratio'", "Fields of prune:"]),
    ("unknown-step", "search:\n  space:\n    pruen.ratio: {low: 0.2, high: 0.5}\n", "pruen.ratio",
     ["'pruen.ratio'", "did you mean 'prune'", "prune, train, distill, quantize, qat"]),
    ("not-a-dimension", "search:\n  space:\n    distill.teachers: [teacher]\n", "distill.teachers",
     ["'distill.teachers'", "not something a search varies", "Fields of distill:"]),
    ("choice-given-range", "search:\n  space:\n    prune.importance: {low: 1, high: 2}\n", "prune.importance",
     ["prune.importance is a choice", "a list of choices, not a range"]),
    ("ratio-above-bounds", "search:\n  space:\n    prune.ratio: {low: 0.2, high: 1.2}\n", "prune.ratio",
     ["prune.ratio = 1.2", "less than 1"]),
    ("lr-negative", "search:\n  space:\n    distill.lr: {low: -1, high: 0.1}\n", "distill.lr",
     ["distill.lr = -1", "greater than 0"]),
    ("low-above-high", "search:\n  space:\n    prune.ratio: {low: 0.8, high: 0.2}\n", "prune.ratio",
     ["search.space.prune.ratio", "low = 0.8 is above high = 0.2"]),
    ("log-from-zero", "search:\n  space:\n    distill.lr: {low: 0, high: 0.1, log: true}\n", "distill.lr",
     ["search.space.distill.lr", "log = true needs low > 0", "low = 0"]),
    ("range-key-misspelled", "search:\n  space:\n    prune.ratio: {low: 0.2, hgh: 0.5}\n", "prune.ratio",
     ["unknown key 'search.space.prune.ratio.hgh'", "Did you mean 'high'?", "Valid keys here: low, high, log, step."]),
    ("step-negative", "search:\n  space:\n    prune.ratio: {low: 0.2, high: 0.5, step: -0.1}\n", "prune.ratio",
     ["prune.ratio.step = -0.1", "greater than 0"]),
    ("dimension-scalar", "search:\n  space:\n    prune.ratio: 0.5\n", "prune.ratio",
     ["prune.ratio = 0.5", "a list of choices", "or a range"]),
    ("int-field-float-ends",
     "search:\n  space:\n    route: [pruned]\n    recovery: [train]\n    train.epochs: {low: 1.5, high: 3}\n",
     "train.epochs", ["train.epochs is an integer field", "integer ends", "1.5"]),
    ("unknown-criterion", "search:\n  space:\n    prune.importance: [l2, nope]\n", "prune.importance",
     ['prune.importance = "nope"', "'nope'", "l1", "fpgm"]),
    ("route-teacher", "search:\n  space:\n    route: [pruned, teacher]\n", "route:",
     ["route", "'teacher' is not one of pruned, student"]),
    ("quantize-dynamic", "search:\n  space:\n    quantize: [dynamic]\n", "quantize:",
     ["quantize", "'dynamic' is not one of none, static, qat"]),
    ("choice-twice", "search:\n  space:\n    route: [pruned, pruned]\n", "route:", ["route", "name a value twice"]),
    ("step-no-candidate-has",
     "search:\n  space:\n    route: [pruned]\n    recovery: [train]\n    distill.epochs: {low: 2, high: 4}\n",
     "distill.epochs", ["distill.epochs varies a step no candidate", "routes ['pruned']", "recovery ['train']",
                        "drop the dimension"]),
    ("single-valued", "search:\n  space:\n    route: [pruned]\n    prune.ratio: [0.5]\n    prune.importance: [l1]\n",
     "space:", ["every dimension has a single value", "torchslim compare"]),
    ("fixed-unknown-step", "search:\n  fixed: {nosuchstep: {}}\n", "fixed:",
     ["fixed.nosuchstep", "no 'nosuchstep' step", "Steps: prune, train, distill, quantize, qat"]),
    ("fixed-unknown-field", "search:\n  fixed: {prune: {ratoi: 0.5}}\n", "fixed:",
     ["fixed.prune", "'ratoi'", "did you mean 'ratio'"]),
    ("fixed-out-of-bounds", "search:\n  fixed: {prune: {ratio: 2}}\n", "fixed:",
     ["fixed.prune", "ratio = 2", "less than 1"]),
    ("fixed-not-a-mapping", "search:\n  fixed: {prune: 0.5}\n", "fixed:",
     ["search.fixed.prune = 0.5", "valid dictionary"]),
    ("objectives-twice", "search:\n  objectives: [accuracy, accuracy]\n", "objectives:", ["name one twice"]),
    ("objectives-no-accuracy", "search:\n  objectives: [latency, bytes]\n", "objectives:",
     ["['latency', 'bytes']", "must include accuracy"]),
    ("objectives-unknown", "search:\n  objectives: [accuracy, speed]\n", "objectives:",
     ['"speed"', "'accuracy', 'latency' or 'bytes'"]),
    ("budget-text", "search:\n  budget: abc\n", "budget:", ["'abc' is not a duration", "90s, 60m, 1h30m"]),
    ("budget-zero", "search:\n  budget: 0\n", "budget:", ["budget 0 must be a positive duration"]),
    ("torch-target-quantizes",
     "search:\n  target: {runtime: torch}\n  space:\n    quantize: [none, static]\n"
     "    prune.ratio: {low: 0.2, high: 0.5}\n", "space:",
     ["target.runtime torch", "['none', 'static']", "ONNX Runtime", "quantize: [none]"]),
    ("torch-target-default-space", "search:\n  target: {runtime: torch}\n", "search:",
     ["target.runtime torch", "the default space quantizes", "target.runtime: ort"]),
]


def _needles(text: str, mark: str, needles: list[str]) -> list[str]:
    return [f"recipe.yaml:{line_of(text, mark)}:", *needles]


@pytest.mark.parametrize("case, section, mark, needles", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_bad_section_refused_at_parse(sandbox, teacher_dir, case, section, mark, needles):
    text = text_of(section, teacher_dir)
    path = write(sandbox, text)
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    message = sandbox.expect_message(exc, *_needles(text, mark, needles))
    assert "valid list" not in message, "a range must be explained in its own words, not also as 'not a list'"
    assert "Traceback" not in message


@pytest.mark.parametrize("case, section, mark, needles", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_bad_section_cli(sandbox, teacher_dir, case, section, mark, needles):
    text = text_of(section, teacher_dir)
    path = write(sandbox, text)
    result = sandbox.cli("search", path, *BOUND, "--out", sandbox.out)
    sandbox.expect_exit_2(result, *_needles(text, mark, needles))
    assert not sandbox.out.exists(), "a recipe that fails validation must not create --out"


API_CASES = ["space-empty", "unknown-field", "ratio-above-bounds", "step-no-candidate-has", "fixed-unknown-step",
             "objectives-no-accuracy", "torch-target-quantizes"]


@pytest.mark.parametrize("case", API_CASES)
def test_bad_section_api(sandbox, teacher_dir, case):
    _, section, mark, needles = next(c for c in PARSE_CASES if c[0] == case)
    text = text_of(section, teacher_dir)
    path = write(sandbox, text)
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, log=quiet), RecipeError)
    sandbox.expect_message(exc, *_needles(text, mark, needles))
    assert not sandbox.out.exists()


def test_not_a_dimension_offers_no_lookalike(sandbox, teacher_dir):
    """distill.teachers is a field, just not one a search varies: no "did you mean" to a neighbour."""
    path = write(sandbox, text_of("search:\n  space:\n    distill.teachers: [teacher]\n", teacher_dir))
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    assert "did you mean" not in str(exc).lower(), str(exc)


def test_search_section_in_a_text_recipe(sandbox):
    text = TEXT + "search:\n  budget: 60m\n"
    path = write(sandbox, text)
    exc = sandbox.call(lambda: load_recipe(path), RecipeError)
    sandbox.expect_message(exc, f"recipe.yaml:{line_of(text, 'search:')}:", "`search:` searches image recipes",
                           "a text recipe")
    result = sandbox.cli("search", path, *BOUND, "--out", sandbox.out)
    sandbox.expect_exit_2(result, "searches image recipes")
    assert not sandbox.out.exists()


# -- students: known only once the models given to search() are -----------------------------------


STUDENTS = "search:\n  space:\n    route: [student]\n    distill.student: [cnn-small, nosuchnet]\n"


def test_unknown_student_refused_before_training(sandbox, teacher_dir):
    """A recipe may name a student that models={...} supplies, so parsing lets it through; search()
    refuses it before the teacher is loaded or --out claimed."""
    text = text_of(STUDENTS, teacher_dir)
    path = write(sandbox, text)
    load_recipe(path)
    needles = [f"recipe.yaml:{line_of(text, 'distill.student')}:", "distill.student: 'nosuchnet' is not a model",
               "Registered models:", "cnn-small", "models={name: factory}"]
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, log=quiet), SearchError)
    sandbox.expect_message(exc, *needles)
    assert not sandbox.out.exists()
    sandbox.expect_exit_2(sandbox.cli("search", path, *BOUND, "--out", sandbox.out), *needles)
    assert not sandbox.out.exists()


def test_fixed_unknown_student_refused(sandbox, teacher_dir):
    text = text_of("search:\n  fixed: {distill: {student: nosuchnet}}\n  space:\n    route: [student]\n"
                   "    distill.width: {low: 0.5, high: 1.0}\n", teacher_dir)
    path = write(sandbox, text)
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, log=quiet), SearchError)
    sandbox.expect_message(exc, f"recipe.yaml:{line_of(text, 'fixed:')}:", "fixed.distill.student: 'nosuchnet'",
                           "Registered models:")
    assert not sandbox.out.exists()


def test_student_names_checked_against_registry_and_given_models():
    space = {"route": ["student"], "distill.student": ["cnn-small", "mynet"]}
    build_space(space, {})  # unchecked: the models are not known yet
    build_space(space, {}, models=["mynet"])  # one of the models given
    with pytest.raises(SpaceError, match=r"'mynet' is not a model.*Registered models: .*cnn-small.*given: other"):
        build_space(space, {}, models=["other"])


# -- the budget --------------------------------------------------------------------------------------

BUDGET_CASES = [
    ("text", ["--budget", "abc"], ["budget = \"abc\"", "not a duration", "90s, 60m, 1h30m"]),
    ("zero", ["--budget", "0"], ["budget 0 must be a positive duration"]),
    ("negative", ["--budget=-5m"], ["'-5m' is not a duration"]),
    ("negative-after-a-space", ["--budget", "-5m"], ["budget = \"-5m\"", "'-5m' is not a duration"]),
    ("too-small", ["--budget", "1s"], ["budget 1s is too small", "one trial needs at least a minute",
                                       "give at least"]),
    ("missing", [], ["recipe.yaml", "needs a budget", "--budget 60m", "search.budget"]),
]


@pytest.mark.parametrize("case, flags, needles", BUDGET_CASES, ids=[c[0] for c in BUDGET_CASES])
def test_bad_budget_cli(sandbox, teacher_dir, case, flags, needles):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    text = sandbox.expect_exit_2(sandbox.cli("search", path, "--out", sandbox.out, *flags), *needles)
    if case == "too-small":
        minimum = re.search(r"give at least (\d+m\d+s) \(e\.g\. --budget (\d+)m\)", text)
        assert minimum, text
    assert not sandbox.out.exists()


@pytest.mark.parametrize("budget, needles", [("abc", ["not a duration"]), (-300, ["must be a positive duration"]),
                                             (True, ["is not a duration"]), (None, ["needs a budget"]),
                                             ("1s", ["too small", "give at least"])])
def test_bad_budget_api(sandbox, teacher_dir, budget, needles):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    exc = sandbox.call(lambda: search(path, sandbox.out, budget=budget, trials=1, log=quiet), SearchError)
    sandbox.expect_message(exc, *needles)
    assert not sandbox.out.exists()


# -- objectives and other options given as flags or keywords ----------------------------------------

OPTION_CASES = [
    ("objectives-twice", ["--objectives", "accuracy,accuracy"], ["objectives", "name one twice"]),
    ("objectives-no-accuracy", ["--objectives", "latency"], ["['latency']", "must include accuracy"]),
    ("objectives-unknown", ["--objectives", "accuracy,speed"], ['"speed"', "'accuracy', 'latency' or 'bytes'"]),
    ("sampler", ["--sampler", "grid"], ["grid", "tpe", "nsga2", "random"]),
    ("trials-zero", ["--trials", "0"], ["trials = 0", "greater than 0"]),
]


@pytest.mark.parametrize("case, flags, needles", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_option_cli(sandbox, teacher_dir, case, flags, needles):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    sandbox.expect_exit_2(sandbox.cli("search", path, *BOUND, "--out", sandbox.out, *flags), *needles)
    assert not sandbox.out.exists()


@pytest.mark.parametrize("options, needles", [
    ({"objectives": ["accuracy", "accuracy"]}, ["name one twice"]),
    ({"objectives": ["latency"]}, ["must include accuracy"]),
    ({"objectives": ["accuracy", "speed"]}, ['"speed"', "'accuracy', 'latency' or 'bytes'"]),
    ({"space": {"prune.ratio": {"low": 0.8, "high": 0.2}}}, ["space.prune.ratio = ", "low = 0.8 is above high"]),
    ({"nosuch": 3}, ["unknown option 'nosuch'", "Valid: budget"]),
], ids=["objectives-twice", "objectives-no-accuracy", "objectives-unknown", "space-range", "unknown-option"])
def test_bad_option_api(sandbox, teacher_dir, options, needles):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, log=quiet, **options), SearchError)
    message = sandbox.expect_message(exc, *needles)
    assert "Range[" not in message and "option unknown option" not in message, message
    assert not sandbox.out.exists()


# -- workers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_bad_workers_cli(sandbox, teacher_dir, workers):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    result = sandbox.cli("search", path, *BOUND, "--out", sandbox.out, f"--workers={workers}")
    sandbox.expect_exit_2(result, f"--workers {workers} is invalid", "positive number of worker processes")
    assert not sandbox.out.exists()


@pytest.mark.parametrize("given", ["teacher", "models", "data"])
def test_workers_with_python_objects(sandbox, teacher_dir, tiny_images, given):
    """Worker processes rebuild the recipe's own models, teacher and data: Python ones need one worker."""
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    extra = {"teacher": {"teacher": nn.Linear(4, 4)}, "models": {"models": {"mynet": nn.Linear}},
             "data": {"data": tiny_images()}}[given]
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, workers=2, log=quiet, **extra), SearchError)
    sandbox.expect_message(exc, "--workers 2", "given in Python need workers=1")
    assert not sandbox.out.exists()


# -- storage -------------------------------------------------------------------------------------------

STORAGE_CASES = [
    ("unreachable-postgres", "postgresql+psycopg2://nobody@127.0.0.1:9/nodb",
     ["cannot open the study storage", "'postgresql+psycopg2://nobody@127.0.0.1:9/nodb'", "127.0.0.1", "9"]),
    ("password-redacted", "postgresql+psycopg2://u:secret@127.0.0.1:9/db",
     ["'postgresql+psycopg2://u:***@127.0.0.1:9/db'", "cannot open the study storage"]),
    ("malformed", "notaurl", ["cannot open the study storage 'notaurl'", "sqlite:///", "postgresql+psycopg2://"]),
    ("unknown-driver", "mysql://x@127.0.0.1/db", ["cannot open the study storage 'mysql://x@127.0.0.1/db'"]),
]


@pytest.mark.parametrize("case, url, needles", STORAGE_CASES, ids=[c[0] for c in STORAGE_CASES])
def test_bad_storage(sandbox, teacher_dir, case, url, needles):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    text = sandbox.expect_exit_2(sandbox.cli("search", path, *BOUND, "--out", sandbox.out,
                                             "--storage", url), *needles)
    assert "secret" not in text
    assert not sandbox.out.exists(), "an unreachable storage must be refused before --out is claimed"
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, storage_url=url, log=quiet), SearchError)
    assert "secret" not in str(exc)
    assert not sandbox.out.exists()


# -- the output directory ------------------------------------------------------------------------------


def test_out_is_a_file(sandbox, teacher_dir):
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    sandbox.out.write_text("not a directory")
    result = sandbox.cli("search", path, *BOUND, "--out", sandbox.out)
    sandbox.expect_exit_2(result, "--out", "is a file, not a directory")
    assert sandbox.out.read_text() == "not a directory"


def test_out_holds_another_search(sandbox, teacher_dir):
    """A search.json of another identity: refused, pointing at --force, and left as it was."""
    path = write(sandbox, text_of(GOOD_SPACE, teacher_dir))
    sandbox.out.mkdir()
    state = json.dumps({"identity": "f" * 64, "recipe": "other", "spent_seconds": 12.0})
    (sandbox.out / "search.json").write_text(state)
    result = sandbox.cli("search", path, *BOUND, "--out", sandbox.out)
    sandbox.expect_exit_2(result, "holds another search", "recipe 'other'", "ffffffffffff", "--force",
                          "another --out")
    exc = sandbox.call(lambda: search(path, sandbox.out, **LIMIT, log=quiet), SearchError)
    sandbox.expect_message(exc, "holds another search", "--force")
    assert sorted(p.name for p in sandbox.out.iterdir()) == ["search.json"]
    assert (sandbox.out / "search.json").read_text() == state
