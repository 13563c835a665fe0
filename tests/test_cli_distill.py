"""`torchslim distill` and `torchslim losses` end to end on synthetic data."""

import json
import shutil

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
    code = main(["distill", "--teachers", str(teacher_dir), "--student", "cnn-tiny", "--data", "synthetic",
                 "--losses", "kd:T=4,weight=0.9", "--losses", "ce:weight=0.1", "--epochs", "2", "--batch-size", "32",
                 "--lr", "0.05", "--cache", "disk", "--out", str(out), "--quiet", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == "cnn-tiny"
    assert meta["distill"]["losses"] == [{"name": "kd", "weight": 0.9, "teacher": None, "T": 4},
                                         {"name": "ce", "weight": 0.1, "teacher": None}]
    assert meta["history"]["epochs"][0]["train_kd"] >= 0
    assert (out / "cache" / "teacher").is_dir()  # one teacher named by a path: its cache folder is "teacher"
    assert main(["eval", str(out), "--json", "--batch-sizes", "1"]) == 0


def test_distill_two_teachers_and_a_feature_loss(teacher_dir, tmp_path, capsys):
    second = shutil.copytree(teacher_dir, tmp_path / "second")
    code = main(["distill", "--teachers", f"{teacher_dir},{second}", "--student", "cnn-tiny", "--data", "synthetic",
                 "--losses", "kd:T=2", "--losses", f"at:student_tap=features.3,teacher_tap=layer3,teacher={second}",
                 "--cache", "none", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "mt"), "--quiet",
                 "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "mt" / "model.json").read_text())
    assert meta["distill"]["teachers"] == [str(teacher_dir), str(second)]
    assert meta["distill"]["losses"][1]["teacher"] == str(second)


def test_distill_with_a_temperature_schedule(teacher_dir, tmp_path, capsys):
    code = main(["distill", "--teachers", str(teacher_dir), "--student", "cnn-tiny", "--data", "synthetic",
                 "--temperature", "{kind: linear, start: 8, end: 2}", "--epochs", "2", "--batch-size", "32",
                 "--out", str(tmp_path / "anneal"), "--quiet", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    first, second = json.loads((tmp_path / "anneal" / "model.json").read_text())["history"]["epochs"]
    assert first["train_temperature"] > 5.0 > second["train_temperature"]  # epoch means of 8 -> 2


@pytest.mark.parametrize(("extra", "message"), [
    (["--losses", "kdd:T=4"], "Did you mean 'kd'"),
    (["--losses", "kd:T=0"], "--losses[0].T = 0 is invalid: Input should be greater than 0"),
    (["--losses", "kd:weight=-1"], "--losses[0].weight = -1 is invalid: Input should be greater than or equal to 0"),
    (["--losses", "fitnet:student_tap=features.9,teacher_tap=layer3", "--cache", "none"],
     "no module at path 'features.9'"),
    (["--losses", "kd:T"], "KEY=VALUE"),
])
def test_distill_bad_input_exits_2(teacher_dir, tmp_path, capsys, extra, message):
    argv = ["distill", "--teachers", str(teacher_dir), "--student", "cnn-tiny", "--data", "synthetic",
            "--epochs", "1", "--out", str(tmp_path / "bad"), "--quiet", *extra]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err, err
    assert not (tmp_path / "bad" / "model.json").exists()
