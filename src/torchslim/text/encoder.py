"""``SentenceEncoder``: a BERT-family encoder with mean pooling, token ids in, one vector out.

One tensor in (``(B, N)`` int64 token ids, padding = the tokenizer's pad id) and one tensor out
(``(B, D)``), so the encoder is measured, distilled, cached and exported like any torchslim model:
the attention mask is derived from the padding inside the graph.

Two identity modules are tap points for the distillation losses: ``hidden_states`` records
``(B, L + 1, N, D)`` (the embedding output, then every layer) and ``attentions`` records
``(B, L, H, N, N)`` (every layer's attention distributions). They are filled only while a tap listens:
stacking every layer copies all hidden states, which plain inference should not pay for.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchslim.core.errors import TorchSlimError


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` (B, N, D) over the positions where ``mask`` (B, N) is nonzero -> (B, D).

    A row with no real token gives a zero vector rather than NaN.
    """
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _listening(module: nn.Module) -> bool:
    return bool(module._forward_hooks)


class SentenceEncoder(nn.Module):
    """Mean-pooled (optionally L2-normalised) sentence embeddings from a BERT-family ``model``.

    Args:
        model: a Hugging Face encoder (``BertModel`` or one with its module layout:
            ``encoder.layer[i].attention.self.query/key/value``, ``attention.output.dense``,
            ``intermediate.dense``, ``output.dense``).
        pad_token_id: the id that marks padding in the input (the tokenizer's pad id).
        normalize: L2-normalise the pooled vector (sentence-transformers' ``Normalize`` module).
        max_length: the longest input in tokens the tokenizer produces for this encoder.
        tokenizer: the :class:`~torchslim.text.tokenize.TextTokenizer` that goes with the model
            (kept as a plain attribute, not a submodule).

    Raises:
        TorchSlimError: the model lacks BERT's module layout.
    """

    def __init__(self, model: nn.Module, *, pad_token_id: int, normalize: bool = True,
                 max_length: int = 128, tokenizer: Any = None) -> None:
        super().__init__()
        check_layout(model)
        self.bert = model
        self.pad_token_id = int(pad_token_id)
        self.normalize = bool(normalize)
        self.max_length = int(max_length)
        self.tokenizer = tokenizer
        self.hidden_states = nn.Identity()
        self.attentions = nn.Identity()

    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    @property
    def hidden_size(self) -> int:
        return self.bert.config.hidden_size

    def structure(self) -> dict[str, list[int]]:
        """Attention heads and FFN width of every layer (pruning makes them differ)."""
        return {"heads": [layer_heads(layer) for layer in self.layers],
                "intermediate": [layer.intermediate.dense.out_features for layer in self.layers]}

    def rewrap(self, model: nn.Module) -> SentenceEncoder:
        """A new encoder around ``model`` with this one's padding, pooling, length and tokenizer."""
        out = SentenceEncoder(model, pad_token_id=self.pad_token_id, normalize=self.normalize,
                              max_length=self.max_length, tokenizer=self.tokenizer)
        out.source = getattr(self, "source", "")
        return out

    def forward(self, input_ids: Tensor) -> Tensor:
        mask = input_ids != self.pad_token_id
        want_hidden, want_attn = _listening(self.hidden_states), _listening(self.attentions)
        if want_attn and self.bert.config._attn_implementation != "eager":
            raise TorchSlimError(
                f"Attention maps need eager attention, but this model runs {self.bert.config._attn_implementation!r} "
                "(which never materialises them); load it with torchslim.text.load_encoder.")
        out = self.bert(input_ids=input_ids, attention_mask=mask.long(),
                        output_hidden_states=want_hidden, output_attentions=want_attn)
        if want_hidden:
            self.hidden_states(torch.stack(out.hidden_states, dim=1))
        if want_attn:
            self.attentions(_stack_attentions(out.attentions))
        pooled = mean_pool(out.last_hidden_state, mask)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def _stack_attentions(attentions: tuple[Tensor, ...]) -> Tensor:
    if not attentions or any(a is None for a in attentions):
        raise TorchSlimError("The model returned no attention maps; it needs eager attention.")
    heads = [a.shape[1] for a in attentions]
    if len(set(heads)) > 1:
        raise TorchSlimError(
            f"The layers have different numbers of attention heads ({heads}), so their attention maps "
            "cannot be stacked for 'attention-kl'. Use 'relation-kl' on tapped query/key/value "
            "projections, which splits any width into the same number of relation heads.")
    return torch.stack(attentions, dim=1)


def layer_heads(layer: nn.Module) -> int:
    """Attention heads of one BERT layer (from its projection width, which pruning changes)."""
    attn = layer.attention.self
    return attn.query.out_features // attn.attention_head_size


def check_layout(model: nn.Module) -> None:
    """Raise unless ``model`` has BERT's module layout (what students and head pruning rely on)."""
    need = ("embeddings.word_embeddings", "encoder.layer.0.attention.self.query",
            "encoder.layer.0.attention.self.key", "encoder.layer.0.attention.self.value",
            "encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense",
            "encoder.layer.0.output.dense")
    names = {name for name, _ in model.named_modules()}
    missing = [n for n in need if n not in names]
    if missing:
        raise TorchSlimError(
            f"{type(model).__name__} is not a BERT-family encoder: it has no module {missing[0]!r} "
            f"(missing: {', '.join(missing)}). torchslim.text needs BERT's layout (BertModel, and "
            "models built like it).")
