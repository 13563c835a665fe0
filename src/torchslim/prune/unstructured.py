"""Unstructured (magnitude) sparsity: the smallest weights become zeros.

One-shot (``sparsify(model, 0.8)``) or gradual: :class:`GradualSparsity` follows the AGP schedule
of Zhu & Gupta (2017) while training — sparsity rises from ``initial`` to ``sparsity`` as
``s(t) = s_f + (s_i - s_f)(1 - (t - t0)/(t1 - t0))^3`` between training fractions ``start`` and
``end`` — and keeps pruned weights at zero after every optimizer step (``fit(...,
on_step_end=schedule)``). Masks are applied to the weights themselves, so the model's state_dict
and checkpoints are unchanged in form; ``finalize`` leaves them permanent.

Sparsity here saves compressed bytes, not time: dense kernels multiply the zeros too (the record
says so and reports dense, zipped and CSR sizes side by side).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchslim.core.tensors import save_tensors
from torchslim.prune.config import SparsifyConfig
from torchslim.prune.configure import configure, split_module_types
from torchslim.prune.errors import PruneError
from torchslim.prune.record import LayerSparsity, SparsityRecord
from torchslim.prune.targets import resolve_ignore
from torchslim.train import fit
from torchslim.train.evaluate import evaluate

SCOPES = ("global", "layer")
LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


def check_sparsity(value: Any, where: str = "sparsity", allow_zero: bool = False) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    low_ok = number and (float(value) > 0.0 or (allow_zero and float(value) == 0.0))
    if not low_ok or not float(value) < 1.0:
        raise PruneError(f"{where} must be the fraction of weights to zero, in {'[0' if allow_zero else '(0'}, 1) "
                         f"(0.8 zeros 80% of them); got {value!r}.")
    return float(value)


def weights_to_sparsify(model: nn.Module, ignore: Sequence[str | type] = ()) -> dict[str, nn.Parameter]:
    """``{module path: weight}`` of every convolution and linear layer not under ``ignore``."""
    ignored = {id(m) for top in resolve_ignore(model, ignore)[0] for m in top.modules()}
    weights = {path: m.weight for path, m in model.named_modules()
               if isinstance(m, LAYER_TYPES) and id(m) not in ignored and m.weight is not None}
    if not weights:
        raise PruneError(f"{type(model).__name__} has no convolution or linear weights to sparsify "
                         f"(after ignore={list(ignore)!r}).")
    return weights


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Boolean keep-masks zeroing the ``sparsity`` fraction of smallest |weights|, per layer
    (``scope="layer"``) or ranked across all of them (``"global"``); ties break by position."""
    if scope not in SCOPES:
        raise PruneError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}.")
    if scope == "layer":
        return {path: _keep_largest(w.detach().abs().flatten(), sparsity).view_as(w) for path, w in weights.items()}
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = _keep_largest(flat, sparsity)
    masks, offset = {}, 0
    for path, w in weights.items():
        masks[path] = keep[offset:offset + w.numel()].view_as(w)
        offset += w.numel()
    return masks


def _keep_largest(values: torch.Tensor, sparsity: float) -> torch.Tensor:
    k = math.floor(sparsity * values.numel())
    keep = torch.ones_like(values, dtype=torch.bool)
    if k:
        keep[torch.sort(values, stable=True).indices[:k]] = False
    return keep


@torch.no_grad()
def apply_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    for path, mask in masks.items():
        weights[path].mul_(mask)


class GradualSparsity:
    """Magnitude sparsity that grows during training (AGP) and keeps pruned weights at zero.

    Pass it to ``fit(..., on_step_end=schedule)`` or call ``schedule(step, total_steps)`` after
    each optimizer step of your own loop; call :meth:`finalize` at the end.

    Args:
        model: the model being trained (its weights are masked in place).
        sparsity: final fraction of zeros, in (0, 1).
        scope: ``"global"`` (rank all layers together) or ``"layer"`` (the same fraction each).
        start: the fraction of training where sparsity starts to rise (AGP's t0).
        end: the fraction of training where it reaches its target (AGP's t1).
        initial: sparsity at ``start``.
        updates: how many times the masks are recomputed along the ramp.
        ignore: module paths or types left dense.
    """

    def __init__(self, model: nn.Module, sparsity: float, scope: str = "global", *, start: float = 0.0,
                 end: float = 0.75, initial: float = 0.0, updates: int = 20,
                 ignore: Sequence[str | type] = ()) -> None:
        self.sparsity = check_sparsity(sparsity)
        self.initial = check_sparsity(initial, "initial", allow_zero=True)
        if scope not in SCOPES:
            raise PruneError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}.")
        if not 0.0 <= start < end <= 1.0:
            raise PruneError(f"start and end must satisfy 0 <= start < end <= 1; got {start!r}, {end!r}.")
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 1:
            raise PruneError(f"updates must be a positive integer, got {updates!r}.")
        self.scope, self.start, self.end, self.updates = scope, start, end, updates
        self.weights = weights_to_sparsify(model, ignore)
        self.masks: dict[str, torch.Tensor] = {}
        self.current = 0.0

    def target(self, progress: float) -> float:
        """The AGP sparsity at training ``progress`` in [0, 1]."""
        if progress < self.start:
            return 0.0
        t = min(1.0, (progress - self.start) / (self.end - self.start))
        return self.sparsity + (self.initial - self.sparsity) * (1.0 - t) ** 3

    def __call__(self, step: int, total_steps: int) -> None:
        progress = step / max(total_steps, 1)
        ramp = max(1, round((self.end - self.start) * total_steps / self.updates))
        due = step % ramp == 0 or progress >= self.end
        target = self.target(progress)
        if due and target > self.current:
            self.masks = magnitude_masks(self.weights, target, self.scope)
            self.current = target
        apply_masks(self.weights, self.masks)

    def finalize(self) -> None:
        """Reach the final sparsity (if training stopped early) and leave the zeros in place."""
        if self.current < self.sparsity:
            self.masks = magnitude_masks(self.weights, self.sparsity, self.scope)
            self.current = self.sparsity
        apply_masks(self.weights, self.masks)


class _KeepMasks:
    def __init__(self, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
        self.weights, self.masks = weights, masks

    def __call__(self, step: int, total_steps: int) -> None:
        apply_masks(self.weights, self.masks)


def sparsify(model: nn.Module, sparsity: float | None = None, *, config: SparsifyConfig | None = None,
             data: Any = None, progress: bool = False, threads: int | None = None, seed: int = 0,
             **options: Any) -> tuple[nn.Module, SparsityRecord]:
    """Zero the ``sparsity`` fraction of smallest-magnitude conv/linear weights of a copy of ``model``.

    Args:
        model: the trained model (not changed: a copy is sparsified).
        sparsity: fraction of weights to zero (a :class:`SparsifyConfig` field, as keyword or
            second positional argument).
        config: the sparsity and training options; keyword ``options`` are laid over it.
        data: a ``DataBundle`` to train on and to measure test accuracy with.
        progress: show training progress.
        threads: torch CPU threads of the training.
        seed: seeds the training.
        **options: any other :class:`~torchslim.prune.config.SparsifyConfig` field: ``scope``,
            ``ramp`` (``"oneshot"``: zero, then train ``epochs`` with the zeros kept; ``"agp"``:
            sparsity rises during ``epochs`` of training), ``epochs``, ``ignore`` (module paths,
            class names or ``nn.Module`` classes), and the training's ``lr``, ``schedule``,
            ``optimizer``, ``weight_decay``, ``channels_last``.

    Returns:
        ``(sparse model, SparsityRecord)``: sparsity per layer and overall, dense vs compressed bytes.

    Raises:
        OptionsError: an option out of its bounds, unknown, or at odds with another.
        PruneError: an ignored path that does not exist, or training asked for without data.
    """
    started = time.perf_counter()
    ignore_types = split_module_types(options)
    config = configure(SparsifyConfig, "prune.sparsify", config,
                       {**({"sparsity": sparsity} if sparsity is not None else {}), **options})
    if config.epochs and data is None:
        raise PruneError(f"ramp={config.ramp!r} with epochs={config.epochs} needs data= (a DataBundle) to train on.")
    ignore = [*config.ignore, *ignore_types]
    work = copy.deepcopy(model)
    test = getattr(data, "test", None)
    accuracy_before = evaluate(work, test)["accuracy"] if test is not None else None
    fit_options = config.fit_options(seed)
    accuracy_pruned = None
    if config.ramp == "agp":
        gradual = GradualSparsity(work, config.sparsity, config.scope, ignore=ignore)
        fit(work, data, config.epochs, on_step_end=gradual, progress=progress, threads=threads, **fit_options)
        gradual.finalize()
        weights = gradual.weights
    else:
        weights = weights_to_sparsify(work, ignore)
        masks = magnitude_masks(weights, config.sparsity, config.scope)
        apply_masks(weights, masks)
        accuracy_pruned = evaluate(work, test)["accuracy"] if test is not None and config.epochs else None
        if config.epochs:
            fit(work, data, config.epochs, on_step_end=_KeepMasks(weights, masks), progress=progress,
                threads=threads, **fit_options)
    accuracy_after = evaluate(work, test)["accuracy"] if test is not None else None
    if config.ramp == "oneshot" and not config.epochs:
        accuracy_pruned = accuracy_after
    return work, sparsity_record(work, weights, target=config.sparsity, scope=config.scope, ramp=config.ramp,
                                 epochs=config.epochs, accuracy_before=accuracy_before,
                                 accuracy_pruned=accuracy_pruned, accuracy_after=accuracy_after,
                                 seconds=time.perf_counter() - started)


def sparsity_record(model: nn.Module, weights: dict[str, torch.Tensor], **fields: Any) -> SparsityRecord:
    """Sparsity reached per layer and overall, and the model's dense, zipped and CSR sizes."""
    layers = {path: LayerSparsity(zeros=int((w == 0).sum()), numel=w.numel(),
                                  sparsity=float((w == 0).sum()) / w.numel()) for path, w in weights.items()}
    params = list(model.parameters())
    zeros_all = sum(int((p == 0).sum()) for p in params)
    total_all = sum(p.numel() for p in params)
    zeros = sum(x.zeros for x in layers.values())
    dense, zipped = _dense_and_zipped(model)
    return SparsityRecord(
        layers=layers, sparsity=zeros / max(1, sum(x.numel for x in layers.values())),
        sparsity_all_parameters=zeros_all / max(1, total_all), parameters=total_all,
        nonzero_parameters=total_all - zeros_all, dense_bytes=dense, zipped_bytes=zipped,
        csr_bytes=csr_bytes(model, weights), **fields)


def _dense_and_zipped(model: nn.Module) -> tuple[int, int]:
    with tempfile.TemporaryDirectory(prefix="torchslim-sparsity-") as tmp:
        raw = save_tensors(Path(tmp) / "model.safetensors", model.state_dict()).read_bytes()
    return len(raw), len(zlib.compress(raw, 6))


def csr_bytes(model: nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """Bytes of the state_dict with each sparsified weight stored as CSR over (out, rest):
    float32 values and int32 column indices and row pointers; every other tensor dense."""
    sparse_ids = {id(w) for w in weights.values()}
    total = 0
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) in sparse_ids:
            rows = tensor.shape[0]
            nnz = int((tensor != 0).sum())
            total += nnz * (4 + 4) + (rows + 1) * 4
        else:
            total += tensor.numel() * tensor.element_size()
    return total
