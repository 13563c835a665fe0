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


# -- a hand-written ViT whose attention blocks carry no head count, under a root that does ----------


class BareAttention(nn.Module):
    """q/k/v/o projections and a head size, but no head-count attribute: the count follows from the
    width in forward (reshape with -1), so whole-head pruning needs no attribute update."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.head_dim = dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, -1, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(-1)
        return self.o((attn @ v).transpose(1, 2).reshape(b, n, -1))


class UserBlock(nn.Module):
    def __init__(self, dim: int, heads: int, attention: type[nn.Module]) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), attention(dim, heads)
        self.norm2, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class UserViT(nn.Module):
    """The reported model: the root keeps ``self.heads``; its attention blocks keep none."""

    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, attention: type[nn.Module] = BareAttention):
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(1, dim, 7, 7)
        self.blocks = nn.Sequential(*[UserBlock(dim, heads, attention) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


def user_vit(**kwargs) -> UserViT:
    torch.manual_seed(0)
    return UserViT(**kwargs).eval()


HEADS = {"blocks.0.attn": 4, "blocks.1.attn": 4}


def test_unknown_head_count_is_refused_naming_each_block_and_the_fix():
    with pytest.raises(prune.PruneError) as info:
        prune.channels(user_vit(), X, 0.5)
    message = str(info.value)
    assert "head count of attention block(s) 'blocks.0.attn', 'blocks.1.attn' is unknown" in message
    assert "q, k, v of 32 channels" in message and "1, 2, 4, 8, 16, 32" in message
    assert "heads={'blocks.0.attn': n, 'blocks.1.attn': n}" in message
    assert "ignore=['blocks.0.attn', 'blocks.1.attn']" in message
    assert "Nothing was pruned" not in message  # the root's `heads` no longer hides the whole model


def test_ignoring_the_blocks_prunes_the_rest():
    pruned, record = prune.channels(user_vit(), X, 0.5, ignore=["blocks.0.attn", "blocks.1.attn"])
    assert all(b.attn.q.out_features == 32 for b in pruned.blocks)
    assert all(b.fc1.out_features == 32 for b in pruned.blocks)  # the MLPs are still pruned
    assert record.attention == {}


def test_given_head_counts_prune_whole_heads_under_a_root_with_heads():
    model = user_vit()
    pruned, record = prune.channels(model, X, 0.5, heads=HEADS)
    assert record.attention == {"blocks.0.attn": {"before": 4, "after": 2}, "blocks.1.attn": {"before": 4, "after": 2}}
    assert pruned.heads == 4  # the root's attribute describes the model; it is not touched
    for block in pruned.blocks:
        widths = {block.attn.q.out_features, block.attn.k.out_features, block.attn.v.out_features}
        assert widths == {16} and block.attn.head_dim == 8  # two whole heads of 8
        assert block.attn.o.out_features == 32 and block.fc1.out_features == 32
    for op in record.steps.ops:
        if op.op == "slice" and (op.module.endswith((".q", ".k", ".v")) and op.dim == "out"
                                 or op.module.endswith(".o") and op.dim == "in"):
            runs = [op.kept[i:i + 8] for i in range(0, len(op.kept), 8)]
            assert all(r == list(range(r[0], r[0] + 8)) and r[0] % 8 == 0 for r in runs), op


def test_given_heads_equal_removing_the_same_heads_by_hand():
    """Only the heads are pruned (the MLPs left alone): the pruned model computes exactly what the
    unpruned one computes after slicing the same heads out of q, k, v and o by hand."""
    model = user_vit()
    mlps = [f"blocks.{i}.{name}" for i in range(2) for name in ("fc1", "fc2")]
    pruned, record = prune.channels(model, X, 0.5, heads=HEADS, ignore=mlps)
    by_hand = user_vit()
    for i, block in enumerate(by_hand.blocks):
        (op,) = [o for o in record.steps.ops if o.op == "slice" and o.module == f"blocks.{i}.attn.q" and o.dim == "out"]
        keep = torch.tensor(op.kept)
        with torch.no_grad():
            for name in "qkv":
                layer = getattr(block.attn, name)
                layer.weight = nn.Parameter(layer.weight[keep])
                layer.bias = nn.Parameter(layer.bias[keep])
            block.attn.o.weight = nn.Parameter(block.attn.o.weight[:, keep])
    torch.testing.assert_close(pruned(X), by_hand(X), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(pruned(X), model(X))  # heads really went


def test_blocks_with_their_own_head_count_are_found_under_a_root_with_heads():
    """The reported refusal ('every prunable layer is ignored'): the root's `heads` is not a block."""
    pruned, record = prune.channels(user_vit(attention=Attention), X, 0.5)
    assert record.attention == {"blocks.0.attn": {"before": 4, "after": 2}, "blocks.1.attn": {"before": 4, "after": 2}}
    assert pruned.blocks[0].attn.num_heads == 2 and pruned(X).shape == (3, 10)


def test_given_heads_round_trip_through_a_checkpoint(tmp_path):
    pruned, _ = prune.channels(user_vit(), X, 0.5, heads=HEADS)
    save_model(pruned, tmp_path)
    loaded, _ = load_model(tmp_path, model=user_vit())
    assert torch.equal(loaded(X), pruned(X))


def test_a_step_that_would_split_a_head_is_refused():
    from torchslim.prune.heads import check_whole_heads, find_attention
    from torchslim.prune.surgery import Slice

    blocks = find_attention(user_vit(), X, HEADS)
    whole = Slice(module="blocks.0.attn.q", layer="LINEAR", dim="out", axis=0, size=32, kept=list(range(8, 24)))
    check_whole_heads([whole], blocks)  # heads 1 and 2: fine
    split = Slice(module="blocks.0.attn.q", layer="LINEAR", dim="out", axis=0, size=32, kept=list(range(4, 20)))
    with pytest.raises(prune.PruneError, match=r"split the heads of attention block 'blocks.0.attn'.*not whole heads of 8"):
        check_whole_heads([split], blocks)
    other = Slice(module="blocks.0.attn.k", layer="LINEAR", dim="out", axis=0, size=32, kept=list(range(16)))
    with pytest.raises(prune.PruneError, match=r"different heads from its sibling projections"):
        check_whole_heads([whole, other], blocks)


class StaleCountAttention(BareAttention):
    """Keeps its head count as ``self.h``, a name torchslim cannot know to update, and splits the
    width into ``self.h`` heads: after whole heads go, the rest would become thinner heads."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.h = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.h, -1).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x)))
        attn = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(-1)
        return self.o((attn @ v).transpose(1, 2).reshape(b, n, -1))


def test_a_stale_head_count_that_would_make_thinner_heads_is_refused():
    with pytest.raises(prune.PruneError, match=r"attention block 'blocks.0.attn' \(StaleCountAttention\), it no "
                                               r"longer computes .* reads a head count that pruning did not update"):
        prune.channels(user_vit(attention=StaleCountAttention), X, 0.5, heads=HEADS)


@pytest.mark.parametrize(("steps", "head_ratio", "kept"), [(1, 0.5, 2), (2, 0.5, 2), (3, 0.5, 2), (3, 0.3, 2), (2, 0.7, 1)])
def test_iterations_remove_the_requested_share_of_heads(steps, head_ratio, kept):
    """torch-pruning alone applies the cumulative ratio to the heads left (2 steps of 0.5: 1 of 4)."""
    pruned, record = prune.channels(user_vit(), X, 0.5, heads=HEADS, iterations=steps, head_ratio=head_ratio)
    assert record.attention["blocks.0.attn"] == {"before": 4, "after": kept}
    assert pruned.blocks[1].attn.q.out_features == 8 * kept


class FusedAttention(nn.Module):
    """timm's layout: one qkv Linear, a head count attribute, scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


def test_fused_qkv_projection_keeps_the_same_whole_heads_in_q_k_and_v():
    pruned, record = prune.channels(user_vit(attention=FusedAttention), X, 0.5)
    assert record.attention["blocks.0.attn"] == {"before": 4, "after": 2}
    (op,) = [o for o in record.steps.ops if o.op == "slice" and o.module == "blocks.0.attn.qkv" and o.dim == "out"]
    q, k, v = ([i - start for i in op.kept if start <= i < start + 32] for start in (0, 32, 64))
    assert q == k == v and len(q) == 16 and all(q[i] % 8 == 0 for i in range(0, 16, 8))
    assert pruned.blocks[0].attn.qkv.out_features == 48 and pruned(X).shape == (3, 10)


class FlatBlock(nn.Module):
    """q/k/v/o and the MLP side by side in one module: only ``o`` reads the attention product, so
    only ``o`` is the output projection kept whole; the MLP is pruned."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x)))
        x = x + self.o(((q @ k.transpose(-1, -2)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))
        return x + self.fc2(self.fc1(x).relu())


def test_output_projection_is_the_linear_that_reads_the_attention_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), FlatBlock(), nn.Linear(32, 5)).eval()
    tokens = torch.randn(2, 6, 12)
    pruned, record = prune.channels(model, tokens, 0.5)
    assert record.attention == {"1": {"before": 4, "after": 2}}
    assert pruned[1].q.out_features == 16 and pruned[1].o.out_features == 32 and pruned[1].fc1.out_features == 32
    assert "1.o (attention output: residual stream)" in record.ignored and pruned(tokens).shape == (2, 6, 5)
