"""Benchmark: distillation methods on Fashion-MNIST, each against the student trained alone.

From the shipped default teacher to the default student (``cnn-small``), every method gets exactly
the student-alone budget: the same epochs, schedule (``FIT``: one-cycle SGD, lr 0.2, weight decay
5e-4, channels-last), augmentation (the loader's crop and flip) and data. Every method runs on the
first seed; the student alone and the best methods of that seed run on every seed, for mean ± std.
Timed in the same run: seconds per epoch of the student alone, KD with the live teacher and KD
from the teacher cache (interleaved rounds).

    python benchmarks/distill_fashion_mnist.py                # about an hour on 2 cores
    python benchmarks/distill_fashion_mnist.py --methods kd,dkd --seeds 0
    python benchmarks/distill_fashion_mnist.py --quick        # seconds: synthetic data, fresh models

The JSON is rewritten after every run; started again with the same settings, the script skips the
runs already recorded there, so a killed benchmark resumes (``--restart`` discards them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any

import torch
from _common import (
    comma_separated,
    display_path,
    machine_line,
    new_parser,
    now,
    parse,
    previous_record,
    record_header,
    report_written,
    torch_threads,
    write_section,
)
from _common import settings_from as common_settings
from torch import nn

from torchslim import data, models
from torchslim.core.errors import NonFiniteLossError, TorchSlimError
from torchslim.core.io import atomic_write_json
from torchslim.core.registry import did_you_mean
from torchslim.distill import DistillTask, losses
from torchslim.distill.cache import weights_hash
from torchslim.measure import machine_info
from torchslim.train import evaluate, fit

NAME = "distill_fashion_mnist"
TEACHER, SECOND = "teacher", "second"  # the shipped teacher; the weaker second teacher
ALONE = "student-alone"


@dataclasses.dataclass(frozen=True)
class Method:
    """``losses``: (loss name, its arguments, weight) each — empty: plain cross-entropy ``fit``.
    ``cost``: rough seconds per epoch relative to the student alone, used only for the estimate."""

    losses: tuple[tuple[str, dict, float], ...]
    teachers: tuple[str, ...] = (TEACHER,)
    cost: float = 2.5


KD = (("kd", {"T": 4}, 0.9), ("ce", {}, 0.1))
CE = (("ce", {}, 1.0),)
# Every method of the benchmark; crd gets num_data = the training-set size when it is built. The
# weights of the feature and relation terms are those of the CRD authors' benchmark code
# (RepDistiller: fitnet 100, sp 3000, pkt 30000, crd 0.8); at and rkd carry their papers' scales
# inside (beta 1000; w_d 25, w_a 50), so weight 1.
METHODS: dict[str, Method] = {
    ALONE: Method((), teachers=(), cost=1.0),
    "kd": Method(KD),
    "dkd": Method((("dkd", {}, 1.0), *CE)),
    "dist": Method((("dist", {}, 1.0), *CE)),
    "fitnet": Method((("fitnet", {"student_tap": "features.2", "teacher_tap": "layer2"}, 100.0), *KD)),
    "at": Method((("at", {"student_tap": "features.3", "teacher_tap": "layer3"}, 1.0), *KD)),
    "sp": Method((("sp", {"student_tap": "features.3", "teacher_tap": "layer3"}, 3000.0), *CE)),
    "rkd": Method((("rkd", {}, 1.0), *CE)),
    # PKT's weight assumes pooled features (as in RepDistiller); on the 10 logits it swamps the
    # cross-entropy and the student collapsed to one class (10.00%, recorded in an earlier run).
    "pkt": Method((("pkt", {"student_tap": "pool", "teacher_tap": "pool"}, 30000.0), *CE)),
    "crd": Method((("crd", {}, 0.8), *KD), cost=2.7),
    "kd-2teachers": Method(KD, teachers=(TEACHER, SECOND), cost=2.8),
}
# The recipe the shipped student was trained with (fit's own defaults differ: lr 0.1, no channels-last).
FIT = {"optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "schedule": "onecycle", "channels_last": True}
STUDENT_EPOCH_SECONDS = 25.0  # the student alone, 2 threads, on the 2-core machine: for the estimate
CACHED_COST = 1.15  # KD from the cache relative to the student alone (the target), for the estimate
CACHED_TARGET = 1.15


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON."""

    epochs: int = 3  # ~54 min in all on 2 cores; see estimate_seconds
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (0, 1, 2)  # the first screens every method
    top: int = 2  # the best methods of the first seed that also run on the other seeds
    threads: int = 2
    batch_size: int = 128
    student: str = "cnn-small"
    timing_rounds: int = 2  # interleaved rounds: student alone, KD live, KD cached
    timing_epochs: int = 1  # epochs per timed run, = the cache's draws


FULL = Settings()
# A smoke test of the script in seconds, not a result.
QUICK = Settings(epochs=1, methods=(ALONE, "kd", "at", "kd-2teachers"), seeds=(0, 1), top=1, threads=1,
                 batch_size=32, student="cnn-tiny", timing_rounds=1, timing_epochs=1)


def estimate_seconds(s: Settings, done: set[tuple[str, int]], timing_done: bool) -> float:
    """Rough seconds left: relative method costs x epochs x ``STUDENT_EPOCH_SECONDS``.

    The methods that run on every seed are not known yet; they are costed at the mean candidate.
    """
    screen, *extra = s.seeds
    units = sum(METHODS[m].cost * s.epochs for m in s.methods if (m, screen) not in done)
    candidates = [METHODS[m].cost for m in s.methods if m != ALONE]
    top_cost = statistics.fmean(candidates) if candidates else 0.0
    for seed in extra:
        units += s.epochs * ((ALONE, seed) not in done)
        started = sum(d == seed and m != ALONE for m, d in done)
        units += s.epochs * top_cost * max(0, min(s.top, len(candidates)) - started)
    if not timing_done:  # A, B, C and the cache build (one teacher pass per draw)
        kd = METHODS["kd"].cost
        units += s.timing_rounds * s.timing_epochs * (1.0 + kd + CACHED_COST + (kd - 1.0))
    return units * STUDENT_EPOCH_SECONDS + 30.0  # + loading and evaluating the teachers


# -- data, teachers, tasks -------------------------------------------------------------------------

def load_data(quick: bool, s: Settings, seed: int) -> data.DataBundle:
    """Fashion-MNIST as the shipped student saw it (the seed also draws the validation split)."""
    if quick:
        return data.load("synthetic", batch_size=s.batch_size, num_classes=10, shape=(1, 28, 28),
                         train_size=256, val_size=0, test_size=128, augment=True, seed=seed)
    return data.load("fashion-mnist", batch_size=s.batch_size, seed=seed)


def load_teachers(quick: bool, s: Settings, bundle: data.DataBundle) -> dict[str, tuple[nn.Module, str]]:
    """``{name: (model, where it came from)}``: both teachers, whichever methods are selected, so
    the recorded settings (their weights' hashes) do not depend on the selection."""
    if quick:  # stand-ins trained for one epoch; the shipped weights are not needed
        made = {}
        for name, arch, seed in ((TEACHER, "resnet8", 0), (SECOND, "cnn-tiny", 1)):
            torch.manual_seed(seed)
            model = models.create(arch)
            fit(model, bundle.train, 1, progress=False, threads=s.threads, seed=seed, **FIT)
            made[name] = (model.eval(), f"{arch} trained 1 epoch on the synthetic data")
        return made
    from torchslim import zoo  # only here: --quick must run without the shipped weights

    shipped = {TEACHER: "fashion-mnist-teacher", SECOND: "fashion-mnist-student"}
    return {name: (zoo.load(source)[0].eval(), source) for name, source in shipped.items()}


def build_task(method: str, student: nn.Module, teachers: dict[str, nn.Module], num_data: int) -> nn.Module:
    """The student itself (student alone) or a ``DistillTask`` with the method's losses."""
    spec = METHODS[method]
    if not spec.losses:
        return student
    built = []
    for name, kwargs, weight in spec.losses:
        kwargs = {"num_data": num_data, **kwargs} if name == "crd" else kwargs
        built.append((losses.create(name, **kwargs), weight))
    return DistillTask(student, {t: teachers[t] for t in spec.teachers}, built, multi_teacher="mean")


def new_student(s: Settings, bundle: data.DataBundle, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the initial weights follow the seed, as in `torchslim train`
    return models.create(s.student, num_classes=bundle.num_classes, in_channels=bundle.input_shape[0])


def check_methods(s: Settings, teachers: dict[str, nn.Module], bundle: data.DataBundle) -> None:
    """Build every selected method and run one small batch, so a bad tap or argument fails now,
    not an hour in."""
    x, y, index = bundle.train.dataset[list(range(4))]
    for method in s.methods:
        task = build_task(method, new_student(s, bundle, 0), teachers, len(bundle.train.dataset))
        try:
            if isinstance(task, DistillTask):
                task.train()({"x": x, "y": y, "index": index})["loss"].backward()
        except TorchSlimError as exc:
            raise TorchSlimError(f"Method {method!r} of METHODS does not run: {exc}") from exc
        finally:
            if isinstance(task, DistillTask):
                task.close()


def spec_of(method: str) -> dict:
    """The method's definition as recorded in the JSON (runs are reused only while it is unchanged)."""
    spec = METHODS[method]
    return json.loads(json.dumps({"losses": spec.losses, "teachers": spec.teachers}))


def describe(method: str) -> str:
    """``0.9·kd(T=4) + 0.1·ce``, taps shown as ``student→teacher``."""
    parts = []
    for name, kwargs, weight in METHODS[method].losses:
        args = dict(kwargs)
        taps = [f"{args.pop('student_tap')}→{args.pop('teacher_tap')}"] if "student_tap" in args else []
        inner = ", ".join(taps + [f"{k}={v}" for k, v in args.items()])
        parts.append(f"{weight:g}·{name}" + (f"({inner})" if inner else ""))
    teachers = METHODS[method].teachers
    text = " + ".join(parts) or "cross-entropy"
    return text + (f", {len(teachers)} teachers (mean)" if len(teachers) > 1 else "")


# -- runs ------------------------------------------------------------------------------------------

def train_run(method: str, seed: int, s: Settings, bundle: data.DataBundle,
              teachers: dict[str, nn.Module]) -> dict[str, Any]:
    """Train one student with ``method`` on ``seed``; its test accuracy and seconds per epoch."""
    record: dict[str, Any] = {"method": method, "seed": seed, "spec": spec_of(method), "date": now()}
    task = build_task(method, new_student(s, bundle, seed), teachers, len(bundle.train.dataset))
    try:
        history = fit(task, bundle, s.epochs, progress=False, threads=s.threads, seed=seed, **FIT)
    except NonFiniteLossError as exc:  # recorded, not fatal: the other methods still run
        return {**record, "status": "diverged", "error": str(exc)}
    finally:
        if isinstance(task, DistillTask):
            task.close()
    seconds = [e["seconds"] for e in history.epochs]
    return {**record, "status": "ok", "accuracy": history.test["accuracy"], "test": history.test,
            "epoch_seconds": seconds, "mean_epoch_seconds": statistics.fmean(seconds),
            "train_seconds": history.seconds, "epochs": history.epochs}


def time_epochs(s: Settings, bundle: data.DataBundle, teacher: nn.Module, seed: int) -> dict[str, Any]:
    """Seconds per training epoch (no validation pass) in interleaved rounds of A: the student
    alone, B: KD with the live teacher, C: KD from a cache of ``timing_epochs`` draws (its build
    timed apart), every run fresh from the same seed on the same data."""
    epochs: dict[str, list[float]] = {ALONE: [], "kd-live": [], "kd-cached": []}
    builds = []
    for _ in range(s.timing_rounds):
        for config in epochs:
            task = build_task(ALONE if config == ALONE else "kd", new_student(s, bundle, seed),
                              {TEACHER: teacher}, len(bundle.train.dataset))
            try:
                if config == "kd-cached":
                    began = time.perf_counter()
                    task.use_cache(bundle.train, draws=s.timing_epochs, log=lambda *_: None)
                    builds.append(time.perf_counter() - began)
                history = fit(task, bundle.train, s.timing_epochs, progress=False, threads=s.threads,
                              seed=seed, **FIT)
            finally:
                bundle.train.sampler.cycle = None  # use_cache made the shared loader replay its draws
                if isinstance(task, DistillTask):
                    task.close()
            epochs[config] += [e["seconds"] for e in history.epochs]
    median = {k: statistics.median(v) for k, v in epochs.items()}
    build_per_draw = statistics.median(builds) / s.timing_epochs
    return {
        "rounds": s.timing_rounds, "epochs": s.timing_epochs, "threads": s.threads, "seed": seed,
        "epoch_seconds": epochs, "median_epoch_seconds": median,
        "ratio_to_alone": {k: v / median[ALONE] for k, v in median.items()},
        "cache_build_seconds": builds, "cache_draws": s.timing_epochs,
        "cache_build_seconds_per_draw": build_per_draw,
        # One run that builds its own cache and uses it once: the build spread over its epochs.
        "ratio_cached_with_build": (median["kd-cached"] + build_per_draw) / median[ALONE],
        "target_cached_ratio": CACHED_TARGET,
        "target_met": median["kd-cached"] / median[ALONE] <= CACHED_TARGET,
    }


# -- summary ---------------------------------------------------------------------------------------

def selected_runs(runs: list[dict], s: Settings) -> list[dict]:
    return [r for r in runs if r["method"] in s.methods and r["seed"] in s.seeds]


def best_methods(runs: list[dict], s: Settings) -> list[str]:
    """The ``top`` methods by test accuracy on the first seed (ties: table order)."""
    first = {r["method"]: r["accuracy"] for r in runs if r["seed"] == s.seeds[0] and r["status"] == "ok"}
    ranked = sorted((m for m in s.methods if m != ALONE and m in first), key=lambda m: -first[m])
    return ranked[:s.top]


def summarise(runs: list[dict], teacher_accuracy: float) -> dict[str, dict[str, Any]]:
    """Per method: mean ± std over its seeds, the difference to the student alone on the same
    seeds, the gap to the teacher closed (%), seconds per epoch and the ratio to the student alone."""
    ok = [r for r in runs if r["status"] == "ok"]
    alone = {r["seed"]: r for r in ok if r["method"] == ALONE}
    alone_seconds = statistics.fmean(r["mean_epoch_seconds"] for r in alone.values()) if alone else None
    summary = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = sorted((r for r in ok if r["method"] == method), key=lambda r: r["seed"])
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in mine], "n": len(mine),
                                 "diverged_seeds": [r["seed"] for r in runs if r["method"] == method
                                                    and r["status"] != "ok"]}
        if mine:
            acc = [r["accuracy"] for r in mine]
            seconds = statistics.fmean(r["mean_epoch_seconds"] for r in mine)
            entry.update(mean=statistics.fmean(acc), std=statistics.stdev(acc) if len(acc) > 1 else None,
                         epoch_seconds=seconds,
                         seconds_ratio=seconds / alone_seconds if alone_seconds else None)
            if all(r["seed"] in alone for r in mine):
                base = [alone[r["seed"]]["accuracy"] for r in mine]
                entry["alone_mean"] = statistics.fmean(base)
                entry["alone_std"] = statistics.stdev(base) if len(base) > 1 else None
                entry["delta"] = entry["mean"] - entry["alone_mean"]
                headroom = teacher_accuracy - entry["alone_mean"]
                entry["gap_closed"] = 100.0 * entry["delta"] / headroom if headroom > 0 else None
        summary[method] = entry
    return summary


def verdict(summary: dict[str, dict], s: Settings) -> dict[str, Any]:
    """Whether the best method on every seed beats the student alone by >= 0.5 points, and whether
    the difference exceeds the seed spread (the larger of the two standard deviations)."""
    n = len(s.seeds)
    multi = {m: e for m, e in summary.items() if m != ALONE and e["n"] == n and "delta" in e}
    if n < 2 or not multi:
        return {"text": f"Only {n} seed(s) per method: no claim of a gain is made (it needs several "
                        "seeds; run with --seeds 0,1,2)."}
    best, e = max(multi.items(), key=lambda kv: kv[1]["mean"])
    spread = max(e["std"], e["alone_std"])
    beats, exceeds = e["delta"] >= 0.5, e["delta"] > spread
    text = (f"Best method over {n} seeds: `{best}`, {e['mean']:.2f} ± {e['std']:.2f}% against "
            f"{e['alone_mean']:.2f} ± {e['alone_std']:.2f}% for the student alone "
            f"({e['delta']:+.2f} points). It {'beats' if beats else 'does not beat'} the student alone "
            f"by ≥ 0.5 points, and the difference {'exceeds' if exceeds else 'does not exceed'} the "
            f"seed spread (the larger std, {spread:.2f})"
            + ("." if exceeds else ", so by this benchmark's rule it is no difference."))
    return {"best": best, "delta": e["delta"], "spread": spread, "beats_by_half_point": beats,
            "exceeds_spread": exceeds, "text": text}


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def table_markdown(summary: dict[str, dict], s: Settings) -> str:
    lines = ["| method | losses | seeds | test accuracy % (mean ± std) | Δ vs student alone (points) "
             "| gap closed % | s/epoch (× alone) |", "|---|---|---|---:|---:|---:|---:|"]
    for method in [m for m in s.methods if m in summary]:
        e = summary[method]
        seeds = ",".join(map(str, e["seeds"])) or "—"
        if e["diverged_seeds"]:
            seeds += f" (diverged: {','.join(map(str, e['diverged_seeds']))})"
        acc = "—" if not e["n"] else f"{e['mean']:.2f}" + (f" ± {e['std']:.2f}" if e["std"] is not None else "")
        speed = "—" if not e["n"] else f"{e['epoch_seconds']:.1f} ({_fmt(e['seconds_ratio'])}×)"
        lines.append(f"| {method} | {describe(method)} | {seeds} | {acc} | {_fmt(e.get('delta'), '+.2f')} "
                     f"| {_fmt(e.get('gap_closed'), '.0f')} | {speed} |")
    return "\n".join(lines) + "\n"


def timing_markdown(t: dict[str, Any]) -> str:
    labels = {ALONE: "student alone", "kd-live": "KD, live teacher", "kd-cached": "KD, cached teacher"}
    lines = ["| configuration | s/epoch median (min–max) | × student alone |", "|---|---:|---:|"]
    for key, label in labels.items():
        v = t["epoch_seconds"][key]
        lines.append(f"| {label} | {t['median_epoch_seconds'][key]:.1f} ({min(v):.1f}–{max(v):.1f}) "
                     f"| {t['ratio_to_alone'][key]:.2f} |")
    cached = t["ratio_to_alone"]["kd-cached"]
    wide = [labels[k] for k, v in t["epoch_seconds"].items()
            if max(v) - min(v) > 0.1 * t["median_epoch_seconds"][k]]
    if wide:
        lines.append(f"\nThe epochs of {', '.join(wide)} spread over 10% of their median: the machine "
                     "was busy, so these ratios are uncertain.")
    return "\n".join(lines) + (
        f"\n\nCache build: {statistics.median(t['cache_build_seconds']):.1f} s for {t['cache_draws']} "
        f"draw(s), {t['cache_build_seconds_per_draw']:.1f} s per draw (one teacher pass over the "
        f"training set). Target, cached ≤ {t['target_cached_ratio']:.2f}× the student alone per "
        f"epoch: **{'met' if t['target_met'] else 'missed'}** ({cached:.2f}×). With the build "
        f"spread over the epochs of a single run that uses the cache once, "
        f"{t['ratio_cached_with_build']:.2f}×: the cache pays off when it is reused (several "
        "students or settings from one cache on disk).\n")


def render_section(result: dict[str, Any], s: Settings, quick: bool) -> str:
    teachers = result["teachers"]
    lines = [f"- `{name}`: {t['source']}, {t['parameters']:,} parameters, test accuracy "
             f"{t['test']['accuracy']:.2f}% ({t['test']['n']} images)" for name, t in teachers.items()]
    t = result["timing"]
    parts = [
        "## Distillation on Fashion-MNIST" + (" — `--quick` smoke run (synthetic data, stand-in "
                                              "models trained 1 epoch): not a result" if quick else ""),
        f"`{result['command']}` — {result['date']}, {machine_line(result['machine'])}. "
        f"JSON: `{result['json']}`.",
        f"Student `{s.student}`; every method trained {s.epochs} epoch(s) with the student-alone "
        f"recipe ({', '.join(f'{k} {v}' for k, v in FIT.items())}, batch {s.batch_size}, crop and "
        f"flip), {s.threads} thread(s). All methods on seed {s.seeds[0]}; the student alone and the "
        f"{s.top} best of that seed ({', '.join(result['chosen']) or 'none'}) also on seeds "
        f"{', '.join(map(str, s.seeds[1:])) or '(none)'}. Accuracy over the whole test set; Δ and gap "
        "closed = (method − student alone) / (teacher − student alone), both on the method's seeds; "
        "s/epoch includes the validation pass, if any.",
        "Teachers:\n\n" + "\n".join(lines),
        table_markdown(result["summary"], s),
        result["verdict"]["text"],
        f"Speed, measured in the same run: {t['rounds']} interleaved round(s) of a fresh "
        f"{t['epochs']}-epoch run each (seed {t['seed']}, {t['threads']} thread(s)), training epochs "
        "only.\n\n" + timing_markdown(t),
    ]
    return "\n\n".join(p.strip() for p in parts) + "\n"


# -- the benchmark ---------------------------------------------------------------------------------

def previous(path, config: dict, s: Settings, restart: bool) -> tuple[list[dict], dict | None]:
    """Runs and timing recorded in ``path`` by an earlier run with the same settings."""
    old = previous_record(path, config, restart)
    if old is None:
        return [], None
    runs = [r for r in old.get("runs", []) if r["method"] in METHODS and r["spec"] == spec_of(r["method"])]
    timing = old.get("timing")
    same = timing and (timing["rounds"], timing["epochs"]) == (s.timing_rounds, s.timing_epochs)
    return runs, timing if same else None


def thread_info(s: Settings) -> dict[str, Any]:
    return {"requested": s.threads, "torch": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def run_benchmark(args: argparse.Namespace, s: Settings) -> int:
    started = time.perf_counter()
    bundles = {s.seeds[0]: load_data(args.quick, s, s.seeds[0])}
    bundle = bundles[s.seeds[0]]
    loaded = load_teachers(args.quick, s, bundle)
    teachers = {name: model for name, (model, _) in loaded.items()}
    check_methods(s, teachers, bundle)
    config = json.loads(json.dumps({
        "quick": args.quick, "data": bundle.name, "epochs": s.epochs, "batch_size": s.batch_size,
        "threads": s.threads, "fit": FIT, "student": s.student,
        "teachers": {name: weights_hash(model) for name, model in teachers.items()}}))
    runs, timing = previous(args.out, config, s, args.restart)
    result: dict[str, Any] = {
        **record_header(NAME, args), "config": config, "settings": dataclasses.asdict(s),
        "methods": {m: spec_of(m) for m in METHODS}, "machine": machine_info(), "threads": thread_info(s),
        "teachers": {name: {"source": source, "parameters": models.num_parameters(model),
                            "weights_sha256": config["teachers"][name],
                            "test": evaluate(model, bundle.test)}
                     for name, (model, source) in loaded.items()},
        "runs": runs, "timing": timing, "chosen": []}

    def save() -> None:
        atomic_write_json(args.out, result)

    done = {(r["method"], r["seed"]) for r in runs}
    estimate = estimate_seconds(s, done, timing is not None)
    result["estimate_seconds"] = estimate
    if done:
        print(f"resuming: {len(done)} run(s) already in {display_path(args.out)}")
    if not args.quick:
        print(f"estimated time left: ~{estimate / 60:.0f} min ({s.epochs} epochs, "
              f"{STUDENT_EPOCH_SECONDS:g} s per student-alone epoch at 2 threads assumed)")
    save()
    if result["timing"] is None:
        print("timing: student alone, KD live, KD cached ...")
        result["timing"] = time_epochs(s, bundle, teachers[TEACHER], s.seeds[0])
        save()

    def run(method: str, seed: int) -> None:
        if (method, seed) in done:
            return
        if seed not in bundles:
            bundles[seed] = load_data(args.quick, s, seed)
        record = train_run(method, seed, s, bundles[seed], teachers)
        result["runs"].append(record)
        done.add((method, seed))
        save()
        outcome = (f"{record['accuracy']:.2f}%, {record['mean_epoch_seconds']:.1f} s/epoch"
                   if record["status"] == "ok" else record["status"])
        print(f"{method} seed {seed}: {outcome}")

    for method in s.methods:
        run(method, s.seeds[0])
    result["chosen"] = best_methods(result["runs"], s)
    for seed in s.seeds[1:]:
        for method in (ALONE, *result["chosen"]):
            run(method, seed)
    chosen = selected_runs(result["runs"], s)
    result["summary"] = summarise(chosen, result["teachers"][TEACHER]["test"]["accuracy"])
    result["verdict"] = verdict(result["summary"], s)
    result["seconds"] = time.perf_counter() - started
    save()
    write_section(args.results_md, NAME, render_section(result, s, args.quick))
    print(table_markdown(result["summary"], s))
    print(result["verdict"]["text"])
    report_written(NAME, args.out, args.results_md)
    return 0


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if n not in METHODS:
            raise argparse.ArgumentTypeError(f"unknown method {n!r}.{did_you_mean(n, list(METHODS))} "
                                             f"Valid: {', '.join(METHODS)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "synthetic data, stand-in models trained 1 epoch: a smoke test in seconds")
    parser.add_argument("--epochs", type=int, help=f"epochs of every run (default {FULL.epochs})")
    parser.add_argument("--methods", type=_names, help=f"comma-separated subset of: {', '.join(METHODS)} "
                        f"({ALONE} is always included)")
    parser.add_argument("--seeds", type=comma_separated(int, "integers"), help="comma-separated seeds; the first screens every "
                        f"method (default {','.join(map(str, FULL.seeds))})")
    parser.add_argument("--top", type=int, help=f"best methods run on every seed (default {FULL.top})")
    parser.add_argument("--threads", type=int, help=f"torch threads (default {FULL.threads})")
    parser.add_argument("--restart", action="store_true", help="ignore the runs recorded in --out")
    return parse(parser, NAME, argv)


def settings_from(args: argparse.Namespace) -> Settings:
    s = common_settings(args, QUICK, FULL, ("epochs", "methods", "seeds", "top", "threads"))
    if ALONE not in s.methods:  # every comparison is to the student alone
        s = dataclasses.replace(s, methods=(ALONE, *s.methods))
    if min(s.epochs, s.threads, s.top + 1) < 1 or not s.seeds or len(set(s.seeds)) != len(s.seeds):
        raise TorchSlimError(f"epochs and threads must be positive, top non-negative and seeds distinct; "
                             f"got epochs={s.epochs}, threads={s.threads}, top={s.top}, seeds={s.seeds}.")
    return s


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    with torch_threads(settings.threads):
        return run_benchmark(args, settings)


if __name__ == "__main__":
    sys.exit(main())
