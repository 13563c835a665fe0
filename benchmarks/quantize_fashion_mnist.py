"""Benchmark: INT8 on ONNX Runtime for the shipped Fashion-MNIST teacher and student.

For each model, every variant is built and then measured in one interleaved run: torch FP32
eager, ONNX Runtime FP32, static INT8 with each calibration method (minmax, entropy, percentile;
QDQ, per-channel weights, operand types chosen for this CPU), dynamic INT8 (MatMul and Conv as
MatMulInteger / ConvInteger) and QAT (one epoch of fake-quantized fine-tuning from the FP32
weights, distilled from the FP32 model, then the static artifact with the learned ranges).
Accuracy is over the whole test set; latency at batch 1 and 64 on 1 and 2 threads.

    python benchmarks/quantize_fashion_mnist.py                 # about 17 min on 2 idle cores
    python benchmarks/quantize_fashion_mnist.py --extra-model runs/pruned   # + a checkpoint dir
    python benchmarks/quantize_fashion_mnist.py --quick         # under a minute: synthetic data, tiny models

Artifacts go to ``--work`` (default ``runs/quantize_fashion_mnist``). The JSON is rewritten after
every step; run again with the same settings and the built variants and measured models are
reused (an artifact is reused only while its file matches the recorded hash); ``--restart``
discards them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import (
    REPO,
    default_work,
    display_path,
    machine_line,
    new_parser,
    parse,
    previous_record,
    record_header,
    report_written,
    torch_threads,
    write_section,
)
from torch import nn

from torchslim import data, models
from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_json
from torchslim.core.tensors import sha256_file
from torchslim.distill import DistillTask
from torchslim.distill import losses as L
from torchslim.export import onnx as export_onnx
from torchslim.measure import MeasureRecord, machine_info, measure_many
from torchslim.measure.table import human
from torchslim.models.checkpoint import load_model
from torchslim.quantize import dynamic_int8, prepare_qat, qat_int8, static_int8
from torchslim.train import fit

NAME = "quantize_fashion_mnist"
VARIANTS = ("torch-fp32", "ort-fp32", "static-minmax", "static-entropy", "static-percentile", "dynamic", "qat")
EXTRA_VARIANTS = ("torch-fp32", "ort-fp32", "static-minmax")  # for --extra-model
TARGET = {"vs_torch": 3.0, "vs_ort_fp32": 1.5, "accuracy_points": 0.3, "size_ratio": 4.0}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of a run, recorded in the JSON."""

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: tuple[int, ...] = (1, 2)
    rounds: int = 3  # interleaved rounds per latency setting
    latency: dict = dataclasses.field(default_factory=lambda: {"warmup": 5, "min_seconds": 0.4})
    calibration_batches: int = 8
    calibration_batch_size: int = 64
    dynamic_ops: tuple[str, ...] = ("MatMul", "Conv")
    qat_epochs: int = 1
    qat_lr: float = 0.005  # cosine from here: a fine-tune, ~1/40 of the teachers' training peak
    qat_batch_size: int = 128
    train_threads: int = 2


FULL = Settings()
QUICK = Settings(batch_sizes=(1, 8), threads=(1,), rounds=1,
                 latency={"warmup": 1, "min_seconds": 0.0, "min_repeats": 3},
                 calibration_batches=2, calibration_batch_size=16, qat_batch_size=32, train_threads=1)
# Rough seconds on the idle 2-core machine, for the printed estimate only: building every variant
# but QAT, one QAT epoch (with the FP32 model as teacher), measuring every variant.
COST = {"teacher": {"build": 90.0, "qat": 380.0, "measure": 240.0},
        "student": {"build": 40.0, "qat": 70.0, "measure": 150.0},
        "extra": {"build": 40.0, "qat": 0.0, "measure": 90.0}}


# -- models and data -------------------------------------------------------------------------------

def load_data(quick: bool, s: Settings) -> tuple[data.DataBundle, data.DataBundle]:
    """``(plain, augmented)``: calibration and test data without augmentation; QAT's training data
    augmented as the shipped models were trained."""
    if quick:
        kw = dict(num_classes=4, shape=(1, 16, 16), train_size=256, val_size=0, test_size=64, seed=0)
        return (data.load("synthetic", batch_size=s.calibration_batch_size, augment=False, **kw),
                data.load("synthetic", batch_size=s.qat_batch_size, augment=True, **kw))
    return (data.load("fashion-mnist", batch_size=s.calibration_batch_size, augment=False),
            data.load("fashion-mnist", batch_size=s.qat_batch_size, augment=True))


def load_models(quick: bool, extra: Path | None, plain: data.DataBundle) -> dict[str, dict[str, Any]]:
    """``{name: {"model", "source", "variants"}}``: the shipped teacher and student (stand-ins
    trained one epoch with --quick) and the optional extra checkpoint."""
    found: dict[str, dict[str, Any]] = {}
    if quick:
        for name, arch in (("teacher", "resnet8"), ("student", "cnn-tiny")):
            torch.manual_seed(0)
            model = models.create(arch, num_classes=plain.num_classes)
            fit(model, plain.train, 2, lr=0.05, progress=False, threads=1)
            found[name] = {"model": model.eval(), "source": f"{arch} trained 2 epochs on synthetic data",
                           "variants": VARIANTS}
    else:
        from torchslim import zoo  # only here: --quick must run without the shipped weights

        for name in ("teacher", "student"):
            found[name] = {"model": zoo.load(f"fashion-mnist-{name}")[0].eval(),
                           "source": f"fashion-mnist-{name}", "variants": VARIANTS}
    if extra is not None:
        model, _ = load_model(extra)
        found[f"extra:{extra.name}"] = {"model": model.eval(), "source": str(extra), "variants": EXTRA_VARIANTS}
    return found


# -- building the variants -------------------------------------------------------------------------

def build_qat(model: nn.Module, plain: data.DataBundle, train: data.DataBundle, out: Path, s: Settings) -> Any:
    """One short QAT run: fake-quantized fine-tuning from the FP32 weights, distilled from them."""
    qmodel = prepare_qat(model, plain.train, calibration_batches=s.calibration_batches)
    task = DistillTask(qmodel, model, [(L.create("kd", T=4), 0.9), (L.create("ce"), 0.1)])
    history = fit(task, train.train, s.qat_epochs, lr=s.qat_lr, schedule="cosine", threads=s.train_threads,
                  progress=False)
    training = {"epochs": s.qat_epochs, "lr": s.qat_lr, "schedule": "cosine", "teacher": "the FP32 model",
                "losses": "0.9 kd(T=4) + 0.1 ce", "seconds": history.seconds,
                "train_loss": [e["train_loss"] for e in history.epochs]}
    return qat_int8(qmodel, plain.train, out=out, training=training)


def build(variant: str, model: nn.Module, fp32: Path, out: Path, plain: data.DataBundle, train: data.DataBundle,
          s: Settings) -> Any:
    """Build one INT8 variant into ``out`` and return it (an OnnxModel)."""
    if variant.startswith("static-"):
        return static_int8(fp32, plain.train, out=out, calibration_batches=s.calibration_batches,
                           calibration_method=variant[7:])
    if variant == "dynamic":
        return dynamic_int8(fp32, out=out, op_types=s.dynamic_ops)
    if variant == "qat":
        return build_qat(model, plain, train, out, s)
    raise TorchSlimError(f"Unknown variant {variant!r}; valid: {', '.join(VARIANTS)}.")


def _path(entry: dict) -> Path:
    """A recorded artifact path (relative to the repository when inside it)."""
    path = Path(entry["path"])
    return path if path.is_absolute() else REPO / path


def reusable(entry: dict | None) -> bool:
    """An earlier build whose file still matches its recorded hash."""
    return bool(entry) and _path(entry).is_file() and sha256_file(_path(entry)) == entry["sha256"]


def build_all(name: str, spec: dict, work: Path, plain: data.DataBundle, train: data.DataBundle, s: Settings,
              result: dict, save: Any) -> dict[str, Any]:
    """``{variant: what measure_many takes}``: the module, or the built ``.onnx``."""
    builds = result["builds"].setdefault(name, {})
    model, where = spec["model"], work / name.replace(":", "-")
    runnables: dict[str, Any] = {}
    if not reusable(builds.get("ort-fp32")):
        began = time.perf_counter()
        sample = next(iter(plain.test))[0][:2]
        report = export_onnx(model, sample, where / "fp32.onnx", check_data=plain.test)
        builds["ort-fp32"] = {"path": display_path(report.path), "sha256": sha256_file(report.path),
                              "seconds": time.perf_counter() - began, "export": report.to_dict()}
        save()
    fp32 = _path(builds["ort-fp32"])
    for variant in spec["variants"]:
        if variant == "torch-fp32":
            runnables[variant] = model
            continue
        if variant != "ort-fp32" and not reusable(builds.get(variant)):
            print(f"{name}: building {variant} ...", flush=True)
            began = time.perf_counter()
            art = build(variant, model, fp32, where / variant, plain, train, s)
            builds[variant] = {"path": display_path(art.path), "sha256": sha256_file(art.path),
                               "seconds": time.perf_counter() - began, "record": art.info}
            save()
        runnables[variant] = _path(builds[variant])
    return runnables


# -- summary ---------------------------------------------------------------------------------------

def _median(record: dict, batch: int, threads: int) -> float | None:
    stat = MeasureRecord.from_dict(record).latency_for(batch, threads)
    return stat.median_ms if stat else None


def summarise(records: dict[str, dict], s: Settings) -> dict[str, dict]:
    """Per variant: accuracy delta to torch FP32, size ratio to ONNX FP32, speed-ups at every
    setting over torch FP32 and over ONNX Runtime FP32."""
    torch_rec, ort_rec = records.get("torch-fp32"), records.get("ort-fp32")
    out = {}
    for variant, rec in records.items():
        entry: dict[str, Any] = {"accuracy": rec["accuracy"], "bytes": rec["bytes"], "speedup": {}}
        if torch_rec:
            entry["accuracy_delta"] = rec["accuracy"] - torch_rec["accuracy"]
        if ort_rec:
            entry["size_ratio_vs_ort_fp32"] = ort_rec["bytes"] / rec["bytes"]
        for b in s.batch_sizes:
            for t in s.threads:
                mine = _median(rec, b, t)
                key = f"b{b}x{t}"
                entry["speedup"][key] = {
                    "vs_torch": _median(torch_rec, b, t) / mine if torch_rec and mine else None,
                    "vs_ort_fp32": _median(ort_rec, b, t) / mine if ort_rec and mine else None}
        out[variant] = entry
    return out


def findings(name: str, summary: dict[str, dict], s: Settings) -> list[str]:
    """Plain sentences: targets for the teacher's static INT8, and every INT8 variant that is
    slower than ONNX Runtime FP32 or loses more than the accuracy target."""
    lines = []
    big = max(s.batch_sizes)
    for variant, e in summary.items():
        if variant in ("torch-fp32", "ort-fp32"):
            continue
        slower = [k for k, v in e["speedup"].items() if v["vs_ort_fp32"] is not None and v["vs_ort_fp32"] < 1.0]
        if slower:
            lines.append(f"`{name}` {variant} is **slower than ONNX Runtime FP32** at "
                         + ", ".join(f"{k} ({e['speedup'][k]['vs_ort_fp32']:.2f}×)" for k in slower) + ".")
        if e.get("accuracy_delta") is not None and e["accuracy_delta"] < -TARGET["accuracy_points"]:
            lines.append(f"`{name}` {variant} **loses {-e['accuracy_delta']:.2f} accuracy points** "
                         "against torch FP32.")
    if name == "teacher" and {"torch-fp32", "ort-fp32"} <= set(summary):
        for variant in (v for v in summary if v.startswith("static-")):
            e = summary[variant]
            checks = []
            for t in s.threads:
                sp = e["speedup"][f"b{big}x{t}"]
                checks.append(f"batch {big}, {t} thread(s): {sp['vs_torch']:.2f}× vs torch "
                              f"({'met' if sp['vs_torch'] >= TARGET['vs_torch'] else 'missed'} ≥ {TARGET['vs_torch']:g}×), "
                              f"{sp['vs_ort_fp32']:.2f}× vs ORT FP32 "
                              f"({'met' if sp['vs_ort_fp32'] >= TARGET['vs_ort_fp32'] else 'missed'} ≥ "
                              f"{TARGET['vs_ort_fp32']:g}×)")
            acc_ok = abs(e["accuracy_delta"]) <= TARGET["accuracy_points"]
            lines.append(f"Targets, teacher {variant}: " + "; ".join(checks)
                         + f"; accuracy {e['accuracy_delta']:+.2f} points ({'met' if acc_ok else 'missed'}, "
                         f"within {TARGET['accuracy_points']:g}); file {e['size_ratio_vs_ort_fp32']:.2f}× smaller "
                         f"than the FP32 .onnx (target about {TARGET['size_ratio']:g}×).")
    if "qat" in summary:
        ptq = {v: e for v, e in summary.items() if v.startswith("static-")}
        if ptq:
            best, e = max(ptq.items(), key=lambda kv: kv[1]["accuracy"])
            diff = summary["qat"]["accuracy"] - e["accuracy"]
            verdict = "beats" if diff > 0 else "matches" if diff == 0 else "does not beat"
            lines.append(f"`{name}`: QAT {verdict} the most accurate post-training variant ({best}): "
                         f"{summary['qat']['accuracy']:.2f}% vs {e['accuracy']:.2f}% ({diff:+.2f} points; one "
                         "seed and one QAT epoch, so a gap of a few test images is no difference).")
    return lines


# -- markdown --------------------------------------------------------------------------------------

def _cell(record: dict, summary: dict, b: int, t: int) -> str:
    stat = MeasureRecord.from_dict(record).latency_for(b, t)
    if stat is None:
        return "—"
    sp = summary["speedup"][f"b{b}x{t}"]
    text = f"{stat.median_ms:.3g} ({stat.p10_ms:.3g}–{stat.p90_ms:.3g})"
    if sp["vs_torch"] is not None:
        text += f" {sp['vs_torch']:.2f}×"
    if sp["vs_ort_fp32"] is not None:
        text += f" / {sp['vs_ort_fp32']:.2f}×"
    return text + (" *" if stat.spread > 1.5 else "")


def table(records: dict[str, dict], summary: dict[str, dict], s: Settings) -> str:
    keys = [(b, t) for t in s.threads for b in s.batch_sizes]
    lines = ["| variant | runtime | kernel | size (× smaller) | accuracy (Δ) | "
             + " | ".join(f"b{b} × {t} thr, ms" for b, t in keys) + " |",
             "|---|---|---|---:|---:|" + "---:|" * len(keys)]
    for variant, rec in records.items():
        e = summary[variant]
        size = human(rec["bytes"], "B") + (f" ({e['size_ratio_vs_ort_fp32']:.2f}×)" if "size_ratio_vs_ort_fp32" in e else "")
        acc = f"{rec['accuracy']:.2f}%" + (f" ({e['accuracy_delta']:+.2f})" if variant != "torch-fp32" else "")
        kernel = rec["extra"].get("kernel", "FP32")
        lines.append(f"| {variant} | {rec['runtime']} | {kernel} | {size} | {acc} | "
                     + " | ".join(_cell(rec, e, b, t) for b, t in keys) + " |")
    return "\n".join(lines) + "\n"


def render_section(result: dict[str, Any], s: Settings, quick: bool) -> str:
    title = "INT8 on ONNX Runtime (Fashion-MNIST)" + (" — `--quick` smoke run (synthetic data, stand-in "
                                                       "models trained 2 epochs): not a result" if quick else "")
    parts = [f"## {title}",
             f"`{result['command']}` — {result['date']}, {machine_line(result['machine'])}. "
             f"JSON: `{result['json']}`.",
             f"Operand types: **{result['operands']['operands']}** — {result['operands']['reason']}.",
             f"Static INT8: QDQ, per-channel weights, {s.calibration_batches} calibration batches of "
             f"{s.calibration_batch_size} training images. Dynamic INT8: {', '.join(s.dynamic_ops)} as integer "
             f"ops. QAT: {s.qat_epochs} epoch(s) from the FP32 weights, lr {s.qat_lr} cosine, batch "
             f"{s.qat_batch_size}, 0.9 KD (T=4) from the FP32 model + 0.1 CE, then static INT8 with the learned "
             "input ranges. Accuracy over the whole test set; latency: median ms per batch (p10–p90), then "
             "the speed-up over torch FP32 / over ONNX Runtime FP32, interleaved over "
             f"{s.rounds} round(s); * marks p90/p10 > 1.5 (a busy machine)."]
    for name, entry in result["models"].items():
        if not entry.get("records"):
            continue
        records = {r["name"]: r for r in entry["records"]}
        parts.append(f"### `{name}` ({entry['source']})")
        parts.append(table(records, entry["summary"], s))
        notes = entry["findings"] + [n for r in records.values() for n in r["notes"] if "oversubscribed" in n]
        if notes:
            parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(p.strip() for p in parts) + "\n"


# -- the benchmark ---------------------------------------------------------------------------------

def run(args: argparse.Namespace, s: Settings) -> int:
    started = time.perf_counter()
    plain, train = load_data(args.quick, s)
    specs = load_models(args.quick, args.extra_model, plain)
    from torchslim.quantize import choose

    config = json.loads(json.dumps({"quick": args.quick, "settings": dataclasses.asdict(s), "data": plain.name,
                                    "models": {n: {"source": m["source"], "variants": list(m["variants"])}
                                               for n, m in specs.items()}}))
    # Builds are kept in the work directory, so a record of other settings is simply replaced.
    old = previous_record(args.out, config, args.restart, set_aside=False)
    result: dict[str, Any] = {
        **record_header(NAME, args), "config": config, "machine": machine_info(), "operands": choose().to_dict(), "work": display_path(args.work),
        "builds": (old or {}).get("builds", {}), "models": (old or {}).get("models", {})}

    def save() -> None:
        atomic_write_json(args.out, result)

    if not args.quick:
        left = sum(sum(COST[n if n in COST else "extra"].values()) for n in specs
                   if not result["models"].get(n, {}).get("records"))
        print(f"estimated time left: ~{left / 60:.0f} min")
    save()
    for name, spec in specs.items():
        if result["models"].get(name, {}).get("records"):
            print(f"{name}: measured already (resuming)")
            continue
        runnables = build_all(name, spec, args.work, plain, train, s, result, save)
        print(f"{name}: measuring {len(runnables)} variants ...", flush=True)
        records = measure_many(runnables, plain.test, batch_sizes=s.batch_sizes, threads=s.threads,
                               rounds=s.rounds, latency_kwargs=s.latency)
        recs = {r.name: r.to_dict() for r in records}
        summary = summarise(recs, s)
        # A list keeps the variants' order (the JSON is written with sorted keys).
        result["models"][name] = {"source": spec["source"], "records": list(recs.values()), "summary": summary,
                                  "findings": findings(name, summary, s)}
        save()
        print(table(recs, summary, s))
    result["seconds"] = time.perf_counter() - started
    save()
    write_section(args.results_md, NAME, render_section(result, s, args.quick))
    for entry in result["models"].values():
        for line in entry["findings"]:
            print(line)
    report_written(NAME, args.out, args.results_md)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__, "synthetic data, stand-in models trained 2 epochs: a smoke test in seconds")
    parser.add_argument("--extra-model", type=Path, default=None,
                        help="a checkpoint directory (torchslim.load_model) measured too, e.g. a pruned teacher")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the artifacts go (default runs/quantize_fashion_mnist[-quick])")
    parser.add_argument("--restart", action="store_true", help="ignore the builds and measurements recorded in --out")
    args = parse(parser, NAME, argv)
    default_work(args, NAME)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    with torch_threads(settings.train_threads):
        return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
