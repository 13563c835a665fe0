"""Channel pruning on torch-pruning's dependency graph: the model physically shrinks.

``channels`` removes the least important output channels of every prunable layer. Layers coupled
through residual adds, concatenations, BatchNorms, depthwise or grouped convolutions and the
classifier's input are pruned together, so the result is a smaller dense ``nn.Module`` that runs
faster with ordinary kernels. Attention heads go as whole heads and the residual stream of a
transformer is left alone. Every slice is recorded (:mod:`torchslim.prune.surgery`), so
``save_model``/``load_model`` round-trip the pruned model without pickle.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.state import applied_steps, set_applied_steps
from torchslim.distill import TeacherCache
from torchslim.measure import count_macs, count_parameters, state_dict_bytes
from torchslim.prune import importance as imp
from torchslim.prune.config import PruneConfig
from torchslim.prune.configure import configure, split_module_types
from torchslim.prune.errors import PruneError
from torchslim.prune.head_check import check_blocks, snapshot
from torchslim.prune.plan import Plan, layer_widths, make_plan
from torchslim.prune.pruner import build_pruner, prune_step
from torchslim.prune.record import ChannelPruneRecord, Size, StepRecord
from torchslim.prune.recover import RecoveryRun, build_cache, check_recovery, recalibrate_batchnorm, recover
from torchslim.prune.surgery import ChannelSteps, SetAttr, Slice
from torchslim.prune.trace import run_naming_module
from torchslim.train.evaluate import evaluate


def measure_size(model: nn.Module, example_input: torch.Tensor) -> Size:
    return Size(parameters=count_parameters(model), macs=count_macs(model, example_input),
                bytes=state_dict_bytes(model))


def channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float | None = None,
    importance: str | None = None,
    *,
    config: PruneConfig | None = None,
    data: Any = None,
    calibration: Iterable | None = None,
    teacher_cache: TeacherCache | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    threads: int | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[nn.Module, ChannelPruneRecord]:
    """Remove ``ratio`` of the channels of every prunable layer; returns ``(pruned, record)``.

    The input model is not changed: a copy is pruned. The record holds the sizes before and after,
    the settings, accuracy per iteration (when ``data`` is given) and the applied steps that
    ``torchslim.prune.replay`` / ``torchslim.load_model`` use to rebuild the pruned architecture.

    Args:
        model: the trained model.
        example_input: a batch ``(N, ...)`` the model accepts, for tracing and MACs.
        ratio: fraction of each layer's channels to remove (a :class:`PruneConfig` field, as
            keyword or second positional argument).
        importance: criterion name (``torchslim.prune.IMPORTANCE``), a :class:`PruneConfig` field.
        config: the pruning and recovery options; keyword ``options`` are laid over it.
        data: a ``DataBundle`` to recover on and to measure test accuracy with.
        calibration: batches ``(x, y)`` for the ``taylor`` gradients (default: ``data.train``,
            else ``example_input`` with the model's own predictions as labels).
        teacher_cache: a ``TeacherCache`` already built for the same unpruned model and training
            loader, reused by ``kd`` recovery instead of building one (several runs, one cache).
        cache_dir: where ``cache="disk"`` keeps the unpruned model's logits.
        progress: show training progress.
        threads: torch CPU threads of the recovery training.
        seed: seeds ``random`` importance and recovery.
        **options: any other :class:`~torchslim.prune.config.PruneConfig` field (``ratios``,
            ``head_ratio``, ``heads``, ``global_ranking``, ``round_to``, ``ignore``,
            ``iterations``, ``recover``, ``epochs``, ``lr``, ``T``, ``kd_weight``, ``bn_batches``,
            ``cache``...). ``ignore`` may also hold ``nn.Module`` classes.

    Raises:
        OptionsError: an option out of its bounds, of the wrong type, unknown, or at odds with
            another (every bad one named).
        PruneError: an ignored path, ``ratios`` or ``heads`` key that does not exist (closest real
            paths listed), a ``heads`` entry that is not an attention block or does not divide its
            width, an attention block whose head count is unknown, pruning that would split a
            head, a model torch-pruning cannot trace (the module named), a layer that would lose
            every channel, recovery without data.
    """
    started = time.perf_counter()
    given = {k: v for k, v in (("ratio", ratio), ("importance", importance)) if v is not None}
    ignore_types = split_module_types(options)
    config = configure(PruneConfig, "prune.channels", config, {**given, **options})
    run = RecoveryRun(data=data, cache_dir=cache_dir, teacher_cache=teacher_cache, progress=progress,
                      threads=threads)
    check_recovery(config, run)
    work = copy.deepcopy(model)
    was_training = work.training
    plan = make_plan(work, example_input, config, ignore_types)
    teacher = copy.deepcopy(model).eval() if config.recover == "kd" else None
    before = measure_size(work, example_input)
    record_ops: list[Slice | SetAttr] = []
    history, notes = [], list(plan.notes)
    accuracy_before = _accuracy(work, data)
    pruner = build_pruner(work, example_input, plan, config.importance, config.global_ranking, notes)
    cache = build_cache(teacher, config, run) if teacher is not None else None
    for step, epochs_i in enumerate(config.epochs_per_iteration(), start=1):
        torch.manual_seed(seed + step)
        if config.importance in imp.NEEDS_GRADIENTS:
            imp.accumulate_gradients(work, _calibration(calibration, data, example_input))
        blocks_before = snapshot(plan.attention)
        ops = prune_step(pruner, work, plan)
        record_ops += ops
        work.zero_grad(set_to_none=True)
        if not any(isinstance(op, Slice) for op in record_ops):
            raise PruneError(f"Nothing was pruned in {type(model).__name__}: " + (
                " ".join(n for n in notes if "cannot score" in n) or "every prunable layer is ignored or protected.")
                + " Choose another criterion or ignore fewer layers.")
        _verify(work, example_input, plan)
        check_blocks(work, example_input, blocks_before, ops, plan.attention, notes)
        history.append(_recover_step(step, work, teacher, epochs_i, config, run, cache, plan, seed, example_input))
    work.train(was_training)
    steps_record = ChannelSteps(base=plan.base, ops=record_ops)
    set_applied_steps(work, applied_steps(model) + [steps_record.to_dict()])
    record = ChannelPruneRecord(
        criterion=config.importance, ratio=plan.ratio, ratios=dict(config.ratios),
        head_ratio=plan.head_ratio if plan.num_heads else None,
        global_ranking=config.global_ranking, round_to=config.round_to, ignored=plan.ignored_labels,
        classifier=plan.classifier, attention=_heads(plan, work), widths=_widths(plan, work),
        iterations=config.iterations, recover=config.recover, epochs=config.epochs,
        before=before, after=measure_size(work, example_input), accuracy_before=accuracy_before,
        history=history, seconds=time.perf_counter() - started, notes=notes, steps=steps_record)
    return work, record


def _accuracy(model: nn.Module, data: Any) -> float | None:
    test = getattr(data, "test", None)
    return evaluate(model, test)["accuracy"] if test is not None else None


def _calibration(calibration: Iterable | None, data: Any, example_input: torch.Tensor) -> Iterable:
    if calibration is not None:
        return calibration
    if data is not None:
        return data.train
    return [example_input]


def _verify(model: nn.Module, example_input: torch.Tensor, plan: Plan) -> None:
    """Run the pruned model once: a coupling the graph missed fails here, naming the module."""
    def run():
        with torch.no_grad():
            return model.eval()(example_input)

    hint = ("torch-pruning's dependency graph missed a coupling there (an operation it could not see); "
            "leave that module alone with ignore=[...].")
    out = run_naming_module(model, "Running the pruned model", run, hint)
    shape = tuple(getattr(out, "shape", ()))
    if plan.output_shape is not None and shape != plan.output_shape:
        raise PruneError(f"Pruning changed the model's output shape from {plan.output_shape} to {shape}: "
                         "the output layer was pruned. Keep ignore_classifier=True or add the output layer "
                         "to ignore=[...].")


def _recover_step(step: int, model: nn.Module, teacher: nn.Module | None, epochs: int, config: PruneConfig,
                  run: RecoveryRun, cache, plan: Plan, seed: int, example_input: torch.Tensor) -> StepRecord:
    if run.data is not None:
        recalibrate_batchnorm(model, run.data.train, config.bn_batches)
    accuracy_pruned = _accuracy(model, run.data)
    history = recover(model, teacher, epochs, config, run, cache=cache, seed=seed + step)
    return StepRecord(
        step=step, target_ratio=plan.ratio * step / plan.iterations, size=measure_size(model, example_input),
        accuracy_pruned=accuracy_pruned,
        accuracy_recovered=history.test["accuracy"] if history and history.test else None,
        recovery_epochs=epochs if history else 0, recovery_seconds=history.seconds if history else 0.0,
        recovery_history=history.epochs if history else [])


def _heads(plan: Plan, model: nn.Module) -> dict[str, dict[str, int]]:
    return {b.path: {"before": b.heads, "after": b.heads_now()} for b in plan.attention if b.heads is not None}


def _widths(plan: Plan, model: nn.Module) -> dict[str, list[int]]:
    after = layer_widths(model)
    return {path: [n, after[path]] for path, n in plan.widths.items() if after.get(path) != n}


__all__ = ["channels", "measure_size"]
