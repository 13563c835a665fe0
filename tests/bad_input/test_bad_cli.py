"""Bad command-line flags: every one exits 2 naming the flag, the value and what is valid, before any
data is loaded or anything is written (``--out`` is never created)."""

from __future__ import annotations

import pytest

TRAIN = ["train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1"]
DISTILL = ["distill", "--teachers", "fashion-mnist-teacher", "--student", "cnn-tiny", "--data", "synthetic",
           "--epochs", "1"]
PRUNE = ["prune", "fashion-mnist-teacher"]
SPARSIFY = ["sparsify", "fashion-mnist-teacher"]
QUANTIZE = ["quantize", "fashion-mnist-teacher"]

# (id, argv without --out, needles)
CASES = [
    # train
    ("train-model-unknown", ["train", "--model", "cnn-tny", "--epochs", "1"],
     ["--model", "'cnn-tny'", "Did you mean 'cnn-tiny'", "resnet20"]),
    ("train-epochs-zero", [*TRAIN[:-1], "0"], ["--epochs", "greater than 0", "0"]),
    ("train-epochs-text", [*TRAIN[:-1], "two"], ["--epochs", '"two"', "valid integer"]),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], ["--lr", "finite number", "valid: > 0", "nan"]),
    ("train-lr-inf", [*TRAIN, "--lr", "inf"], ["--lr", "finite number", "valid: > 0", "Infinity"]),
    ("train-lr-negative", [*TRAIN, "--lr", "-1"], ["--lr", "greater than 0", "-1"]),
    ("train-warmup-epochs", [*TRAIN, "--warmup-epochs", "5"], ["warmup_epochs = 5.0", "less than epochs = 1"]),
    ("train-label-smoothing", [*TRAIN, "--label-smoothing", "1"], ["--label-smoothing", "less than 1", "= 1"]),
    ("train-weight-decay", [*TRAIN, "--weight-decay", "-0.1"], ["--weight-decay", "greater than or equal to 0", "-0.1"]),
    ("train-optimizer", [*TRAIN, "--optimizer", "adam"], ["--optimizer", '"adam"', "sgd", "adamw"]),
    ("train-schedule", [*TRAIN, "--schedule", "linear"], ["--schedule", '"linear"', "onecycle", "cosine"]),
    ("train-data-unknown", ["train", "--model", "cnn-tiny", "--data", "fashion", "--epochs", "1"],
     ["--data", "'fashion'", "Did you mean 'fashion-mnist'"]),
    ("train-batch-size", [*TRAIN, "--batch-size", "0"], ["--batch-size", "positive integer"]),
    ("train-val-size", [*TRAIN, "--val-size", "-1"], ["--val-size", ">= 0", "'-1'"]),
    ("train-data-root-unused", [*TRAIN, "--data-root", "/srv/data"], ["--data-root /srv/data", "'synthetic' has no use",
                                                                      "fashion-mnist"]),
    ("train-width", [*TRAIN, "--width", "0"], ["--width", "greater than 0", "= 0"]),
    # distill
    ("distill-loss-T-zero", [*DISTILL, "--losses", "kd:T=0"], ["--losses[0].T = 0", "greater than 0", "T: float > 0"]),
    ("distill-loss-T-text", [*DISTILL, "--losses", "kd:T=abc"], ['--losses[0].T = "abc"', "valid number", "T: float > 0"]),
    ("distill-loss-T-inf", [*DISTILL, "--losses", "kd:T=inf"], ["--losses[0].T = Infinity", "finite"]),
    ("distill-loss-unknown-option", [*DISTILL, "--losses", "kd:Q=1"], ["'Q'", "Its options: T"]),
    ("distill-loss-unknown", [*DISTILL, "--losses", "kdd"], ["'kdd'", "Did you mean 'kd'"]),
    ("distill-loss-twice", [*DISTILL, "--losses", "kd:T=4,T=5"], ["--losses", "'T'", "given twice"]),
    ("distill-loss-weight-nan", [*DISTILL, "--losses", "kd:weight=nan"], ["--losses[0].weight = NaN", "finite number"]),
    ("distill-loss-no-taps", [*DISTILL, "--losses", "fitnet"], ["fitnet", "student_tap", "required"]),
    ("distill-loss-no-value", [*DISTILL, "--losses", "kd:T"], ["--losses", "KEY=VALUE", "'T'"]),
    ("distill-cache-draws", [*DISTILL, "--cache", "none", "--cache-draws", "2"], ["--cache-draws = 2", "cache = 'none'"]),
    ("distill-mix-cache", [*DISTILL, "--mix", "mixup", "--cache", "memory"], ['--mix = "mixup"', "cache = 'memory'"]),
    ("distill-teacher-weights-count", [*DISTILL, "--teachers", "fashion-mnist-teacher,fashion-mnist-student",
                                       "--teacher-weights", "1"],
     ["--teacher-weights", "one weight >= 0 per teacher (2: fashion-mnist-teacher, fashion-mnist-student)"]),
    ("distill-teacher-weights-nan", [*DISTILL, "--teacher-weights", "nan"], ["--teacher-weights", "NaN", "finite"]),
    ("distill-teacher-weights-zero", [*DISTILL, "--teacher-weights", "0"], ["--teacher-weights", "not all zero"]),
    ("distill-student-unknown", [*DISTILL[:3], "--student", "cnn-tny", "--epochs", "1"],
     ["--student", "'cnn-tny'", "Did you mean 'cnn-tiny'"]),
    # (the text student's own values: tests/bad_input/test_bad_text_options.py)
    ("distill-text-flag-on-images", [*DISTILL, "--losses", "kd", "--keep", "3"], ["--keep", "image dataset"]),
    # prune
    ("prune-ratio-high", [*PRUNE, "--ratio", "1.5"], ["--ratio = 1.5 is invalid", "less than 1"]),
    ("prune-ratio-zero", [*PRUNE, "--ratio", "0"], ["--ratio = 0 is invalid", "greater than 0"]),
    ("prune-ratio-nan", [*PRUNE, "--ratio", "nan"], ["--ratio = NaN is invalid", "finite number"]),
    ("prune-importance", [*PRUNE, "--importance", "l3"], ["--importance = \"l3\"", "Did you mean 'l2'", "taylor"]),
    ("prune-recover-none-epochs", [*PRUNE, "--recover", "none", "--epochs", "3"],
     ["epochs = 3", "recover='none' would never run"]),
    ("prune-recover-kd-no-epochs", [*PRUNE, "--recover", "kd", "--epochs", "0"], ["recover='kd' needs epochs > 0"]),
    ("prune-recover-unknown", [*PRUNE, "--recover", "distill"], ["--recover = \"distill\"", "'kd'", "'finetune'"]),
    ("prune-ratios-value", [*PRUNE, "--ratios", "layer3=2"], ["--ratios", "ratios['layer3'] = 2", "(0, 1)"]),
    ("prune-temperature", [*PRUNE, "--T", "0"], ["--T = 0 is invalid", "greater than 0"]),
    ("prune-head-ratio", [*PRUNE, "--head-ratio", "1"], ["--head-ratio = 1 is invalid", "less than 1"]),
    ("prune-epochs-negative", [*PRUNE, "--epochs", "-1"], ["--epochs = -1 is invalid", "greater than or equal to 0"]),
    # sparsify
    ("sparsify-one", [*SPARSIFY, "--sparsity", "1"], ["--sparsity = 1 is invalid", "less than 1"]),
    ("sparsify-negative", [*SPARSIFY, "--sparsity", "-0.1"], ["--sparsity = -0.1 is invalid", "greater than 0"]),
    ("sparsify-agp-no-epochs", [*SPARSIFY, "--ramp", "agp"], ["ramp='agp'", "needs epochs > 0"]),
    ("sparsify-scope", [*SPARSIFY, "--scope", "all"], ["--scope = \"all\"", "'global'", "'layer'"]),
    # quantize
    ("quantize-mode", [*QUANTIZE, "--mode", "int4"], ["--mode = \"int4\"", "'static' or 'dynamic'"]),
    ("quantize-mode-qat", [*QUANTIZE, "--mode", "qat"], ["--mode qat", "torchslim qat"]),
    ("quantize-calibration-batches", [*QUANTIZE, "--calibration-batches", "0"],
     ["--calibration-batches = 0", "greater than 0"]),
    ("quantize-dynamic-calibration", [*QUANTIZE, "--mode", "dynamic", "--calibration-method", "entropy"],
     ["--calibration-method", "--mode dynamic"]),
    ("quantize-dynamic-batches", [*QUANTIZE, "--mode", "dynamic", "--calibration-batches", "4"],
     ["--calibration-batches", "--mode dynamic"]),
    ("quantize-teacher", [*QUANTIZE, "--teacher", "source"], ["unrecognized arguments", "--teacher"]),
    ("quantize-epochs", [*QUANTIZE, "--epochs", "2"], ["unrecognized arguments", "--epochs"]),
    ("qat-lr-nan", ["qat", "fashion-mnist-teacher", "--lr", "nan"], ["--lr = NaN", "finite"]),
    ("quantize-operands", [*QUANTIZE, "--operand-types", "s16"], ["--operand-types = \"s16\"", "'u8s8'"]),
    ("quantize-source-missing", ["quantize", "nowhere"], ["'nowhere'", "fashion-mnist-teacher"]),
    # sources and data that do not exist
    ("distill-teacher-missing", ["distill", "--teachers", "nowhere", *DISTILL[3:], "--losses", "kd"],
     ["'nowhere'", "neither a checkpoint directory nor a shipped model"]),
    ("prune-target-missing", ["prune", "nowhere"], ["'nowhere'", "fashion-mnist-teacher"]),
    ("sparsify-target-missing", ["sparsify", "nowhere"], ["'nowhere'", "fashion-mnist-teacher"]),
    ("train-data-root-missing", ["train", "--model", "cnn-tiny", "--epochs", "1", "--data-root", "/no/such/root"],
     ["/no/such/root", "does not exist"]),
]


@pytest.mark.parametrize(("case", "argv", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_flag(sandbox, case, argv, needles):
    result = sandbox.cli(*argv, "--out", sandbox.out)
    sandbox.expect_exit_2(result, *needles)
    assert not sandbox.out.exists(), "a refused command must not create --out"


@pytest.mark.parametrize("command", [TRAIN, PRUNE, QUANTIZE], ids=["train", "prune", "quantize"])
def test_out_is_a_file(sandbox, command):
    blocker = sandbox.inputs / "taken"
    blocker.write_text("x")
    sandbox.expect_exit_2(sandbox.cli(*command, "--out", blocker), "--out", "is a file")
    assert blocker.read_text() == "x"


def test_out_below_a_file(sandbox):
    blocker = sandbox.inputs / "taken"
    blocker.write_text("x")
    sandbox.expect_exit_2(sandbox.cli(*TRAIN, "--out", blocker / "run"), "--out", "cannot be created", "is a file")


def test_unknown_command(sandbox):
    sandbox.expect_exit_2(sandbox.cli("compres", "x.yaml"), "invalid choice", "'compres'", "compare")


@pytest.mark.parametrize(("argv", "needles"), [
    (["eval", "fashion-mnist-teacher", "--batch-sizes", "0,64"], ["--batch-sizes", "positive integer", "[0, 64]"]),
    (["eval", "fashion-mnist-teacher", "--thread-counts", "one"], ["--thread-counts", '"one"', "valid integer"]),
    (["eval", "nowhere"], ["'nowhere'", "fashion-mnist-teacher"]),
], ids=["eval-batch-sizes", "eval-thread-counts", "eval-target-missing"])
def test_bad_eval(sandbox, argv, needles):
    sandbox.expect_exit_2(sandbox.cli(*argv), *needles)
