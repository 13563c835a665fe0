"""`torchslim distill` and `torchslim losses` end to end on synthetic data."""

import json

import pytest

from torchslim.cli import main


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    code = main(["train", "--model", "resnet8", "--data", "synthetic", "--epochs", "2", "--batch-size", "32",
                 "--lr", "0.05", "--out", str(out), "--quiet", "--threads", "1"])
    assert code == 0
    return out


def test_losses_listing(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    for name in ("kd", "dkd", "fitnet", "at", "crd"):
        assert name in out


def test_distill_with_cache_then_eval(teacher_dir, tmp_path, capsys):
    out = tmp_path / "kd"
    code = main(["distill", "--teacher", str(teacher_dir), "--student", "cnn-tiny", "--data", "synthetic",
                 "--loss", "kd:T=4,weight=0.9", "--loss", "ce:weight=0.1", "--epochs", "2", "--batch-size", "32",
                 "--lr", "0.05", "--cache", "disk", "--out", str(out), "--quiet", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == "cnn-tiny"
    assert meta["distill"]["losses"] == [["kd", {"T": 4, "weight": 0.9}], ["ce", {"weight": 0.1}]]
    assert meta["history"]["epochs"][0]["train_kd"] >= 0
    assert (out / "cache" / "teacher").is_dir()
    assert main(["eval", str(out), "--json", "--batch-sizes", "1"]) == 0


def test_distill_two_teachers_and_a_feature_loss(teacher_dir, tmp_path, capsys):
    code = main(["distill", "--teacher", str(teacher_dir), "--teacher", str(teacher_dir),
                 "--student", "cnn-tiny", "--data", "synthetic", "--loss", "kd:T=2",
                 "--loss", "at:student_tap=features.3,teacher_tap=layer3,teacher=teacher1",
                 "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "mt"), "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--loss", "kdd:T=4"], "Did you mean 'kd'"),
    (["--loss", "kd:T=0"], "option T = 0 is invalid: Input should be greater than 0"),
    (["--loss", "kd:weight=-1"], "weight=-1 must be a finite number >= 0"),
    (["--loss", "fitnet:student_tap=features.9,teacher_tap=layer3"], "no module at path 'features.9'"),
    (["--loss", "kd:T"], "KEY=VALUE"),
])
def test_distill_bad_input_exits_2(teacher_dir, tmp_path, capsys, extra, message):
    argv = ["distill", "--teacher", str(teacher_dir), "--student", "cnn-tiny", "--data", "synthetic",
            "--epochs", "1", "--out", str(tmp_path / "bad"), "--quiet", *extra]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad" / "model.json").exists()
