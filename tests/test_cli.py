"""The torchslim command line: help, listings, train -> eval, and exit code 2 on bad input."""

import json
import subprocess
import sys

import pytest

from torchslim.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_is_for_newcomers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "eval", "models", "datasets", "examples"):
        assert word in out


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "usage: torchslim" in out


def test_console_script_installed():
    result = subprocess.run([sys.executable, "-m", "torchslim.cli", "train", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--epochs" in result.stdout and "resumes" in result.stdout


def test_listings(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "resnet20" in out and "272,186" in out and "cnn-small" in out
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "fashion-mnist" in out and "synthetic" in out


def test_train_then_eval(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "3",
                         "--batch-size", "32", "--lr", "0.05", "--out", str(out_dir), "--quiet", "--threads", "1")
    assert code == 0, err
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["model"]["name"] == "cnn-tiny" and meta["data"]["name"] == "synthetic"
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 256 and metrics["test"]["accuracy"] > 50

    code, out, err = run(capsys, "eval", str(out_dir), "--json", "--batch-sizes", "1", "--thread-counts", "1", "--rounds", "2", "--max-seconds", "2")
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert record["bytes"] == (out_dir / "model.safetensors").stat().st_size
    assert record["latency"][0]["batch_size"] == 1

    # Training into a finished run is refused rather than overwriting it.
    code, _, err = run(capsys, "train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1",
                       "--out", str(out_dir), "--quiet")
    assert code == 2 and "--force" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--model", "resnet2O", "--data", "synthetic", "--epochs", "1"], "Did you mean 'resnet20'"),
    (["train", "--model", "cnn-tiny", "--data", "fashion-mnst", "--epochs", "1"], "Did you mean 'fashion-mnist'"),
    (["train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "0"], "--epochs = 0 is invalid: Input should be greater than 0"),
    (["train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--batch-size", "0"], "positive integer"),
    (["train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--schedule", "cosin"], "'cosine'"),
    (["eval", "no/such/run"], "neither a checkpoint directory nor a shipped model"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2(tmp_path, capsys, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "x"), "--quiet"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err
    assert not (tmp_path / "x" / "model.json").exists()
