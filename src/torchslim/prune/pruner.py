"""torch-pruning's pruner, built and guarded, and one pruning step applied and recorded.

Every slice torch-pruning would make is turned into a :class:`~torchslim.prune.surgery.Slice` and
applied through :func:`~torchslim.prune.surgery.apply_slice` — the code that replays it on load — so
the recorded steps rebuild exactly the model that was pruned. torch-pruning's silent skips (a group
that would lose every channel, a layer a criterion cannot score) become errors and notes.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from torchslim.prune import importance as imp
from torchslim.prune.errors import PruneError
from torchslim.prune.heads import check_whole_heads
from torchslim.prune.plan import Plan
from torchslim.prune.surgery import SetAttr, Slice, apply_set, apply_slice, layer_kind
from torchslim.prune.trace import run_naming_module

UNTRACEABLE_HINT = ("torch-pruning traces the model by running it with autograd on; leave that module "
                    "alone with ignore=[...] or make it traceable.")


def build_pruner(model: nn.Module, example_input: torch.Tensor, plan: Plan, importance: str,
                 global_ranking: bool, notes: list[str]):
    """torch-pruning's pruner over ``model``, its dependency graph traced from ``example_input``."""
    import torch_pruning as tp

    def build():
        with warnings.catch_warnings(record=True) as caught, torch.enable_grad():
            warnings.simplefilter("always")
            pruner = tp.pruner.BasePruner(
                model, example_input, importance=imp.create(importance), global_pruning=global_ranking,
                pruning_ratio=plan.ratio, pruning_ratio_dict=plan.ratio_modules, iterative_steps=plan.iterations,
                ignored_layers=plan.ignored, round_to=plan.round_to, num_heads=dict(plan.num_heads),
                prune_num_heads=bool(plan.num_heads), prune_head_dims=False,
                head_pruning_ratio=plan.head_ratio if plan.num_heads else 0.0)
        notes.extend(dict.fromkeys(f"torch-pruning: {str(w.message).strip().splitlines()[0]}" for w in caught))
        return pruner

    pruner = run_naming_module(model, f"Tracing {type(model).__name__} for pruning", build, UNTRACEABLE_HINT)
    if not global_ranking:
        _schedule_heads(pruner, plan)
    plan.check_every_group_keeps_channels(pruner)
    _refuse_empty_layers(pruner)
    _note_unscored(pruner, importance, notes)
    return pruner


def _schedule_heads(pruner, plan: Plan) -> None:
    """Per-step head ratios that remove exactly ``ceil(head_ratio * heads)`` heads over all steps.

    torch-pruning removes ``ceil(r_s * heads_now)`` heads at step s, where r_s is the cumulative
    target (s / steps * head_ratio) but heads_now is what is left, so 2 steps of 0.5 would keep 1
    head of 4. Here r_s is set so that ceil(r_s * heads_now) is this step's share; a step with no
    share gets 0 (torch-pruning then leaves the block's heads alone in that step).
    """
    for block in plan.attention:
        if not block.head_prunable:
            continue
        total = block.heads - block.heads_kept(plan.head_ratio)
        ratios, left = [0.0], block.heads
        for step in range(1, plan.iterations + 1):
            share = math.ceil(total * step / plan.iterations) - (block.heads - left)
            ratios.append((share - 0.5) / left if share > 0 else 0.0)
            left -= share
        for layer in block.qkv.values():
            pruner.head_pruning_ratio_dict[layer] = ratios


def _note_unscored(pruner, importance: str, notes: list[str]) -> None:
    """Note the groups a criterion cannot score (``bn_scale`` without a BatchNorm): left unpruned."""
    estimate = pruner.estimate_importance

    def scored(group):
        scores = estimate(group)
        if scores is None:
            path = pruner.DG._module2name.get(group[0].dep.target.module, "?")
            note = (f"{path}: criterion {importance!r} cannot score its channels "
                    f"({imp.describe(importance)}); left unpruned.")
            if note not in notes:
                notes.append(note)
        return scores

    pruner.estimate_importance = scored


def _refuse_empty_layers(pruner) -> None:
    """Turn torch-pruning's silent skip of a group that would lose every channel into an error."""
    graph = pruner.DG
    original = graph.check_pruning_group

    def check(group) -> bool:
        if original(group):
            return True
        dep, idxs = group[0]
        path = graph._module2name.get(dep.target.module, str(dep.target.module))
        raise PruneError(f"Pruning would remove every channel of {path!r} (all {len(idxs)} of the channels "
                         "it shares with its coupled layers): global ranking scored them all below the "
                         f"threshold. Lower the ratio, use uniform ranking, or leave it alone with "
                         f"ignore=[{path!r}].")

    graph.check_pruning_group = check


def prune_step(pruner, model: nn.Module, plan: Plan) -> list[Slice | SetAttr]:
    """One torch-pruning step: every slice recorded and applied, then the head counts updated."""
    ops: list[Slice | SetAttr] = []
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            op = _slice_of(pruner.DG, dep, idxs)
            if op is None:  # a graph-only op (concat, split, slice): torch-pruning's own bookkeeping
                dep(idxs)
                continue
            old = dep.target.module
            apply_slice(model, op)
            if op.layer == "PARAMETER":
                _track_new_parameter(pruner.DG, model, op.module, old)
            ops.append(op)
    check_whole_heads(ops, plan.attention)
    return ops + _update_heads(model, plan)


def _slice_of(graph, dep, idxs) -> Slice | None:
    """The slice ``dep`` makes, in this model's coordinates; None for graph-only ops (add, reshape)."""
    handler = dep.handler
    kind = layer_kind(handler.__self__)
    if kind is None or not idxs:
        return None
    target = dep.target.module
    path = graph._param_to_name.get(target) if kind == "PARAMETER" else graph._module2name.get(target)
    if path is None:  # every module and bare parameter has a path; anything else cannot be replayed
        raise PruneError(f"torch-pruning wants to slice a {kind} that is not a named part of the model "
                         f"({type(target).__name__}); such a slice could not be replayed on load.")
    out = graph.is_out_channel_pruning_fn(handler)
    handler.__self__.pruning_dim = dep.target.pruning_dim
    size = handler.__self__.get_out_channels(target) if out else handler.__self__.get_in_channels(target)
    removed = set(int(i) for i in idxs)
    return Slice(module=path, layer=kind, dim="out" if out else "in", axis=dep.target.pruning_dim,
                 size=size, kept=[i for i in range(size) if i not in removed])


def _track_new_parameter(graph, model: nn.Module, path: str, old: nn.Parameter) -> None:
    """A pruned bare parameter is a new object: point the dependency graph at it (for later steps)."""
    new = model.get_parameter(path)
    graph._param_to_name[new] = graph._param_to_name.pop(old)
    graph.module2node[new] = graph.module2node.pop(old)
    graph.module2node[new].module = new


def _update_heads(model: nn.Module, plan: Plan) -> list[SetAttr]:
    """Set each attention module's head count (and sizes derived from it) to what is left; a block
    without a head-count attribute derives it from its projections' width in its forward."""
    ops = []
    for block in plan.attention:
        if not block.head_prunable or block.heads_attr is None:
            continue
        heads = block.heads_now()
        old = getattr(block.module, block.heads_attr)
        if heads == old:
            continue
        values = {block.heads_attr: heads}
        for attr in ("all_head_size", "inner_dim"):  # Hugging Face / lucidrains spellings
            value = getattr(block.module, attr, None)
            if isinstance(value, int) and value % old == 0:
                values[attr] = value // old * heads
        op = SetAttr(module=block.path, values=values)
        apply_set(model, op)
        ops.append(op)
    return ops
