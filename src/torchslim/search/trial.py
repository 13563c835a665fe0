"""One trial of a search: a sampled candidate made by the pipeline, then measured.

A trial samples its values (:func:`torchslim.pipeline.search_space.sample`), turns them into a recipe
strategy and runs it with the runner, in the search's shared step store (``OUT/steps``), so two
candidates that begin with the same steps make them once, a step interrupted mid-training resumes
at its last epoch, and the teacher's cached logits are reused. Then it is measured, never
estimated: accuracy on the validation split (the test set is left for the final re-measurement of
the front), latency on the search's target timed in interleaved rounds against the teacher on the
same runtime at the target's batch size and threads, and the bytes of the deployed file.

Early stopping, for a multi-objective study (Optuna's pruners judge one objective only):

* **latency before training.** A candidate's latency is fixed by its architecture and its
  quantization, not by its trained weights: with a latency budget, the candidate's architecture
  (the pruned teacher, or the fresh student) is deployed as the trial would deploy it (ONNX
  Runtime FP32, or static INT8 calibrated on one batch) and timed against the teacher first; one
  whose whole interval lies over the budget can never be feasible and is not trained.
* **accuracy at low fidelity.** After each epoch of the candidate's main training step, its
  validation accuracy at that fraction of training, plus the largest gain from that fraction to
  the final accuracy seen in finished trials of the same route (plus a margin), is compared with
  the accuracy floor; below it, the trial cannot become feasible and stops. A trial stopped so
  can only have been infeasible, so the front (of feasible trials) loses nothing that the learning
  curves seen so far would have let it reach.

A stopped trial is recorded as *pruned* with its reason and what it measured before stopping.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from torchslim.options.search import SearchConfig
from torchslim.pipeline.search_space import Space, sample

MAIN_TRAINING = ("train", "distill")  # the step whose epochs the low-fidelity rule watches


def validation_only(bundle: Any) -> Any:
    """``bundle`` as a trial sees it: its training and validation splits, no test split (the test
    set is left for the final re-measurement: no step of a trial evaluates on it, and shapes are
    probed on validation images)."""
    from torchslim.data.base import DataBundle

    @dataclasses.dataclass
    class ValidationOnly(DataBundle):
        def example_batch(self, n: int = 2) -> Any:
            x, _, _ = self.val.dataset[list(range(n))]
            return x

    fields = {f.name: getattr(bundle, f.name) for f in dataclasses.fields(DataBundle)}
    return ValidationOnly(**{**fields, "test": None})


@functools.cache
def _trial_context() -> type:
    from torchslim.pipeline.runner import Context, bundle_fingerprint

    @dataclasses.dataclass
    class TrialContext(Context):
        """The runner's context for trials: steps see :func:`validation_only` data, while step keys
        hash the whole dataset, so the final comparison (which has the test split) reuses every
        step a trial made."""

        _view: Any = None

        @property
        def data(self) -> Any:
            if self._view is None:
                self._view = validation_only(self.full_data)
            return self._view

        @property
        def full_data(self) -> Any:
            return Context.data.fget(self)

        def data_key(self) -> str:
            if self._data_key is None:
                self._data_key = bundle_fingerprint(self.full_data)
            return self._data_key

    return TrialContext


def __getattr__(name: str) -> Any:  # TrialContext is built on first use: the runner imports torch
    if name == "TrialContext":
        return _trial_context()
    raise AttributeError(name)


class TrialStopped(Exception):
    """A trial stopped early: it cannot become feasible, or the budget ran out during it."""

    def __init__(self, reason: str, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.attrs = reason, dict(attrs or {})


@dataclasses.dataclass
class Baseline:
    """The teacher as every trial is compared with it: on the target runtime, and its validation accuracy."""

    val_accuracy: float
    runnable: Any
    bytes: int
    artifact: str


def steps_plain(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(steps))


def strategy_steps(recipe: Any, name: str) -> list[dict[str, Any]]:
    """A parsed recipe strategy back in recipe form (``[{step: params}, ...]``), parameters as set."""
    out = []
    for spec in recipe.strategies[name]:
        params = spec.params.model_dump(mode="json", exclude_unset=True)
        out.append({spec.name: params} if params else {spec.name: None})
    return out


def recipe_data(recipe: Any, strategies: dict[str, list[dict[str, Any]]], name: str | None = None) -> dict[str, Any]:
    """``recipe`` as plain recipe data with ``strategies`` (the baseline's first), no search section:
    what a trial runs and what a pick is exported as."""
    data = recipe.plain(exclude={"source", "search"})
    data.pop("search", None)
    data["name"] = name or recipe.name
    base = recipe.baseline_name
    data["strategies"] = {base: strategy_steps(recipe, base), **{k: v for k, v in strategies.items() if k != base}}
    data["baseline"] = base
    return data


def trial_recipe(recipe: Any, name: str, steps: list[dict[str, Any]]) -> Any:
    """The recipe a trial runs: ``recipe`` with the baseline and the candidate ``name``."""
    from torchslim.pipeline.recipe import parse

    return parse(recipe_data(recipe, {name: steps}), source=f"search candidate {name}")


class Monitor:
    """Called after each training epoch (``Context.on_epoch_end``): keeps the main training step's
    learning curve, stops the trial at the deadline or when the low-fidelity rule says it cannot
    reach the accuracy floor."""

    def __init__(self, session: Any, name: str, main_index: int | None, epochs: int, route: str) -> None:
        self.session, self.name, self.main_index, self.epochs, self.route = session, name, main_index, epochs, route
        self.curve: list[tuple[float, float]] = []

    def __call__(self, epoch: int, record: dict) -> None:
        ctx = self.session.ctx
        if time.time() > self.session.deadline:
            raise TrialStopped("budget: the search's time ran out during this trial",
                               {"curve": self.curve})
        if self.main_index is None or not ctx.where.startswith(f"{self.name}[{self.main_index}]"):
            return
        accuracy = record.get("val_accuracy")
        if accuracy is None:
            return
        fraction = (epoch + 1) / max(self.epochs, 1)
        self.curve.append((round(fraction, 4), float(accuracy)))
        if fraction >= 1:
            return
        verdict = self.session.hopeless(self.route, fraction, float(accuracy))
        if verdict is not None:
            raise TrialStopped(verdict, {"curve": self.curve})


def interpolate(curve: list[list[float]], fraction: float) -> float | None:
    """Accuracy at ``fraction`` of training on a learning curve ``[(fraction, accuracy), ...]``."""
    points = sorted((float(f), float(a)) for f, a in curve)
    if not points:
        return None
    if fraction <= points[0][0]:
        return points[0][1]
    for (f0, a0), (f1, a1) in itertools.pairwise(points):
        if f0 <= fraction <= f1:
            return a0 + (a1 - a0) * (fraction - f0) / max(f1 - f0, 1e-9)
    return points[-1][1]


def hopeless(finished: list[dict[str, Any]], floor: float | None, route: str, fraction: float, accuracy: float,
             cfg: SearchConfig, val_samples: int | None = None) -> str | None:
    """Why a trial at ``accuracy`` after ``fraction`` of its training cannot reach ``floor``, or None.

    ``finished``: the user attributes of finished trials (their route, curve and final accuracy).
    ``val_samples``: the validation split's size; two standard errors of an accuracy measured on it
    are added to the margin (on a small split, a curve's steps are mostly sampling noise).
    """
    if floor is None or not cfg.early_stop.enabled:
        return None
    mine = [t for t in finished if t.get("route") == route and t.get("curve") and t.get("val_accuracy") is not None]
    if len(mine) < cfg.early_stop.min_trials:
        return None
    gains = [t["val_accuracy"] - at for t in mine if (at := interpolate(t["curve"], fraction)) is not None]
    p = min(max(floor / 100.0, 0.0), 1.0)
    noise = 2 * 100 * math.sqrt(p * (1 - p) / val_samples) if val_samples else 0.0
    margin = cfg.early_stop.margin + noise
    reach = accuracy + max(gains) + margin
    if reach >= floor:
        return None
    return (f"low fidelity: {accuracy:.2f}% validation accuracy after {100 * fraction:.0f}% of training; the largest "
            f"gain from there seen in {len(mine)} finished {route} trials ({max(gains):+.2f}) plus the margin "
            f"({margin:.2f}: {cfg.early_stop.margin:g} and two standard errors of the validation accuracy) reaches "
            f"{reach:.2f}%, under the floor {floor:.2f}%")


def deploy(ctx: Any, model: Any, int8: bool, where: Path, runtime: str, calibration_batches: int | None = None) -> tuple[Any, Path]:
    """``model`` (an ``nn.Module`` or an ONNX file) as it runs on the target: the runnable and its file.

    A torch model for the ``ort`` runtime is exported to ``where/model.onnx`` (and statically
    quantized when ``int8``: the latency probe of a candidate that will be quantized).
    """
    from torch import nn

    if not isinstance(model, nn.Module):
        return ctx.runnable(Path(model)), Path(model)
    if runtime == "torch":
        path = where / "model"
        return model.eval(), path
    from torchslim.export import onnx as export_onnx

    where.mkdir(parents=True, exist_ok=True)
    path = where / "model.onnx"
    example = ctx.data.example_batch(8)
    if int8:
        from torchslim import quantize
        from torchslim.options.quantize import StaticInt8Config

        batches = list(itertools.islice(iter(ctx.data.val if ctx.data.val is not None else ctx.data.train),
                                        calibration_batches or 1))
        quantize.static_int8(model.eval(), batches, out=where / "int8", example_input=example,
                             config=StaticInt8Config(calibration_batches=len(batches)))
        path = where / "int8" / "model.onnx"
    else:
        export_onnx(model.eval(), example, path)
    return ctx.runnable(path), path


def time_against(ctx: Any, baseline: Any, candidate: Any, batch_size: int, threads: int, seconds: float) -> dict[str, float]:
    """The candidate timed against the teacher in interleaved rounds: the latency ratio (candidate /
    teacher, the inverse of the speed-up) with its interval, and both medians in ms."""
    from torchslim.measure import first_sample
    from torchslim.measure.rounds import confident_latency

    example = first_sample(ctx.data.val if ctx.data.val is not None else ctx.data.test)
    run = confident_latency({"teacher": baseline, "candidate": candidate}, example, baseline="teacher",
                            batch_sizes=[batch_size], threads=[threads], min_rounds=3, max_seconds=seconds, warmup=3)
    setting = run.settings[0]
    ratio = setting.ratios["candidate"]
    return {"latency_ratio": 1.0 / ratio.ratio, "latency_ratio_low": 1.0 / ratio.high,
            "latency_ratio_high": 1.0 / ratio.low, "speedup": ratio.ratio, "rounds": setting.rounds,
            "latency_ms": setting.latency["candidate"].median_ms, "teacher_ms": setting.latency["teacher"].median_ms}


def _main_index(steps: list[dict[str, Any]]) -> tuple[int | None, int]:
    for i, step in enumerate(steps):
        (name, params), = step.items()
        if name in MAIN_TRAINING:
            return i, int((params or {}).get("epochs", 1))
    return None, 0


def _untrained(session: Any, trial: Any, probe: dict[str, Any], seconds: float) -> tuple[float, ...]:
    """A candidate whose measured latency rules it out before training: recorded as measured
    (its latency, the constraint it breaks) so the sampler learns where the budget lies; its
    accuracy is unknown, so it is never on the front (the objective gets 0, the report "not
    trained")."""
    budget = session.cfg.constraints.latency_budget
    reason = (f"latency before training: its architecture runs at {probe['latency_ratio']:.3f}x "
              f"[{probe['latency_ratio_low']:.3f}-{probe['latency_ratio_high']:.3f}] of the teacher's latency, "
              f"over the budget {budget:g}x; not trained")
    attrs = {"latency_ratio": probe["latency_ratio"], "speedup": probe["speedup"], "untrained": True,
             "stopped": reason, "seconds": seconds, "bytes_ratio": 1.0}
    violations = {"latency_budget": probe["latency_ratio"] - budget}
    if session.cfg.constraints.accuracy_floor is not None:
        violations["accuracy_floor"] = 100.0  # unknown accuracy: never counted as meeting the floor
    attrs["constraints"] = violations
    for key, value in violations.items():
        trial.set_constraint(key, float(value))
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    session.log(f"trial {trial.number}: {reason}")
    return session.objective_values({**attrs, "val_accuracy": 0.0})


def run_trial(session: Any, trial: Any) -> tuple[float, ...]:
    """The objective of trial ``trial`` (an Optuna trial): sample, make, measure; the objective
    values in the study's order. Raises :class:`TrialStopped` for a trial that stops early."""
    from torchslim.measure import artifact_bytes
    from torchslim.pipeline.runner import run_strategy
    from torchslim.train.evaluate import evaluate

    cfg: SearchConfig = session.cfg
    space: Space = session.space
    values = sample(space, trial)
    steps = space.candidate(values)
    name = f"trial-{trial.number:04d}"
    shape = {**space.defaults(), **{k: v for k, v in values.items() if k in ("route", "recovery", "quantize")}}
    recipe = trial_recipe(session.recipe, name, steps)
    main, epochs = _main_index(steps)
    if session.quick:
        epochs = min(epochs, session.recipe.quick.epochs)
    for key, value in (("strategy", steps_plain(steps)), ("values", values), ("route", shape["route"]),
                       ("shape", shape), ("worker", f"{os.uname().nodename}:{os.getpid()}")):
        trial.set_user_attr(key, value)
    estimate = session.estimate(shape["route"], steps)
    if estimate is not None and time.time() + estimate > session.deadline:
        raise TrialStopped(f"budget: this candidate needs about {estimate:.0f} s and {session.left():.0f} s are left")
    began = time.perf_counter()
    ctx = session.ctx
    ctx.recipe = recipe
    int8 = shape["quantize"] != "none"
    target = cfg.target
    work = session.out / "trials" / name
    if cfg.constraints.latency_budget is not None and cfg.early_stop.enabled:
        probe = session.probe(name, steps, shape, work / "probe")
        trial.set_user_attr("probe", probe)
        if probe["latency_ratio_low"] > cfg.constraints.latency_budget:
            return _untrained(session, trial, probe, time.perf_counter() - began)
    monitor = Monitor(session, name, main, epochs, shape["route"])
    ctx.on_epoch_end = monitor
    try:
        result = run_strategy(ctx, name)
    except TrialStopped as stop:
        stop.attrs.setdefault("curve", monitor.curve)
        stop.attrs["seconds"] = time.perf_counter() - began
        raise
    finally:
        ctx.on_epoch_end = None
    train_seconds = time.perf_counter() - began
    model = result.model if result.model is not None else result.final.materialise(ctx)
    runnable, artifact = deploy(ctx, model, False, work / "deployed", target.runtime)
    if target.runtime == "torch":
        artifact = result.final.weights
    accuracy = evaluate(runnable, ctx.data.val, "cpu")["accuracy"]
    size = artifact_bytes(artifact)
    timing = time_against(ctx, session.baseline.runnable, runnable, session.batch_size, session.threads, target.seconds)
    attrs = {"val_accuracy": accuracy, "bytes": size, "bytes_ratio": size / session.baseline.bytes,
             **timing, "artifact": str(artifact), "curve": monitor.curve, "train_seconds": train_seconds,
             "seconds": time.perf_counter() - began, "epochs": sum(s["epochs"] for s in result.steps),
             "reused_steps": sum(1 for s in result.steps if s.get("reused")), "int8": int8}
    attrs["constraints"] = session.violations(attrs)
    for key, value in attrs["constraints"].items():
        trial.set_constraint(key, float(value))  # what the samplers read
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return session.objective_values(attrs)


__all__ = ["Baseline", "Monitor", "TrialStopped", "deploy", "hopeless", "interpolate", "recipe_data", "run_trial",
           "strategy_steps", "time_against", "trial_recipe"]
