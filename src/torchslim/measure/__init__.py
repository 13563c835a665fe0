"""Measure what a compressed model costs and keeps: accuracy, parameters, MACs, bytes, latency.

``measure(model, test_loader)`` gives one :class:`MeasureRecord`; ``measure_many`` measures several
models with their latencies interleaved, so ratios to a baseline are fair on a noisy machine.
A model is an ``nn.Module``, a deployed runtime (``torchslim.runtime``: torch eager or ONNX
Runtime) or the path of an ``.onnx`` file or artifact directory; all are evaluated by the same
loop and timed in the same interleaved rounds. For an ONNX model, parameters and MACs are read
from the graph (``torchslim.runtime.graph``) and bytes are the ``.onnx`` file's size.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.macs import batch_size_of, count_macs, count_parameters
from torchslim.core.registry import did_you_mean
from torchslim.core.tensors import save_tensors
from torchslim.measure.latency import check_options, check_positive_ints, interleaved_latency, measure_latency
from torchslim.measure.record import SPREAD_LIMIT, LatencyStat, MeasureRecord, RatioStat, TimingRun
from torchslim.measure.system import machine_info
from torchslim.measure.table import print_records, records_markdown, records_table
from torchslim.train.batch import as_batch
from torchslim.train.evaluate import check_model_fits, evaluate

# Options of measure_latency a caller may set through latency_kwargs (the rest are set here).
LATENCY_OPTIONS = tuple(p for p in inspect.signature(measure_latency).parameters
                        if p not in ("fn", "example_input", "batch_size", "threads", "runtime"))


def artifact_bytes(path: str | Path) -> int:
    """Size on disk of a file, or the total of every file under a directory, in bytes.

    Raises:
        TorchSlimError: nothing exists at ``path``.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise TorchSlimError(f"No artifact at {path}: pass the saved model file or directory to size.")


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``model.state_dict()`` saved as safetensors (what ``save_model`` writes)."""
    with tempfile.TemporaryDirectory(prefix="torchslim-measure-") as tmp:
        return save_tensors(Path(tmp) / "model.safetensors", model.state_dict()).stat().st_size


def first_sample(loader: Iterable) -> torch.Tensor:
    """The first sample of ``loader``'s first batch, as a batch of one ``(1, ...)``.

    Raises:
        TorchSlimError: the loader yields nothing, or batches of an unknown shape.
    """
    for raw in loader:
        return as_batch(raw)["x"][:1]
    raise TorchSlimError("The loader yields no batches, so no example input can be taken from it.")


def _check_latency_kwargs(latency_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    latency_kwargs = dict(latency_kwargs or {})
    for key in latency_kwargs:
        if key not in LATENCY_OPTIONS:
            raise TorchSlimError(f"Unknown latency option {key!r}.{did_you_mean(key, LATENCY_OPTIONS)} "
                                 f"Valid: {', '.join(LATENCY_OPTIONS)}.")
    # Checked here, before accuracy is evaluated, so a typo fails in a second, not after a long pass.
    defaults = {k: p.default for k, p in inspect.signature(measure_latency).parameters.items()}
    options = {**defaults, **latency_kwargs}
    check_options(*(options[k] for k in ("warmup", "repeats", "min_seconds", "min_repeats", "max_repeats")))
    return latency_kwargs


def _thread_notes(threads: Sequence[int]) -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [f"timed with {t} threads on {usable} usable core(s): oversubscribed, so slower than it "
            "should be" for t in threads if t > usable]


def _as_runnable(model: Any) -> Any:
    """An ``nn.Module`` or runtime as is; a path opened as a runtime (``torchslim.runtime.load``)."""
    if isinstance(model, nn.Module):
        return model
    from torchslim.runtime import wrap  # local: only a path needs the runtimes (and onnx loaded)

    return wrap(model)


def _size(model: Any, artifact: str | Path | None) -> tuple[int, str]:
    """``(bytes, what was sized)``: the artifact given, else the runtime's file, else the state_dict."""
    if artifact is not None:
        return artifact_bytes(artifact), str(artifact)
    if isinstance(model, nn.Module):
        return state_dict_bytes(model), "state_dict as safetensors"
    path = model.path
    if path is not None and path.is_file():
        return artifact_bytes(path), str(path)
    if path is not None and (path / "model.safetensors").is_file():
        return artifact_bytes(path / "model.safetensors"), str(path / "model.safetensors")
    return state_dict_bytes(model.module), "state_dict as safetensors"


def _static_record(name: str, model: Any, loader: Iterable | None, example: torch.Tensor,
                   artifact: str | Path | None, runtime: str, device: torch.device) -> MeasureRecord:
    """Everything but latency: accuracy and loss (whole loader), parameters, MACs, bytes."""
    metrics = evaluate(model, loader, device) if loader is not None else {}
    size, sized = _size(model, artifact)
    extra = {"device": str(device), "input_shape": list(example.shape[1:]), "bytes_of": sized}
    if isinstance(model, nn.Module):
        parameters, macs = count_parameters(model), count_macs(model, example)
    else:
        parameters, macs, runtime = model.parameter_count(), model.macs(example), model.runtime
        extra.update(kernel=model.kernel, macs_of="onnx graph" if runtime == "onnxruntime" else "torch forward")
    return MeasureRecord(
        name=name, runtime=runtime, parameters=parameters, macs=macs, bytes=size,
        accuracy=metrics.get("accuracy"), test_samples=metrics.get("n"), loss=metrics.get("loss"), extra=extra,
    )


def measure_many(
    models: Mapping[str, Any],
    loader: Iterable | None = None,
    *,
    example_input: torch.Tensor | None = None,
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    rounds: int = 3,
    artifacts: Mapping[str, str | Path] | None = None,
    runtime: str = "torch-eager",
    device: str | torch.device = "cpu",
    latency_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
) -> list[MeasureRecord]:
    """Measure several models; their latencies are timed in alternating rounds (A B, B A, ...).

    Args:
        models: ``{name: model}``: an ``nn.Module`` (moved to ``device``), a runtime from
            ``torchslim.runtime`` or the path of an ``.onnx`` file or model directory. Put the
            baseline first.
        loader: test loader yielding ``(x, y)`` or ``(x, y, index)``; accuracy and loss are over
            all of it. Without it, accuracy and loss are None.
        example_input: a batch ``(N, ...)`` for MACs and latency; default: the loader's first
            sample.
        batch_sizes: batch sizes timed (each with every entry of ``threads``); empty skips latency.
        threads: thread counts timed (each with every entry of ``batch_sizes``).
        rounds: interleaved rounds per setting; ``latency_kwargs`` apply to each round.
        artifacts: ``{name: saved file or directory}`` whose size is reported; for a model
            without one, its state_dict saved as safetensors is sized.
        runtime: the runtime name recorded for every ``nn.Module``; a runtime object records its
            own (``"onnxruntime"``, ``"torch-eager"``) and its kernel path in ``extra``.
        latency_kwargs: options for :func:`measure_latency` (warmup, repeats, min_seconds, ...).
        num_classes: the data's class count; a model with another output width is refused before
            anything is measured (default: the loader's dataset's ``num_classes`` when it has one;
            labels beyond the model's outputs are refused in any case).

    Raises:
        TorchSlimError: neither ``loader`` nor ``example_input``, bad batch sizes or thread
            counts, an unknown latency option, an artifact that does not exist, or a model that
            does not take the data's inputs or has another number of outputs than its classes.
    """
    if loader is None and example_input is None:
        raise TorchSlimError("measure needs a loader (for accuracy and an example input) or an "
                             "example_input (a batch (N, ...) the model accepts); got neither.")
    if not models:
        raise TorchSlimError("measure_many needs at least one model, got an empty mapping.")
    batch_sizes = check_positive_ints("batch_sizes", batch_sizes, allow_empty=True)
    threads = check_positive_ints("threads", threads)
    latency_kwargs = _check_latency_kwargs(latency_kwargs)
    artifacts = artifacts or {}
    for path in artifacts.values():
        artifact_bytes(path)  # a missing artifact fails now, not after evaluating every model
    device = torch.device(device)
    example = example_input if example_input is not None else first_sample(loader)
    batch_size_of(example)  # a tensor with a batch dimension, checked before anything runs
    example = example.to(device)
    if num_classes is None:
        num_classes = getattr(getattr(loader, "dataset", None), "num_classes", None)
    runnables = {name: _as_runnable(model) for name, model in models.items()}
    for name, model in runnables.items():  # a model that does not fit the data fails here, named
        if isinstance(model, nn.Module):
            check_model_fits(model.to(device), example[:2], num_classes, f"measure: model {name!r}")
    records = []
    for name, model in runnables.items():
        if isinstance(model, nn.Module):
            model.to(device)
        records.append(_static_record(name, model, loader, example, artifacts.get(name), runtime, device))
    timings = interleaved_latency(runnables, example, batch_sizes=batch_sizes, threads=threads, rounds=rounds,
                                  runtimes={r.name: r.runtime for r in records}, **latency_kwargs)
    notes = _thread_notes(threads) if batch_sizes else []
    for record in records:
        record.latency = timings[record.name]
        record.notes += notes + record.spread_warning()
    return records


def measure(
    model: Any,
    loader: Iterable | None = None,
    *,
    example_input: torch.Tensor | None = None,
    name: str = "model",
    batch_sizes: Sequence[int] = (1, 64),
    threads: Sequence[int] = (1,),
    artifact: str | Path | None = None,
    runtime: str = "torch-eager",
    device: str | torch.device = "cpu",
    latency_kwargs: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
) -> MeasureRecord:
    """Accuracy, loss, parameters, MACs, bytes and latency of one model (see :func:`measure_many`).

    To compare against a baseline, use :func:`measure_many` so both are timed in the same run.
    """
    return measure_many({name: model}, loader, example_input=example_input, batch_sizes=batch_sizes,
                        threads=threads, rounds=1, artifacts={name: artifact} if artifact is not None else None,
                        runtime=runtime, device=device, latency_kwargs=latency_kwargs, num_classes=num_classes)[0]


__all__ = [
    "SPREAD_LIMIT", "LatencyStat", "MeasureRecord", "RatioStat", "TimingRun", "artifact_bytes", "attach_timing",
    "confident_latency", "first_sample", "count_macs", "count_parameters",
    "interleaved_latency", "machine_info", "measure", "measure_latency", "measure_many", "print_records",
    "records_markdown", "records_table", "state_dict_bytes",
]


def __getattr__(name: str) -> Any:
    # rounds imports this package's helpers, so its two entry points are imported on first use
    if name in ("attach_timing", "confident_latency"):
        from torchslim.measure import rounds

        return getattr(rounds, name)
    raise AttributeError(f"module 'torchslim.measure' has no attribute {name!r}")
