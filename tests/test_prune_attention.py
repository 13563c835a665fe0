"""Transformer blocks: heads go as whole heads (the head count read from the module), the residual
stream keeps its width, and the pruned block computes exactly what the unpruned one computes with
the removed heads switched off."""

import pytest
import torch
from torch import nn

from torchslim import load_model, prune, save_model

X = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


class Attention(nn.Module):
    """Multi-head self-attention written by hand: separate q, k, v projections and an output one."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        attn = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """7x7 patches of a 28x28 image (16 tokens), a learned position embedding, two blocks."""

    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, mha: bool = False) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, 7, 7)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.02)
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True) if mha else None
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        if self.mha is not None:
            x = x + self.mha(x, x, x, need_weights=False)[0]
        return self.head(self.norm(self.blocks(x)).mean(1))


def fresh(**kwargs) -> TinyViT:
    torch.manual_seed(0)
    return TinyViT(**kwargs).eval()


def test_heads_pruned_as_heads_and_residual_stream_kept():
    model = fresh()
    pruned, record = prune.channels(model, X, 0.5, "l2")
    assert record.attention == {"blocks.0.attn": {"before": 4, "after": 2}, "blocks.1.attn": {"before": 4, "after": 2}}
    for block in pruned.blocks:
        assert block.attn.num_heads == 2 and block.attn.head_dim == 8  # whole heads, not thinner heads
        assert block.attn.q.out_features == block.attn.k.out_features == block.attn.v.out_features == 16
        assert block.attn.proj.out_features == 32 and block.norm1.normalized_shape == (32,)  # residual stream
        assert block.fc1.out_features == 32  # the MLP's hidden width is pruned
    assert pruned.embed.out_channels == 32 and pruned.pos.shape == (1, 16, 32)
    for op in record.steps.ops:
        if op.op == "slice" and op.module.endswith((".q", ".k", ".v")):
            runs = [op.kept[i:i + 8] for i in range(0, len(op.kept), 8)]
            assert all(r == list(range(r[0], r[0] + 8)) and r[0] % 8 == 0 for r in runs)  # whole heads


def test_pruned_attention_equals_the_original_with_those_heads_switched_off():
    model = fresh(depth=1)
    pruned, record = prune.channels(model, X, 0.5, "l2")
    (q,) = [op for op in record.steps.ops if op.op == "slice" and op.module == "blocks.0.attn.q"]
    removed = [i for i in range(32) if i not in q.kept]
    with torch.no_grad():  # a head contributes only through its columns of the output projection
        model.blocks[0].attn.proj.weight[:, removed] = 0
        model.blocks[0].fc1.weight.zero_(), model.blocks[0].fc1.bias.zero_()
        pruned.blocks[0].fc1.weight.zero_(), pruned.blocks[0].fc1.bias.zero_()
    torch.testing.assert_close(pruned(X), model(X), rtol=1e-5, atol=1e-6)


def test_pruned_transformer_round_trips_through_a_checkpoint(tmp_path):
    pruned, _ = prune.channels(fresh(), X, 0.5, "l2")
    save_model(pruned, tmp_path)
    loaded, meta = load_model(tmp_path, model=fresh())
    assert meta["applied_steps"][0]["kind"] == "prune.channels"
    assert torch.equal(loaded(X), pruned(X)) and loaded.blocks[0].attn.num_heads == 2


def test_multihead_attention_module_is_left_alone():
    pruned, record = prune.channels(fresh(depth=1, mha=True), X, 0.5, "l2")
    assert pruned.mha.embed_dim == 32 and pruned.mha.num_heads == 4
    assert record.attention["mha"] == {"before": 4, "after": 4}
    assert any("mha (MultiheadAttention)" in note for note in record.notes)
    assert pruned(X).shape == (3, 10)


def test_removing_every_head_is_refused():
    with pytest.raises(prune.PruneError, match=r"1 head\(s\) of attention module 'blocks.0.attn' would remove every head"):
        prune.channels(fresh(heads=1, depth=1), X, 0.5, "l2")
