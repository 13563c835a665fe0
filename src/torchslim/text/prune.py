"""Structured pruning of a BERT-family encoder: attention heads and FFN units, physically removed.

Importance is measured on a sample of real inputs as the size of what each unit adds to the residual
stream (Kobayashi et al., 2020, "Attention is Not Only a Weight: Analyzing Transformers with Vector
Norms"): for head h, the mean L2 norm over real tokens of its context vectors mapped through its
slice of the output projection, ``||ctx_h W_O[:, h]ᵀ||``; for FFN unit j, the mean ``|a_j|`` of its
activation times ``||W_out[:, j]||``. The least important units of every layer are cut from the
query/key/value/output and FFN Linear layers, so the pruned model is a smaller dense model (the
Hugging Face attention code reads the head count from the projection width).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torchslim.core.errors import TorchSlimError
from torchslim.text._configure import configure
from torchslim.text.config import TextPruneConfig
from torchslim.text.encoder import SentenceEncoder, layer_heads


@dataclass
class Importance:
    """Per layer: ``heads[i]`` (H_i,) and ``ffn[i]`` (F_i,) importance scores, higher = keep."""

    heads: list[Tensor]
    ffn: list[Tensor]


@torch.no_grad()
def measure_importance(encoder: SentenceEncoder, sample: Tensor, batch_size: int = 64) -> Importance:
    """Head and FFN-unit importance of ``encoder`` on ``sample`` ((N, L) token ids), see module doc.

    Raises:
        TorchSlimError: an empty sample.
    """
    if sample.ndim != 2 or len(sample) == 0:
        raise TorchSlimError(f"The importance sample must be (N, L) token ids with N > 0, got {tuple(sample.shape)}.")
    layers = list(encoder.layers)
    heads = [torch.zeros(layer_heads(layer), dtype=torch.float64) for layer in layers]
    ffn = [torch.zeros(layer.intermediate.dense.out_features, dtype=torch.float64) for layer in layers]
    state: dict[str, Tensor] = {}
    tokens = 0

    def head_hook(i: int):
        def hook(module: nn.Linear, inputs: tuple[Tensor, ...]) -> None:
            ctx = inputs[0][state["mask"]]  # (T, H*dh) real tokens only
            h = heads[i].numel()
            w = module.weight.view(module.out_features, h, -1)  # (D, H, dh)
            per_head = torch.einsum("thd,ohd->tho", ctx.view(len(ctx), h, -1), w)
            heads[i].add_(per_head.norm(dim=-1).sum(dim=0).double())
        return hook

    def ffn_hook(i: int):
        def hook(module: nn.Linear, inputs: tuple[Tensor, ...]) -> None:
            act = inputs[0][state["mask"]]  # (T, F)
            ffn[i].add_((act.abs().sum(dim=0) * module.weight.norm(dim=0)).double())
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attention.output.dense.register_forward_pre_hook(head_hook(i)))
        handles.append(layer.output.dense.register_forward_pre_hook(ffn_hook(i)))
    was_training = encoder.training
    encoder.eval()
    try:
        for start in range(0, len(sample), batch_size):
            ids = sample[start:start + batch_size]
            state["mask"] = ids != encoder.pad_token_id
            tokens += int(state["mask"].sum())
            encoder(ids)
    finally:
        for handle in handles:
            handle.remove()
        encoder.train(was_training)
    tokens = max(tokens, 1)
    return Importance([h.div(tokens).float() for h in heads], [f.div(tokens).float() for f in ffn])


def _slice_linear(linear: nn.Linear, index: Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` of its outputs (dim 0) or inputs (dim 1)."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = None if linear.bias is None else linear.bias.detach()
    if bias is not None and dim == 0:
        bias = bias.index_select(0, index)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias.clone())
    return new


def keep_heads(layer: nn.Module, keep: list[int]) -> None:
    """Cut every attention head of ``layer`` not in ``keep`` (head indices) from its projections."""
    attn = layer.attention.self
    total, size = layer_heads(layer), attn.attention_head_size
    if not keep or min(keep) < 0 or max(keep) >= total:
        raise TorchSlimError(f"Heads to keep must be a non-empty subset of 0..{total - 1}, got {keep}.")
    index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in sorted(keep)])
    index = index.to(attn.query.weight.device)
    attn.query = _slice_linear(attn.query, index, 0)
    attn.key = _slice_linear(attn.key, index, 0)
    attn.value = _slice_linear(attn.value, index, 0)
    layer.attention.output.dense = _slice_linear(layer.attention.output.dense, index, 1)
    attn.num_attention_heads = len(keep)
    attn.all_head_size = len(keep) * size


def keep_ffn(layer: nn.Module, keep: list[int]) -> None:
    """Cut every FFN unit of ``layer`` not in ``keep`` from its two Linear layers."""
    total = layer.intermediate.dense.out_features
    if not keep or min(keep) < 0 or max(keep) >= total:
        raise TorchSlimError(f"FFN units to keep must be a non-empty subset of 0..{total - 1}, got "
                             f"{len(keep)} indices.")
    index = torch.as_tensor(sorted(keep), device=layer.intermediate.dense.weight.device)
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, index, 0)
    layer.output.dense = _slice_linear(layer.output.dense, index, 1)


def _kept(count: int, ratio: float) -> int:
    return max(1, count - math.floor(count * ratio + 1e-9))


def prune_encoder(encoder: SentenceEncoder, sample: Tensor, config: TextPruneConfig | None = None, *,
                  importance: Importance | None = None, batch_size: int = 64,
                  **options: object) -> tuple[SentenceEncoder, dict]:
    """A copy of ``encoder`` with the fraction ``heads`` of every layer's attention heads and
    ``ffn`` of its FFN units removed, the least important first (measured on the first
    ``sample_size`` sentences of ``sample``).

    Args:
        sample: (N, L) token ids of real text, for :func:`measure_importance`.
        config: a :class:`~torchslim.text.config.TextPruneConfig`; keyword arguments (``heads=0.5``,
            ``ffn=0.5``, ``sample_size``) build it or override its fields.
        importance: scores to use instead of measuring them.
        batch_size: sentences per forward pass while measuring.

    Returns:
        ``(pruned encoder, report)``; the report lists each layer's kept heads and units and the
        parameter counts before and after. ``encoder`` itself is unchanged.

    Raises:
        OptionsError: a fraction outside [0, 1), both 0, or another bad option.
        TorchSlimError: an empty sample.
    """
    cfg = configure(TextPruneConfig, "text.prune_encoder", config, options)
    heads, ffn = cfg.heads, cfg.ffn
    if importance is None:
        sample = sample[: cfg.sample_size]
    scores = importance or measure_importance(encoder, sample, batch_size)
    pruned = encoder.rewrap(copy.deepcopy(encoder.bert))
    report = {"heads_ratio": heads, "ffn_ratio": ffn, "layers": [],
              "parameters_before": _params(encoder), "criterion": "contribution norm on "
              f"{len(sample)} sample texts" if importance is None else "given"}
    for i, layer in enumerate(pruned.layers):
        h_scores, f_scores = scores.heads[i], scores.ffn[i]
        keep_h = h_scores.topk(_kept(len(h_scores), heads)).indices.sort().values.tolist()
        keep_f = f_scores.topk(_kept(len(f_scores), ffn)).indices.sort().values.tolist()
        keep_heads(layer, keep_h)
        keep_ffn(layer, keep_f)
        report["layers"].append({"layer": i, "heads_kept": keep_h, "ffn_kept": len(keep_f),
                                 "head_importance": [round(float(v), 5) for v in h_scores]})
    report["parameters_after"] = _params(pruned)
    report["structure"] = pruned.structure()
    return pruned.eval(), report


def shrink_to(model: nn.Module, structure: dict[str, list[int]]) -> None:
    """Give ``model``'s layers the recorded head counts and FFN widths (the first units kept), so a
    pruned model's saved weights load into a freshly built one."""
    layers = model.encoder.layer
    heads, widths = structure["heads"], structure["intermediate"]
    if len(heads) != len(layers) or len(widths) != len(layers):
        raise TorchSlimError(f"The recorded structure has {len(heads)} layers but the model {len(layers)}.")
    for layer, h, w in zip(layers, heads, widths, strict=True):
        if h != layer_heads(layer):
            keep_heads(layer, list(range(h)))
        if w != layer.intermediate.dense.out_features:
            keep_ffn(layer, list(range(w)))


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
