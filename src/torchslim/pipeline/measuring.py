"""Measuring a comparison's final models: each on every deployment target it can run on, timed
together in interleaved rounds (the image task), or the text task's records keyed by row.

The tasks (:mod:`torchslim.pipeline.tasks`) call these; the comparison calls the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from torchslim.core.errors import TorchSlimError

QUICK_MAX_SECONDS = 3.0  # --quick: the timing cap per setting (a smoke run, not a measurement to quote)
QUICK_MIN_ROUNDS = 3  # --quick: fewest rounds that give an interval at all

if TYPE_CHECKING:
    from torchslim.pipeline.runner import Context, StrategyResult


def _targets_of(r: StrategyResult, baseline: str, wanted: list[str]) -> list[str]:
    """The targets ``r``'s final model is measured on: a torch model on torch-fp32 and ort-fp32, an
    ONNX model on ort-int8 (quantized) or ort-fp32 (exported); the baseline strategy also on
    torch-fp32 (the user's baseline) and on ort-fp32 when any ONNX Runtime target is listed."""
    if r.final.kind == "onnx":
        mine = ["ort-int8" if r.route["int8"] else "ort-fp32"]  # a quantize or qat step's model
    else:
        mine = ["torch-fp32", "ort-fp32"]
    ort = any(t.startswith("ort-") for t in wanted)
    return [t for t in mine if t in wanted or (r.name == baseline and (t == "torch-fp32" or ort))]


def _export(ctx: Context, name: str, model: nn.Module, example: Any) -> Path:
    """``model`` exported to ONNX for the ort-fp32 target, under ``out/targets/<strategy>/``."""
    from torchslim.export import onnx as export_onnx

    path = ctx.out / "targets" / name / "model.onnx"
    export_onnx(model, example, path, check_data=ctx.data.test)
    return path


def _candidates(ctx: Context, results: list[StrategyResult], example: Any) -> tuple[dict, dict, dict, list]:
    """Every (strategy, target) to measure: ``(runnables, sized files, extras, failures)`` keyed by
    row id; an export that fails is a failure of that row only."""
    from torchslim.report.rows import first_line, row_id
    from torchslim.runtime import OnnxModel

    cfg, baseline = ctx.recipe.measure, ctx.recipe.baseline_name
    runnables, sized, extras, failures = {}, {}, {}, []
    for r in results:
        if not r.ok or r.final is None:
            continue
        model = r.model if r.model is not None else r.final.materialise(ctx)
        for target in _targets_of(r, baseline, list(cfg.targets)):
            rid = row_id(r.name, target)
            try:
                if isinstance(model, nn.Module) and target == "torch-fp32":
                    runnable, artifact, size = model.eval(), r.final.path, r.final.weights
                else:
                    path = r.final.path if r.final.kind == "onnx" else _export(ctx, r.name, model, example)
                    runnable, artifact, size = ctx.runnable(path), path, path
            except TorchSlimError as exc:
                ctx.log(f"{rid}: FAILED — {first_line(str(exc))}")
                failures.append({"strategy": r.name, "target": target, "error": first_line(str(exc))})
                continue
            runnables[rid], sized[rid] = runnable, size
            extras[rid] = {"strategy": r.name, "target": target, "artifact": str(artifact),
                           "input_name": runnable.input_name if isinstance(runnable, OnnxModel) else None,
                           "source": model if isinstance(model, nn.Module) and target != "torch-fp32" else None}
    return runnables, sized, extras, failures


def _exported_record(rid: str, module: nn.Module, runnable: Any, path: Path, ctx: Context, example: Any) -> Any:
    """An exported model's record: accuracy as ONNX Runtime computes it, bytes of the ``.onnx``;
    parameters and MACs are the torch model's (the same arithmetic: ONNX shape inference cannot
    always size every node of a freshly exported graph)."""
    from torchslim.measure import MeasureRecord, artifact_bytes, count_macs, count_parameters
    from torchslim.train.evaluate import evaluate

    metrics = evaluate(runnable, ctx.data.test, "cpu")
    return MeasureRecord(name=rid, runtime=runnable.runtime, parameters=count_parameters(module),
                         macs=count_macs(module, example), bytes=artifact_bytes(path), accuracy=metrics["accuracy"],
                         test_samples=metrics["n"], loss=metrics.get("loss"),
                         extra={"kernel": runnable.kernel, "macs_of": "torch forward", "bytes_of": str(path)})


def _timing_summary(run: Any) -> dict[str, Any]:
    """The run's noise, once: verdict, notes, options and each setting's rounds."""
    keep = ("min_rounds", "max_seconds", "target_width", "confidence", "resamples", "seed")
    return {"verdict": run.verdict, "quiet": run.quiet, "notes": list(run.notes),
            "options": {k: run.options[k] for k in keep},
            "settings": [{"setting": f"b{s.batch_size}_t{s.threads}", "rounds": s.rounds, "seconds": s.seconds,
                          "converged": s.converged} for s in run.settings]}


def _time(ctx: Context, runnables: dict, records: list, example: Any) -> dict[str, Any] | None:
    """Every row timed in one run of interleaved rounds; ONNX Runtime rows against the teacher on
    ONNX Runtime FP32 (like with like), the rest against the teacher on torch eager."""
    from torchslim.measure.rounds import attach_timing, confident_latency
    from torchslim.report.rows import row_id, same_runtime_baseline

    cfg, baseline = ctx.recipe.measure, ctx.recipe.baseline_name
    user = row_id(baseline, "torch-fp32")
    user = user if user in runnables else next(iter(runnables))
    records_by_id = {rec.name: rec for rec in records}
    pairs = {}
    for rec in records:
        same = same_runtime_baseline(rec.extra["target"], baseline, records_by_id)
        if same is not None and rec.name not in (user, same):
            pairs[rec.name] = same
    min_rounds = QUICK_MIN_ROUNDS if ctx.quick else cfg.rounds
    cap = min(cfg.max_seconds, QUICK_MAX_SECONDS) if ctx.quick else cfg.max_seconds
    ctx.log(f"timing {len(runnables)} row(s) at batch {cfg.batch_sizes} x threads {cfg.thread_counts}: at least "
            f"{min_rounds} interleaved rounds, until every speed-up is within +-5% or {cap:g} s per setting ...")
    run = confident_latency(runnables, example, baseline=user, baselines=pairs, batch_sizes=cfg.batch_sizes,
                            threads=cfg.thread_counts, min_rounds=min_rounds, max_seconds=cap,
                            runtimes={rec.name: rec.runtime for rec in records})
    attach_timing(records, run)
    ctx.log(f"timing: {run.verdict}")
    return _timing_summary(run)


def measure_image(ctx: Context, results: list[StrategyResult]) -> dict[str, Any]:
    """Measure every successful strategy's final image model on each deployment target, together.

    Returns ``{"records": {row id: record dict}, "timing": summary or None, "failures": [...]}``
    (what :func:`torchslim.report.build_matrix` reads); a record's ``extra`` names its strategy,
    target, artifact and ONNX input.
    """
    from torchslim.measure import first_sample, measure_many

    example = first_sample(ctx.data.test)
    runnables, sized, extras, failures = _candidates(ctx, results, example)
    if not runnables:
        return {"records": {}, "timing": None, "failures": failures}
    ctx.log(f"measuring {len(runnables)} row(s) (strategy x target): accuracy on {len(ctx.data.test.dataset)} "
            "test samples, parameters, MACs, bytes ...")
    exported = {rid for rid, e in extras.items() if e.get("source") is not None}
    direct = {k: v for k, v in runnables.items() if k not in exported}
    records = measure_many(direct, ctx.data.test, batch_sizes=(),
                           artifacts={k: sized[k] for k in direct}) if direct else []
    records += [_exported_record(rid, extras[rid].pop("source"), runnables[rid], sized[rid], ctx, example)
                for rid in exported]
    for rec in records:
        rec.extra.update({k: v for k, v in extras[rec.name].items() if k != "source"})
    timing = _time(ctx, runnables, records, example)
    return {"records": {rec.name: rec.to_dict() for rec in records}, "timing": timing, "failures": failures}


def text_measured(records: dict[str, dict], results: list[StrategyResult]) -> dict[str, Any]:
    """The text task's records (one per strategy, on the runtime its final model runs) keyed by row id."""
    from torchslim.report.rows import row_id

    out = {}
    for r in results:
        rec = records.get(r.name)
        if rec is None:
            continue
        onnx = rec["runtime"] == "onnxruntime"
        target = ("ort-int8" if any(s["step"] == "quantize" for s in r.steps) else "ort-fp32") if onnx else "torch-fp32"
        rec["extra"].update(strategy=r.name, target=target, artifact=str(r.final.path), input_name=None)
        out[row_id(r.name, target)] = {**rec, "name": row_id(r.name, target)}
    return {"records": out, "timing": None, "failures": []}


__all__ = ["measure_image", "text_measured"]
