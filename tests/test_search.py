"""Strategy search on tiny synthetic data: the space, the early-stopping rule, a whole search with its
front, picks and reports, the budget, resuming after SIGKILL, and two workers on one study in SQLite
and in a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from postgres_server import postgres_url  # noqa: F401
from torchslim import data, fit, models, save_model
from torchslim.pipeline import compare, load_recipe
from torchslim.pipeline.search_space import apply_field, sample
from torchslim.search import SearchConfig, build_space, search
from torchslim.search import study as study_module
from torchslim.search.trial import hopeless, interpolate

REPO = Path(__file__).resolve().parents[1]
SPACE = {"route": ["pruned", "student"], "quantize": ["none", "static"],
         "prune.ratio": {"low": 0.3, "high": 0.7}, "recovery": ["train", "distill"],
         "train.epochs": {"low": 1, "high": 2}, "distill.epochs": {"low": 1, "high": 2},
         "distill.student": ["cnn-tiny", "cnn-small"], "distill.width": {"low": 0.5, "high": 1.0}}
LOOSE = {"accuracy_floor": 60.0, "resource_budget": 1.0, "sensitive_floor": 60.0, "latency_budget": 1.0,
         "balanced_floor": 60.0, "balanced_budget": 1.0}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    bundle = data.load("synthetic", batch_size=32, seed=0)
    model = models.create("resnet8", num_classes=bundle.num_classes, in_channels=1)
    fit(model, bundle, 2, progress=False)
    out = tmp_path_factory.mktemp("search-teacher") / "teacher"
    save_model(model, out)
    return out


def recipe(tmp_path: Path, teacher: Path, name: str = "recipe.yaml", **search: object) -> Path:
    body = {"version": 1, "name": "synth", "teacher": str(teacher), "threads": 1,
            "data": {"name": "synthetic", "batch_size": 32},
            "measure": {"batch_sizes": [8], "thread_counts": [1], "rounds": 2, "max_seconds": 1},
            "scenarios": LOOSE,
            "search": {"target": {"seconds": 0.5}, "constraints": {"accuracy_floor": 40.0}, "space": SPACE,
                       "front_size": 2, **search},
            "strategies": {"teacher-fp32": [{"load": "teacher"}]}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    summary = json.loads((out / "search.json").read_text())
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{(out / 'study.db').resolve()}")
    return study.get_trials(deepcopy=False)


# -- the space -------------------------------------------------------------------------------------


def test_torchslim_search_is_the_function_and_its_package_still_imports():
    import torchslim
    import torchslim.options.search

    assert torchslim.search is search and torchslim.SearchConfig is SearchConfig
    assert torchslim.search.__module__ == "torchslim.search.run"


def test_default_space_covers_every_route_and_per_stage_ratios():
    space = build_space(None, {}, ["layer1", "layer2", "layer3"])
    keys = {d.key for d in space.dimensions}
    assert {"route", "recovery", "quantize", "prune.ratio", "prune.importance", "distill.student", "distill.width",
            "distill.depth", "distill.losses.kd.T", "distill.losses.kd.weight", "train.lr", "distill.lr",
            "prune.ratios.layer1", "prune.ratios.layer3"} <= keys
    assert set(space.choices("quantize")) == {"none", "static", "qat"}


def test_candidates_are_recipe_strategies_and_weights_stay_a_split():
    space = build_space(None, {"distill": {"cache_draws": 1}}, ["layer2"])
    pruned = space.candidate({"route": "pruned", "recovery": "distill", "quantize": "qat", "prune.ratio": 0.6,
                              "prune.ratios.layer2": 0.7, "distill.losses.kd.weight": 0.75,
                              "distill.student": "resnet8", "distill.width": 2.0})
    assert [next(iter(s)) for s in pruned] == ["load", "prune", "distill", "qat"]
    assert pruned[1]["prune"]["ratios"] == {"layer2": 0.7}
    kd = pruned[2]["distill"]
    assert "student" not in kd and "width" not in kd  # a student's fields only shape a fresh student
    assert {i["name"]: i["weight"] for i in kd["losses"]} == {"kd": 0.75, "ce": 0.25}
    student = space.candidate({"route": "student", "quantize": "none", "distill.student": "resnet8",
                               "distill.depth": 1.5})
    assert list(student[0]) == ["distill"] and student[0]["distill"]["student"] == "resnet8"
    assert student[0]["distill"]["depth"] == 1.5 and len(student) == 1
    assert apply_field({}, "ratios.layer1", 0.4) == {"ratios": {"layer1": 0.4}}


def test_sampling_is_define_by_run():
    space = build_space(SPACE, {})
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        values = sample(space, trial)
        seen.append(values)
        study.tell(trial, [0.0, 1.0])
        if values["route"] == "student":
            assert "prune.ratio" not in values and "recovery" not in values and "distill.student" in values
        else:
            assert "distill.student" not in values and "prune.ratio" in values
            assert ("train.epochs" in values) == (values["recovery"] == "train")
    assert {v["route"] for v in seen} == {"pruned", "student"}


def test_low_fidelity_rule_stops_only_what_cannot_reach_the_floor():
    cfg = SearchConfig(early_stop={"min_trials": 2, "margin": 1.0})
    finished = [{"route": "student", "curve": [[0.5, 60.0], [1.0, 70.0]], "val_accuracy": 70.0},
                {"route": "student", "curve": [[0.5, 50.0], [1.0, 66.0]], "val_accuracy": 66.0}]
    assert interpolate(finished[0]["curve"], 0.75) == pytest.approx(65.0)
    # the largest gain from halfway is +16 (50 -> 66): 52 + 16 + 1 = 69 reaches a floor of 68
    assert hopeless(finished, 68.0, "student", 0.5, 52.0, cfg) is None
    assert "under the floor 68.00%" in hopeless(finished, 68.0, "student", 0.5, 50.0, cfg)
    assert hopeless(finished, 68.0, "pruned", 0.5, 10.0, cfg) is None  # no curves of that route yet
    assert hopeless(finished[:1], 68.0, "student", 0.5, 10.0, cfg) is None  # too few finished trials
    assert hopeless(finished, None, "student", 0.5, 10.0, cfg) is None  # no floor: nothing is hopeless
    # on 128 validation images two standard errors at 68% are 8.2 points: 50 + 16 + 1 + 8.2 reaches 68
    assert hopeless(finished, 68.0, "student", 0.5, 50.0, cfg, val_samples=128) is None
    assert hopeless(finished, 68.0, "student", 0.5, 40.0, cfg, val_samples=128) is not None
    assert hopeless(finished, 68.0, "student", 0.5, 49.0, cfg, val_samples=5000) is not None  # 1.3 points


# -- a whole search --------------------------------------------------------------------------------


def test_search_measures_trials_finds_a_front_and_exports_picks_compare_reproduces(tmp_path, teacher):
    path = recipe(tmp_path, teacher, trials=6)
    out = tmp_path / "out"
    said: list[str] = []
    summary = search(path, out, budget="10m", log=said.append)
    rows = summary["trials"]
    assert len(rows) == 6 and all(r["state"] in ("complete", "pruned", "fail") for r in rows)
    measured = [r for r in rows if r["state"] == "complete"]
    assert measured and all(0 <= r["val_accuracy"] <= 100 and r["latency_ratio"] > 0 and r["bytes"] > 0
                            for r in measured)
    teacher_info = summary["teacher"]
    assert teacher_info["val_samples"] == 128  # trials are judged on the validation split
    assert summary["front"] and set(summary["front"]) <= {r["number"] for r in measured}
    for name in ("search.json", "search.md", "search.png", "search.html", "report.html", "matrix.json"):
        assert (out / name).is_file(), name
    matrix = json.loads((out / "matrix.json").read_text())
    assert matrix["data"]["test_samples"] == 256  # the front re-measured on the test set
    assert {r["strategy"] for r in matrix["rows"]} >= {"teacher-fp32"} | {f"trial-{n:04d}" for n in
                                                                          summary["final"]["measured"]}
    assert any("front:" in line and "left for trials" in line for line in said)  # the progress line
    picks = summary["final"]["picks"]
    assert picks, summary["final"]["recommendations"]
    scenario, relative = next(iter(picks.items()))
    pick = load_recipe(out / relative)
    strategy = summary["final"]["recommendations"][scenario]["strategy"]
    trial = next(r for r in rows if f"trial-{r['number']:04d}" == strategy)
    assert list(pick.strategies) == ["teacher-fp32", strategy] and pick.search is None
    again = compare(pick, tmp_path / "again", progress=False, log=lambda m: None)
    row = next(r for r in again["rows"] if r["strategy"] == strategy and r["target"] ==
               summary["final"]["recommendations"][scenario]["target"])
    first = next(r for r in matrix["rows"] if r["strategy"] == strategy and r["target"] == row["target"])
    assert row["accuracy"] == first["accuracy"]  # the exported recipe reproduces the pick
    assert trial["strategy"] == [{k: v} for s in trial["strategy"] for k, v in s.items()]
    md = (out / "search.md").read_text()
    assert "## Front" in md and "## Every trial" in md and "route=" in md


def test_a_search_killed_with_sigkill_continues_its_study_and_retries_the_killed_trial(tmp_path, teacher, monkeypatch):
    path = recipe(tmp_path, teacher, trials=4, space={**SPACE, "distill.epochs": {"low": 12, "high": 14},
                                                      "train.epochs": {"low": 12, "high": 14}})
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torchslim", "search", str(path), "--budget", "10m", "--out",
                             str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    running = None
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if not (out / "search.json").is_file() or not (out / "study.db").is_file():
                continue
            try:
                trials = trials_of(out)
            except Exception:  # noqa: BLE001  (the study is being created)
                continue
            done = [t for t in trials if t.state.is_finished()]
            running = next((t for t in trials if t.state == optuna.trial.TrialState.RUNNING), None)
            if done and running is not None and running.params:  # killed once it has its candidate
                break
        assert running is not None and proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {t.number: (t.state, t.datetime_complete) for t in trials_of(out) if t.state.is_finished()}
    spent = json.loads((out / "search.json").read_text())["spent_seconds"]
    monkeypatch.setattr(study_module, "GRACE_SECONDS", 1)  # the dead worker's heartbeat is stale at once
    time.sleep(1.5)
    summary = search(path, out, budget="10m", log=lambda m: None)
    after = {t.number: t for t in trials_of(out)}
    for number, (state, completed) in before.items():  # finished trials are not run again
        assert after[number].state == state and after[number].datetime_complete == completed
    killed = after[running.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert summary["spent_seconds"] > spent > 0  # the budget spent before the kill is carried over


def test_the_budget_is_honoured_and_the_best_so_far_is_on_disk(tmp_path, teacher):
    path = recipe(tmp_path, teacher)
    out = tmp_path / "out"
    began = time.time()
    summary = search(path, out, budget=110, log=lambda m: None)
    wall = time.time() - began
    assert wall <= 110 * 1.05, wall
    assert summary["spent_seconds"] <= 110 * 1.05
    assert len(summary["trials"]) >= 2 and summary["front"]
    stopped = [r for r in summary["trials"] if (r.get("stopped") or "").startswith("budget")]
    assert all(r["state"] == "pruned" for r in stopped)


def _two_workers(tmp_path: Path, teacher: Path, storage: str | None) -> list[optuna.trial.FrozenTrial]:
    path = recipe(tmp_path, teacher, trials=6)
    out = tmp_path / "out"
    summary = search(path, out, budget="10m", storage_url=storage, workers=2, log=lambda m: None)
    study = optuna.load_study(study_name=summary["study"],
                              storage=storage or f"sqlite:///{(out / 'study.db').resolve()}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) >= 6
    assert all(t.state.is_finished() for t in trials)  # nothing left running, nothing lost
    workers = [t.user_attrs.get("worker") for t in trials]
    assert all(workers) and len({t.number for t in trials}) == len(trials)
    assert len(set(workers)) == 2, workers  # both processes ran trials of the one study
    assert (out / "search.md").is_file() and summary["front"]
    return trials


def test_two_workers_share_one_study_in_sqlite(tmp_path, teacher):
    _two_workers(tmp_path, teacher, None)


def test_two_workers_share_one_study_in_postgresql(tmp_path, teacher, postgres_url):  # noqa: F811
    _two_workers(tmp_path, teacher, postgres_url)


def test_search_cli_runs_and_prints_the_picks(tmp_path, teacher, capsys):
    from torchslim.cli import main

    path = recipe(tmp_path, teacher, trials=3)
    code = main(["search", str(path), "--budget", "5m", "--out", str(tmp_path / "out"), "--sampler", "random"])
    assert code == 0
    said = capsys.readouterr().out
    assert "resource-limited:" in said and "search report:" in said
    summary = json.loads((tmp_path / "out" / "search.json").read_text())
    assert summary["sampler"] == "random" and len(summary["trials"]) == 3


def test_candidates_over_the_latency_budget_are_measured_but_never_trained(tmp_path, teacher):
    path = recipe(tmp_path, teacher, trials=3, constraints={"accuracy_floor": 40.0, "latency_budget": 0.01})
    summary = search(path, tmp_path / "out", budget="5m", log=lambda m: None)
    rows = summary["trials"]
    assert len(rows) == 3 and all(r["state"] == "complete" and r["untrained"] for r in rows)
    assert all(r["latency_ratio"] > 0.01 and "not trained" in r["stopped"] for r in rows)
    assert not list((tmp_path / "out" / "steps").glob("*-train-*")) and not list(
        (tmp_path / "out" / "steps").glob("*-distill-*"))  # nothing trained
    assert summary["front"] == [] and summary["final"]["measured"] == []
    assert "3 not trained" in (tmp_path / "out" / "search.md").read_text()


def test_a_per_layer_ratio_must_name_a_module_of_the_teacher(tmp_path, teacher):
    from torchslim.search import SearchError

    path = recipe(tmp_path, teacher, trials=1, space={**SPACE, "prune.ratios.layer9": {"low": 0.2, "high": 0.5}})
    with pytest.raises(SearchError) as err:
        search(path, tmp_path / "out", budget="5m", log=lambda m: None)
    message = str(err.value)
    assert "prune.ratios.layer9 names no module of the teacher" in message and "layer1, layer2, layer3" in message
    assert f"{path}:" in message
    assert not list((tmp_path / "out").glob("steps/*"))  # nothing made
