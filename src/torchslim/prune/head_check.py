"""After a pruning step, every attention block that lost heads must compute exactly what it computed
before the step with those heads switched off (their columns of the output projection zeroed).

Whole-head slices are not enough on their own: a block's forward may read its head count from an
attribute torchslim does not know (``self.h``) and, left at the old value, reshape the remaining
channels into more, thinner heads. Such a model still runs, and is silently wrong; this check
compares the pruned block with its pre-step copy on the input it really receives.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from torchslim.core.taps import first_tensor
from torchslim.prune.errors import PruneError
from torchslim.prune.heads import AttentionBlock, probe_once


def snapshot(blocks: list[AttentionBlock]) -> dict[str, nn.Module]:
    """Copies of the head-prunable blocks as they are now (before a pruning step)."""
    return {b.path: copy.deepcopy(b.module) for b in blocks if b.head_prunable}


def check_blocks(model: nn.Module, example_input: torch.Tensor, before: dict[str, nn.Module], ops: list[Any],
                 blocks: list[AttentionBlock], notes: list[str]) -> None:
    """Raise when a block that lost heads in this step (``ops``) differs from ``before[path]`` with
    the removed heads switched off; blocks whose input width changed are noted and skipped."""
    slices = [op for op in ops if getattr(op, "op", None) == "slice"]
    pruned = {}
    for block in blocks:
        removed = _removed_columns(block, slices)
        if not removed or block.path not in before:
            continue
        if any(_inside(op.module, block.path) and not _head_slice(op, block) for op in slices):
            notes.append(f"{block.path}: other layers inside it were pruned too (its input, or layers beside the "
                         "attention), so the pruned heads were not compared with the unpruned block.")
            continue
        pruned[block.path] = (block, removed)
    if not pruned:
        return
    inputs = _block_inputs(model, example_input, [b.module for b, _ in pruned.values()])
    for path, (block, removed) in pruned.items():
        args, kwargs = inputs[id(block.module)]
        reference = _switched_off(before[path], path, removed)
        with torch.no_grad():
            want = first_tensor(reference.eval()(*args, **kwargs))
            got = first_tensor(block.module(*args, **kwargs))
        scale = float(want.abs().max()) if want.numel() else 1.0
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1.0)):
            gap = float((got - want).abs().max()) if got.shape == want.shape else f"shape {tuple(got.shape)}"
            raise PruneError(
                f"After removing heads of attention block {path!r} ({type(block.module).__name__}), it no longer "
                f"computes what it did with those heads switched off (largest difference {gap}). Its forward "
                "probably reads a head count that pruning did not update: torchslim updates an attribute named "
                "num_heads/heads/n_heads/num_attention_heads/n_head on the block. Keep the count under one of "
                f"those names, derive it from the width (reshape(b, n, -1, head_dim)), or leave the block alone "
                f"with ignore=[{path!r}].")


def _inside(module: str, block: str) -> bool:
    return module.startswith(f"{block}.")


def _head_slice(op: Any, block: AttentionBlock) -> bool:
    """A slice that removes heads: projection outputs, or output-projection inputs."""
    return (op.module in block.qkv and op.dim == "out") or (op.module in block.out and op.dim == "in")


def _removed_columns(block: AttentionBlock, slices: list[Any]) -> dict[str, list[int]]:
    """``{output projection path, relative to the block: removed input columns}`` of this step."""
    removed = {}
    for op in slices:
        if op.module in block.out and op.dim == "in" and len(op.kept) < op.size:
            relative = op.module[len(block.path) + 1:]
            removed[relative] = sorted(set(range(op.size)) - set(op.kept))
    return removed


def _switched_off(block: nn.Module, path: str, removed: dict[str, list[int]]) -> nn.Module:
    reference = copy.deepcopy(block)
    with torch.no_grad():
        for relative, columns in removed.items():
            reference.get_submodule(relative).weight[:, columns] = 0
    return reference


def _block_inputs(model: nn.Module, example_input: torch.Tensor,
                  modules: list[nn.Module]) -> dict[int, tuple[tuple, dict]]:
    """The (args, kwargs) each of ``modules`` receives first when ``model`` runs on the input."""
    seen: dict[int, tuple[tuple, dict]] = {}

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen.setdefault(id(module), (args, kwargs))

    probe_once(model, example_input, [m.register_forward_pre_hook(capture, with_kwargs=True) for m in modules])
    return seen
