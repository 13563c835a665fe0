"""`torchslim prune` and `torchslim sparsify` end to end on synthetic data: the artifacts load with
`torchslim eval` and ``load_model``; bad input exits 2 with a message, before any training."""

import json

import pytest
import torch

from torchslim import load_model
from torchslim.cli import main


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    code = main(["train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "2", "--batch-size", "32",
                 "--lr", "0.05", "--out", str(out), "--quiet", "--threads", "1"])
    assert code == 0
    return out


def test_prune_with_kd_then_eval(teacher_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    code = main(["prune", str(teacher_dir), "--ratio", "0.5", "--importance", "l1", "--iterations", "2",
                 "--recover", "kd", "--epochs", "2", "--cache", "disk", "--round-to", "4",
                 "--ratios", "features.3=0.75", "--out", str(out), "--quiet", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "iteration 2: 0.50 of channels removed" in captured.out and "torchslim eval" in captured.out
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == "cnn-tiny" and meta["data"]["name"] == "synthetic"
    assert meta["applied_steps"][0]["kind"] == "prune.channels"
    record = meta["prune"]
    assert record["criterion"] == "l1" and record["recover"] == "kd" and len(record["history"]) == 2
    assert record["widths"]["features.3.0"] == [16, 4] and record["widths"]["features.0.0"] == [8, 4]
    assert (out / "cache").is_dir() and json.loads((out / "metrics.json").read_text())["test"]["n"] > 0
    model, _ = load_model(out)
    assert model.features[3][0].out_channels == 4
    assert main(["eval", str(teacher_dir), str(out), "--json", "--batch-sizes", "1"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[1]["parameters"] < 0.4 * records[0]["parameters"]


def test_sparsify_then_load(teacher_dir, tmp_path, capsys):
    out = tmp_path / "sparse"
    code = main(["sparsify", str(teacher_dir), "--sparsity", "0.6", "--ramp", "agp", "--epochs", "1", "--out", str(out),
                 "--quiet", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "runs no faster" in " ".join(captured.out.split())
    meta = json.loads((out / "model.json").read_text())
    assert meta["sparsify"]["ramp"] == "agp" and abs(meta["sparsify"]["sparsity"] - 0.6) < 0.01
    model, _ = load_model(out)
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - meta["sparsify"]["sparsity"]) < 1e-9


@pytest.mark.parametrize(("extra", "message"), [
    (["--ratio", "1.5"], "--ratio = 1.5 is invalid: Input should be less than 1"),
    (["--ignore", "features.9"], "no module at path 'features.9'"),
    (["--importance", "l22"], "--importance = \"l22\" is invalid: Unknown importance criterion 'l22'. Did you mean 'l2'"),
    (["--ratios", "features.3"], "--ratios: expected KEY=VALUE, got 'features.3'"),
    (["--ratios", "features.3=1"], "ratios['features.3'] = 1 must be a fraction of channels in (0, 1)"),
    (["--iterations", "2", "--steps", "2"], "unrecognized arguments: --steps"),
    (["--recover", "none"], "epochs = 1 recovery epochs with recover='none' would never run"),
])
def test_prune_bad_input_exits_2(teacher_dir, tmp_path, capsys, extra, message):
    argv = ["prune", str(teacher_dir), "--recover", "kd", "--epochs", "1", "--out", str(tmp_path / "bad"), "--quiet", *extra]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad" / "model.json").exists()
