"""Attention blocks: where they are, how many heads each has, and that pruning keeps heads whole.

A block is the module that directly owns the projections whose outputs meet in a matrix product
(queries times keys, attention times values). They are found by running the model once and
following which ``nn.Linear`` outputs reach an operand of a ``matmul``/``bmm``/``einsum``/
``scaled_dot_product_attention`` (:class:`_Provenance`), not by a ``heads`` attribute somewhere up
the tree: a ViT whose root stores ``self.heads`` is not one big attention block. The head count
comes from ``heads={path: n}`` or from the block's own ``num_heads``/``heads``/``n_heads``
attribute; a block whose count is unknown is refused rather than pruned channel by channel, which
would split its heads silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from torchslim.prune.errors import PruneError
from torchslim.prune.targets import resolve_path

# Attributes under which attention modules keep their head count (timm, Hugging Face, hand-written).
HEAD_ATTRS = ("num_heads", "n_heads", "num_attention_heads", "n_head", "heads")
# Child Linear layers that project the input into per-head queries, keys and values.
QKV_NAMES = frozenset({"q", "k", "v", "qkv", "q_proj", "k_proj", "v_proj", "query", "key", "value",
                       "to_q", "to_k", "to_v", "to_qkv", "wq", "wk", "wv"})
_MATMULS = frozenset({torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
                      torch.bmm, torch.Tensor.bmm, torch.mm, torch.Tensor.mm, torch.einsum, torch.baddbmm,
                      torch.Tensor.baddbmm, F.scaled_dot_product_attention})


@dataclass
class AttentionBlock:
    """An attention module: its head count (None when unknown) and its projections by path."""

    path: str
    module: nn.Module
    heads_attr: str | None
    heads: int | None
    qkv: dict[str, nn.Linear] = field(default_factory=dict)  # per-head projections
    out: dict[str, nn.Linear] = field(default_factory=dict)  # output projection(s): heads -> stream
    fused: bool = False  # one Linear computes q, k and v together
    head_dim_before: int = 0  # set before pruning; whole-head pruning never changes it

    @property
    def is_mha(self) -> bool:
        return isinstance(self.module, nn.MultiheadAttention)

    @property
    def head_prunable(self) -> bool:
        """Heads can go as whole heads: the count is known, per-head projections are Linear layers
        and an output projection maps the heads back to the residual stream (which stays)."""
        return bool(self.qkv) and bool(self.out) and self.heads is not None and not self.is_mha

    @property
    def width(self) -> int:
        """Output channels of one projection per q/k/v (a fused projection counts a third)."""
        first = next(iter(self.qkv.values()))
        return first.out_features // 3 if self.fused else first.out_features

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def heads_kept(self, ratio: float) -> int:
        """Heads left after removing ``ratio`` of them (torch-pruning rounds the removal up)."""
        return self.heads - math.ceil(ratio * self.heads)

    def heads_now(self) -> int | None:
        """The head count of the (possibly pruned) block, from its projections' width."""
        if self.heads is None or self.is_mha:
            return self.heads
        return self.width // self.head_dim_before


class _Provenance(TorchFunctionMode):
    """Tags every tensor with the Linear layers it was computed from (the nearest ones: a Linear's
    output carries only its own path), and records which Linears meet in a matrix product."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[int, tuple[torch.Tensor, frozenset[str]]] = {}  # tensors kept: ids stay unique
        self.pairs: set[tuple[str, str]] = set()
        self.inputs: dict[str, frozenset[str]] = {}  # Linear path -> tags of its input

    def of(self, value: Any) -> frozenset[str]:
        if isinstance(value, torch.Tensor):
            entry = self.tags.get(id(value))
            return entry[1] if entry is not None and entry[0] is value else frozenset()
        if isinstance(value, (tuple, list)):
            return frozenset().union(*(self.of(v) for v in value))
        return frozenset()

    def tag(self, value: Any, sources: frozenset[str]) -> None:
        if isinstance(value, torch.Tensor):
            self.tags[id(value)] = (value, sources)
        elif isinstance(value, (tuple, list)):
            for item in value:
                self.tag(item, sources)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        operands = [self.of(a) for a in (*args, *kwargs.values())]
        if func in _MATMULS:
            operands = [s for s in operands if s]
            for i, left in enumerate(operands):
                for right in operands[i + 1:]:
                    self.pairs.update((a, b) for a in left for b in right)
        sources = frozenset().union(*operands)
        if sources:
            self.tag(out, sources)
        return out


def _trace(model: nn.Module, example_input: torch.Tensor) -> _Provenance:
    """Run ``model`` once with provenance tags on; Linear outputs are tagged by their path."""
    mode = _Provenance()
    handles = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_pre_hook(
                lambda _m, args, p=path: mode.inputs.__setitem__(p, mode.of(args))))
            handles.append(module.register_forward_hook(
                lambda _m, _args, out, p=path: mode.tag(out, frozenset({p}))))
    with mode:
        probe_once(model, example_input, handles)
    return mode


def probe_once(model: nn.Module, example_input: torch.Tensor, handles: Iterable[Any]) -> None:
    """One forward pass in eval mode without gradients, for the hooks in ``handles`` to observe;
    the model's training mode is restored and every handle removed, whatever happens."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _traced_projections(trace: _Provenance) -> dict[str, tuple[set[str], set[str]]]:
    """``{owner path: (projections, outputs)}``: the Linears that meet a sibling (or themselves,
    fused) in a matrix product — q, k, v — grouped under the module that owns them, and the
    sibling Linears that read what those products computed (the output projection)."""
    owners: dict[str, set[str]] = {}
    for a, b in trace.pairs:
        if _parent(a) == _parent(b):
            owners.setdefault(_parent(a), set()).update((a, b))
    return {owner: (qkv, {p for p, sources in trace.inputs.items()
                          if _parent(p) == owner and p not in qkv and sources & qkv})
            for owner, qkv in owners.items()}


def find_attention(model: nn.Module, example_input: torch.Tensor,
                   heads: Mapping[str, int] | None = None) -> list[AttentionBlock]:
    """Every attention block of ``model``, ``heads`` (``{module path: head count}``) applied.

    A block is ``nn.MultiheadAttention``, a module owning Linear children that meet in a matrix
    product (traced on ``example_input``), or a module with a head-count attribute and children
    named like q/k/v projections. The root module is never a block (its ``heads`` attribute, if
    any, describes the model, not one attention layer).

    Raises:
        PruneError: a ``heads`` entry whose path does not exist or is not an attention block, whose
            count contradicts the module's own head-count attribute or does not divide the
            projection width.
    """
    heads = check_heads_arg(model, heads)
    named = dict(model.named_modules())
    linears = [m for m in named.values() if isinstance(m, nn.Linear)]
    traced = _traced_projections(_trace(model, example_input)) if len(linears) > 1 else {}
    blocks = []
    for path, module in named.items():
        if not path:
            continue
        if isinstance(module, nn.MultiheadAttention):
            blocks.append(AttentionBlock(path, module, None, module.num_heads))
            continue
        block = _block(path, module, traced.get(path, (set(), set())), heads.get(path))
        if block is not None:
            blocks.append(block)
    _refuse_non_blocks(model, heads, blocks, traced)
    if "" in traced:
        blocks.append(_block("", model, traced[""], None, root=True))
    return blocks


def check_heads_arg(model: nn.Module, heads: Mapping[str, int] | None) -> dict[str, int]:
    """``heads`` (already positive ints by :class:`~torchslim.prune.config.PruneConfig`) with every key
    checked to be a real module path other than the root."""
    for path in heads or {}:
        if path == "":
            raise PruneError(f"heads['']: the model ({type(model).__name__}) itself is never pruned as one attention "
                             "block; key heads by the path of the submodule that owns the q/k/v projections, "
                             "e.g. {'blocks.0.attn': 4}.")
        resolve_path(model, path, f"heads[{path!r}]")
    return dict(heads or {})


def _block(path: str, module: nn.Module, traced: tuple[set[str], set[str]], given: int | None,
           root: bool = False) -> AttentionBlock | None:
    children = {f"{path}.{n}" if path else n: c for n, c in module.named_children() if isinstance(c, nn.Linear)}
    # the root's head count describes the model, not one attention layer
    attr = None if root else next((a for a in HEAD_ATTRS if _positive_int(getattr(module, a, None))), None)
    named_qkv = {p for p in children if p.rpartition(".")[2] in QKV_NAMES}
    projections = traced[0] | (named_qkv if attr is not None or given is not None else set())
    if not projections:
        return None
    count = given if given is not None else (getattr(module, attr) if attr else None)
    qkv = {p: c for p, c in children.items() if p in projections}
    # the traced output projection, else (no trace: the matmul is hidden) every other Linear child
    outputs = traced[1] - projections or set(children) - projections
    out = {p: c for p, c in children.items() if p in outputs}
    fused = len(qkv) == 1
    block = AttentionBlock(path, module, attr, count, qkv, out, fused)
    if given is not None:
        _check_given(block, given)
    elif count is not None:
        _check_divides(block, count, f"{type(module).__name__}.{attr}",
                       f"Fix the attribute, or leave the block alone with ignore=[{path!r}]")
    if block.heads is not None:
        block.head_dim_before = block.head_dim
    return block


def _check_given(block: AttentionBlock, given: Any) -> None:
    where = f"heads[{block.path!r}]"
    if block.heads_attr is not None and getattr(block.module, block.heads_attr) != given:
        own = getattr(block.module, block.heads_attr)
        raise PruneError(f"{where}={given} contradicts the module's own {block.heads_attr}={own}; "
                         f"drop the entry (its {block.heads_attr} is used) or fix one of them.")
    _check_divides(block, given, where, f"Set {where} to one of them")


def _check_divides(block: AttentionBlock, count: int, where: str, fix: str) -> None:
    widths = {p: (m.out_features // 3 if block.fused else m.out_features) for p, m in block.qkv.items()}
    bad = {p: w for p, w in widths.items() if w % count or (block.fused and block.qkv[p].out_features % 3)}
    if bad:
        shown = ", ".join(f"{p!r} ({w} channels{' per q/k/v' if block.fused else ''})" for p, w in bad.items())
        width = next(iter(bad.values()))
        raise PruneError(f"{where}={count} does not divide the width of the projection(s) {shown} of attention "
                         f"block {block.path!r}: heads of equal size need a count that divides {width} "
                         f"({', '.join(map(str, divisors(width)))}). {fix}.")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _refuse_non_blocks(model: nn.Module, heads: Mapping[str, Any], blocks: list[AttentionBlock],
                       traced: Mapping[str, Any]) -> None:
    """Every ``heads`` key must name a block: the module that owns the q/k/v projections."""
    found = {b.path for b in blocks if not b.is_mha}
    candidates = sorted(found | set(traced) - {""})
    for path in heads:
        module = model.get_submodule(path)
        if path not in found:
            kind = "nn.MultiheadAttention, whose heads are left alone" if isinstance(
                module, nn.MultiheadAttention) else f"{type(module).__name__}, which owns no q/k/v projections"
            there = ", ".join(map(repr, candidates)) or "none found"
            raise PruneError(f"heads[{path!r}]: that module is {kind}. Name the module that directly owns the "
                             f"q/k/v Linear layers feeding the attention product; attention blocks in "
                             f"{type(model).__name__}: {there}.")


def unresolved(blocks: Iterable[AttentionBlock], ignored: Iterable[nn.Module]) -> list[AttentionBlock]:
    """Blocks that pruning would touch although their head count is unknown. A block without an
    output projection among its children is left alone whole anyway (see ``plan``), except the
    root, which is never left alone whole."""
    left_alone = {id(m) for root in ignored for m in root.modules()}
    return [b for b in blocks if b.heads is None and id(b.module) not in left_alone
            and not all(id(m) in left_alone for m in b.qkv.values()) and (b.out or not b.path)]


def refuse_unknown_heads(model: nn.Module, blocks: list[AttentionBlock]) -> None:
    """Raise naming each attention block whose head count is unknown and how to give it."""
    if not blocks:
        return
    root = next((b for b in blocks if not b.path), None)
    if root is not None:
        raise PruneError(f"{type(model).__name__} itself owns q/k/v projections "
                         f"({', '.join(map(repr, root.qkv))}) that meet in an attention product; the model as a "
                         "whole is never pruned as one attention block. Move them into a submodule and pass "
                         f"heads={{path: n}}, or leave them alone with ignore=[{', '.join(map(repr, root.qkv))}].")
    paths = [b.path for b in blocks]
    shown = ", ".join(map(repr, paths[:6])) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
    details = "; ".join(sorted({f"{', '.join(p.rpartition('.')[2] for p in b.qkv)} of {b.width} channels "
                                f"(a count dividing {b.width}: {', '.join(map(str, divisors(b.width)))})"
                                for b in blocks}))
    fix = ", ".join(f"{p!r}: n" for p in paths[:6]) + (", ..." if len(paths) > 6 else "")
    raise PruneError(f"Cannot prune {type(model).__name__} safely: the head count of attention block(s) {shown} "
                     f"is unknown (the block has no num_heads/heads/n_heads attribute; its projections: "
                     f"{details}), and pruning their channels one by one would split heads. Pass "
                     f"heads={{{fix}}} to prune whole heads, or leave them alone with "
                     f"ignore=[{', '.join(map(repr, paths[:6]))}{', ...' if len(paths) > 6 else ''}].")


def check_whole_heads(ops: Iterable[Any], blocks: Iterable[AttentionBlock]) -> None:
    """Raise when a recorded slice cuts a head of a block with a known count: a projection's
    outputs or an output projection's inputs must keep whole, aligned heads, the same in q, k, v."""
    slices = [op for op in ops if getattr(op, "op", None) == "slice"]
    for block in blocks:
        if not block.head_prunable:
            continue
        kept: dict[str, list[int]] = {}
        for op in slices:
            if (op.module in block.qkv and op.dim == "out") or (op.module in block.out and op.dim == "in"):
                if not _whole_heads(op.kept, block):
                    raise _split_error(block, op.module, op.kept, f"not whole heads of {block.head_dim_before} "
                                       "channels")
                kept[op.module] = op.kept
        if len({tuple(k) for p, k in kept.items() if p in block.qkv}) > 1:
            first = next(p for p in kept if p in block.qkv)
            raise _split_error(block, first, kept[first], "different heads from its sibling projections")


def _whole_heads(kept: list[int], block: AttentionBlock) -> bool:
    size = block.head_dim_before
    runs = [kept[i:i + size] for i in range(0, len(kept), size)]
    return all(len(r) == size and r[0] % size == 0 and r == list(range(r[0], r[0] + size)) for r in runs)


def _split_error(block: AttentionBlock, path: str, kept: list[int], what: str) -> PruneError:
    return PruneError(f"Pruning would split the heads of attention block {block.path!r} ({block.heads} heads): "
                      f"{path!r} would keep channels {kept[:24]}{' ...' if len(kept) > 24 else ''}, {what}. "
                      f"Lower head_ratio/ratios for it, or leave it alone with ignore=[{block.path!r}].")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
