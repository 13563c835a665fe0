"""Measuring the text task's final models together: agreement with the teacher, speed and size.

A text model has no accuracy: its quality is how closely its sentence embeddings agree with the
teacher's on the held-out test sentences — mean cosine, k-NN overlap and pairwise Spearman
(:func:`torchslim.text.agreement`), all three recorded; the matrix's quality column is the
pairwise Spearman ×100 (:data:`QUALITY`), which reads what similarity search and ranking use: the
order of the similarities. Speed is timed on real sentences (the first N test sentences, padded to
their longest, as a deployment would batch them), every model on the same batch in interleaved
rounds (:func:`torchslim.text.throughput`), so speed-ups are ratios taken in one run. The records
have :class:`~torchslim.measure.MeasureRecord`'s shape, so the matrix treats both tasks alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

QUALITY = "pairwise_spearman"


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def agreement_with_teacher(ctx: Any, models: dict[str, Any], ids: torch.Tensor) -> dict[str, dict]:
    """``{name: agreement}`` of each model's embeddings of ``ids`` ((N, L) token ids) with the recipe's
    teacher's: mean cosine, k-NN overlap (k = ``text.neighbours``) and pairwise Spearman (over the
    first ``text.spearman_size``). A model is an encoder or an :class:`~torchslim.text.OrtEncoder`."""
    from torchslim.text import agreement, embed

    teacher, _ = ctx.load_model("teacher")
    pad, cfg = teacher.pad_token_id, ctx.recipe.text
    with _torch_threads(ctx.recipe.threads):
        reference = embed(teacher, ids, pad)
        return {name: agreement(embed(model, ids, pad), reference, k=min(cfg.neighbours, len(ids) - 1),
                                spearman_n=cfg.spearman_size) for name, model in models.items()}


def onnx_macs(path: Path, tokens: int) -> int | None:
    """MACs of one sentence of ``tokens`` tokens through the encoder graph at ``path`` (None when
    some MatMul's shape stays unknown).

    ONNX's own shape inference stops at the position-id slice of a BERT export (its end is computed
    from the input's shape), so this uses ONNX Runtime's symbolic shape inference, made for
    transformer graphs, with the input fixed to (1, tokens).
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from torchslim.runtime.graph import CONV_OPS, MATMUL_OPS, _node_macs, read_model

    model = read_model(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[1].dim_value = 1, tokens
    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    shapes = {init.name: list(init.dims) for init in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        d = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(x.HasField("dim_value") for x in d):
            shapes[info.name] = [x.dim_value for x in d]
    counts = [_node_macs(node, shapes) for node in inferred.graph.node
              if node.op_type in MATMUL_OPS or node.op_type in CONV_OPS]
    return None if any(c is None for c in counts) else sum(counts)


def _static(model: Any, path: Path, batch: torch.Tensor) -> dict[str, Any]:
    """Parameters, MACs per sentence of ``batch``'s length, bytes, runtime and kernel of one model."""
    from torchslim.measure import artifact_bytes, count_macs, count_parameters

    if isinstance(model, nn.Module):
        return {"parameters": count_parameters(model), "macs": count_macs(model, batch),
                "bytes": artifact_bytes(path), "runtime": "torch-eager", "kernel": "torch eager FP32"}
    from torchslim.runtime.graph import kernel_of, parameter_count, read_model

    graph = read_model(model.path)
    return {"parameters": parameter_count(graph), "macs": onnx_macs(model.path, batch.shape[1]),
            "bytes": artifact_bytes(path), "runtime": "onnxruntime", "kernel": f"ONNX Runtime {kernel_of(graph)}"}


def measure_text(ctx: Any, results: list[Any]) -> dict[str, dict]:
    """Measure every successful strategy's final text model; ``{name: record dict}`` in the shape of
    :meth:`MeasureRecord.to_dict`, ``accuracy`` = pairwise Spearman ×100 and the three agreement
    metrics, sentences per second and timing batch lengths under ``extra``."""
    from torchslim.measure import LatencyStat, MeasureRecord
    from torchslim.text import throughput

    recipe, cfg = ctx.recipe, ctx.recipe.measure
    models: dict[str, Any] = {}
    artifacts: dict[str, Path] = {}
    for r in results:
        if r.ok and r.final is not None:
            model = r.model if r.model is not None else r.final.materialise(ctx)
            models[r.name] = model.eval() if isinstance(model, nn.Module) else ctx.runnable(model)
            artifacts[r.name] = r.final.weights
    if not models:
        return {}
    ids = ctx.data.test.dataset.ids
    pad = ctx.data.test.dataset.pad_token_id
    rounds = recipe.quick.rounds if ctx.quick else cfg.rounds
    ctx.log(f"measuring {len(models)} model(s): agreement with the teacher on {len(ids)} test sentences, "
            f"speed at batch {cfg.batch_sizes} x threads {cfg.thread_counts}, {rounds} interleaved round(s) ...")
    agreements = agreement_with_teacher(ctx, models, ids)
    largest = ids[:max(cfg.batch_sizes)]
    largest = largest[:, :max(int((largest != pad).sum(dim=1).max()), 1)].contiguous()
    runtimes = {n: "torch-eager" if isinstance(m, nn.Module) else "onnxruntime" for n, m in models.items()}
    latency: dict[str, list[LatencyStat]] = {name: [] for name in models}
    speed: dict[str, dict] = {name: {} for name in models}
    for t in cfg.thread_counts:
        timed = throughput(models, ids, pad, batch_sizes=cfg.batch_sizes, threads=t, rounds=rounds,
                           runtimes=runtimes, min_seconds=cfg.min_seconds / (4 if ctx.quick else 1))
        for name, per_batch in timed.items():
            for key, stat in per_batch.items():
                b = int(key[1:])
                latency[name].append(LatencyStat.from_times(stat["times_ms"], batch_size=b, threads=t,
                                                            runtime=stat["runtime"]))
                speed[name][f"b{b}_t{t}"] = {"sentences_per_second": stat["sentences_per_second"],
                                             "tokens": stat["tokens"]}
    records = {}
    for name, model in models.items():
        static = _static(model, artifacts[name], largest)
        agree = agreements[name]
        record = MeasureRecord(
            name=name, runtime=static["runtime"], parameters=static["parameters"], macs=static["macs"] or 0,
            bytes=static["bytes"], accuracy=100.0 * agree[QUALITY], test_samples=agree["n"], latency=latency[name],
            extra={"kernel": static["kernel"], "agreement": agree, "speed": speed[name],
                   "macs_of": f"one sentence of {largest.shape[1]} tokens"})
        record.notes += record.spread_warning()
        if static["macs"] is None:
            record.notes.append("MACs not counted: shape inference left some MatMul shapes of the graph unknown.")
        records[name] = {**record.to_dict(), "macs": static["macs"]}
    return records


__all__ = ["QUALITY", "agreement_with_teacher", "measure_text", "onnx_macs"]
