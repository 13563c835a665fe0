"""benchmarks/_common.py: what every benchmark script does the same way (resume, settings, threads)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from torchslim.core.errors import TorchSlimError


@dataclasses.dataclass(frozen=True)
class Knobs:
    epochs: int = 5
    train_threads: int = 2


def test_previous_record_resumes_only_the_same_settings(bench_scripts, tmp_path, capsys):
    from _common import previous_record

    path = tmp_path / "r.json"
    assert previous_record(path, {"a": 1}, restart=False) is None  # nothing recorded yet
    path.write_text(json.dumps({"config": {"a": 1}, "rows": [1]}))
    assert previous_record(path, {"a": 1}, restart=False)["rows"] == [1]
    assert previous_record(path, {"a": 1}, restart=True) is None and path.is_file()

    assert previous_record(path, {"a": 2}, restart=False, set_aside=False) is None
    assert path.is_file() and "starting afresh" in capsys.readouterr().out
    assert previous_record(path, {"a": 2}, restart=False) is None
    kept = tmp_path / "r.other-settings.json"
    assert not path.exists() and json.loads(kept.read_text())["rows"] == [1]
    assert "moved to" in capsys.readouterr().out

    path.write_text("{not json")
    with pytest.raises(TorchSlimError, match=r"r\.json is not valid JSON .*--restart"):
        previous_record(path, {"a": 1}, restart=False)


def test_settings_from_replaces_only_the_options_given(bench_scripts):
    from _common import settings_from

    quick, full = Knobs(epochs=1, train_threads=1), Knobs()
    args = argparse.Namespace(quick=False, epochs=None, threads=4)
    assert settings_from(args, quick, full, {"epochs": "epochs", "threads": "train_threads"}) == Knobs(5, 4)
    args = argparse.Namespace(quick=True, epochs=3)
    assert settings_from(args, quick, full, ("epochs",)) == Knobs(epochs=3, train_threads=1)


def test_comma_separated_names_what_it_expected(bench_scripts):
    from _common import comma_separated

    assert comma_separated(float, "numbers")("0.3,0.7") == (0.3, 0.7)
    with pytest.raises(argparse.ArgumentTypeError, match="expected comma-separated integers, got '1,x'"):
        comma_separated(int, "integers")("1,x")


def test_torch_threads_are_restored_even_after_an_error(bench_scripts):
    from _common import torch_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)  # a script may change it again inside
        raise RuntimeError("stop")
    assert torch.get_num_threads() == before
