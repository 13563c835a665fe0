"""Channel pruning on torch-pruning's dependency graph: the model physically shrinks.

``channels`` removes the least important output channels of every prunable layer. Layers coupled
through residual adds, concatenations, BatchNorms, depthwise or grouped convolutions and the
classifier's input are pruned together, so the result is a smaller dense ``nn.Module`` that runs
faster with ordinary kernels. Attention heads go as whole heads and the residual stream of a
transformer is left alone. Every slice is recorded (:mod:`torchslim.prune.steps`), so
``save_model``/``load_model`` round-trip the pruned model without pickle.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from torchslim.core.state import applied_steps, set_applied_steps
from torchslim.measure import count_macs, count_parameters, state_dict_bytes
from torchslim.prune import importance as imp
from torchslim.prune.errors import PruneError
from torchslim.prune.head_check import check_blocks, snapshot
from torchslim.prune.plan import Plan, layer_widths, make_plan
from torchslim.prune.pruner import build_pruner, prune_step
from torchslim.prune.record import ChannelPruneRecord, Size, StepRecord
from torchslim.prune.recover import Recovery, build_cache, recalibrate_batchnorm, recover
from torchslim.prune.steps import ChannelSteps, SetAttr, Slice
from torchslim.prune.trace import run_naming_module
from torchslim.train.evaluate import evaluate


def measure_size(model: nn.Module, example_input: torch.Tensor) -> Size:
    return Size(parameters=count_parameters(model), macs=count_macs(model, example_input),
                bytes=state_dict_bytes(model))


def channels(
    model: nn.Module,
    example_input: torch.Tensor,
    ratio: float = 0.5,
    importance: str = "l2",
    *,
    ratios: Mapping[str, float] | None = None,
    head_ratio: float | None = None,
    heads: Mapping[str, int] | None = None,
    global_ranking: bool = False,
    round_to: int | None = None,
    ignore: Sequence[str | type] = (),
    ignore_classifier: bool = True,
    steps: int = 1,
    recover: str = "none",
    epochs: int = 0,
    data: Any = None,
    calibration: Iterable | None = None,
    seed: int = 0,
    **recovery_options: Any,
) -> tuple[nn.Module, ChannelPruneRecord]:
    """Remove ``ratio`` of the channels of every prunable layer; returns ``(pruned, record)``.

    The input model is not changed: a copy is pruned. The record holds the sizes before and after,
    the settings, accuracy per step (when ``data`` is given) and the applied steps that
    ``torchslim.prune.replay`` / ``torchslim.load_model`` use to rebuild the pruned architecture.

    Args:
        model: the trained model.
        example_input: a batch ``(N, ...)`` the model accepts, for tracing and MACs.
        ratio: fraction of each layer's channels to remove, in (0, 1); parameters and MACs fall
            by about ``1 - (1 - ratio)**2``.
        importance: criterion name (``torchslim.prune.IMPORTANCE``: l1, l2, fpgm, taylor,
            bn_scale, lamp, random).
        ratios: per-layer ratios by module path (a container path covers its layers).
        head_ratio: fraction of attention heads to remove (default ``ratio``).
        heads: head count per attention block, by the path of the module that directly owns its
            q/k/v Linear layers: ``{"blocks.0.attn": 4}``. Needed for blocks without a
            ``num_heads``/``heads``/``n_heads`` attribute of their own; such a block with no count
            is refused, since pruning its channels one by one would split heads.
        global_ranking: rank channels of all layers together (layers prune unevenly) instead of
            removing ``ratio`` of each layer.
        round_to: keep channel counts multiples of this (hardware-friendly widths).
        ignore: module paths or ``nn.Module`` types whose output channels are kept.
        ignore_classifier: keep the layer producing the output (found automatically).
        steps: prune in this many equal steps (iterative), recovering between them.
        recover: ``"none"``, ``"finetune"`` or ``"kd"`` (distillation from the unpruned model).
        epochs: total recovery epochs, split over the steps.
        data: a ``DataBundle`` to recover on and to measure test accuracy with.
        calibration: batches ``(x, y)`` for the ``taylor`` gradients (default: ``data.train``,
            else ``example_input`` with the model's own predictions as labels).
        seed: seeds ``random`` importance and recovery.
        recovery_options: fields of :class:`~torchslim.prune.recover.Recovery`: ``T`` and
            ``kd_weight`` of the distillation, ``cache`` of the unpruned model's logits
            (``"memory"``, ``"disk"`` with ``cache_dir``, ``"none"``, or a ``TeacherCache``),
            ``bn_batches`` re-estimating BatchNorm statistics after each step (50),
            ``fit_options`` for ``torchslim.fit``, ``progress``, ``threads``.

    Raises:
        PruneError: a ratio outside (0, 1), an unknown criterion or ignored path (closest real
            paths listed), a ``heads`` entry that is not an attention block or does not divide its
            width, an attention block whose head count is unknown, pruning that would split a
            head, a model torch-pruning cannot trace (the module named), a layer that would lose
            every channel.
    """
    started = time.perf_counter()
    recovery = _recovery(recover, epochs, recovery_options, data)
    imp.IMPORTANCE.get(importance)  # an unknown name fails before any work
    work = copy.deepcopy(model)
    was_training = work.training
    plan = make_plan(work, example_input, ratio, ratios, head_ratio, ignore, ignore_classifier, steps, round_to,
                     heads)
    teacher = copy.deepcopy(model).eval() if recovery.mode == "kd" else None
    before = measure_size(work, example_input)
    record_ops: list[Slice | SetAttr] = []
    history, notes = [], list(plan.notes)
    accuracy_before = _accuracy(work, data)
    pruner = build_pruner(work, example_input, plan, importance, global_ranking, notes)
    cache = build_cache(teacher, data, recovery, max(recovery.per_step(steps))) if teacher is not None else None
    for step, epochs_i in enumerate(recovery.per_step(steps), start=1):
        torch.manual_seed(seed + step)
        if importance in imp.NEEDS_GRADIENTS:
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
        history.append(_recover_step(step, work, teacher, data, epochs_i, recovery, cache, plan, seed,
                                     example_input))
    work.train(was_training)
    steps_record = ChannelSteps(base=plan.base, ops=record_ops)
    set_applied_steps(work, applied_steps(model) + [steps_record.to_dict()])
    record = ChannelPruneRecord(
        criterion=importance, ratio=plan.ratio, ratios=dict(ratios or {}),
        head_ratio=plan.head_ratio if plan.num_heads else None,
        global_ranking=global_ranking, round_to=round_to, ignored=plan.ignored_labels,
        classifier=plan.classifier, attention=_heads(plan, work), widths=_widths(plan, work),
        iterative_steps=steps, recover=recovery.mode, epochs=recovery.epochs if recovery.active else 0,
        before=before, after=measure_size(work, example_input), accuracy_before=accuracy_before,
        history=history, seconds=time.perf_counter() - started, notes=notes, steps=steps_record)
    return work, record


def _recovery(mode: str, epochs: int, options: dict[str, Any], data: Any) -> Recovery:
    fields = set(Recovery.__dataclass_fields__) - {"mode", "epochs"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise PruneError(f"channels() got unknown option(s) {unknown}; recovery options are "
                         f"{', '.join(sorted(fields))}.")
    recovery = Recovery(mode=mode, epochs=epochs, **options)
    recovery.validate(has_data=data is not None)
    return recovery


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


def _recover_step(step: int, model: nn.Module, teacher: nn.Module | None, data: Any, epochs: int,
                  recovery: Recovery, cache, plan: Plan, seed: int, example_input: torch.Tensor) -> StepRecord:
    if data is not None:
        recalibrate_batchnorm(model, data.train, recovery.bn_batches)
    accuracy_pruned = _accuracy(model, data)
    history = recover(model, teacher, data, epochs, recovery, cache=cache, seed=seed + step)
    return StepRecord(
        step=step, target_ratio=plan.ratio * step / plan.steps, size=measure_size(model, example_input),
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
