"""How closely a student's sentence embeddings agree with its teacher's, on held-out sentences.

Three views of agreement, each from an ``(N, D)`` pair of embedding matrices of the same sentences:

* ``mean_cosine``: the mean over sentences of cos(student_i, teacher_i);
* ``knn_overlap``: for each sentence, the fraction of its ``k`` nearest neighbours (cosine, itself
  excluded) that the two models share, averaged — what a search index built on the student keeps;
* ``pairwise_spearman``: Spearman's rank correlation between the two models' cosine similarities
  over all N(N-1)/2 pairs — whether the student orders similarities as the teacher does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from torchslim.core.errors import TorchSlimError

Model = Callable[[Tensor], Tensor | np.ndarray]


@torch.inference_mode()
def embed(model: Model, ids: Tensor, pad_token_id: int, batch_size: int = 128) -> Tensor:
    """Embeddings (N, D) float32 of ``ids`` ((N, L) token ids), batched by length.

    Sentences are sorted by length so each batch is padded only to its own longest; the result is
    in the input order. ``model`` is a torch module (put in eval mode for the pass) or any callable
    from (B, n) int64 ids to (B, D) embeddings (an ONNX Runtime session wrapper).
    """
    if ids.ndim != 2:
        raise TorchSlimError(f"ids must be (N, L) token ids, got shape {tuple(ids.shape)}.")
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    lengths = (ids != pad_token_id).sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    chunks = []
    try:
        for start in range(0, len(ids), batch_size):
            index = order[start:start + batch_size]
            width = max(int(lengths[index].max()), 1)
            out = model(ids[index, :width].contiguous())
            chunks.append(torch.as_tensor(np.asarray(out) if not isinstance(out, Tensor) else out).float())
    finally:
        if was_training:
            model.train()
    result = torch.empty(len(ids), chunks[0].shape[1]) if chunks else torch.empty(0, 0)
    if chunks:
        result[order] = torch.cat(chunks)
    return result


def _pair(student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    s, t = torch.as_tensor(student).double(), torch.as_tensor(teacher).double()
    if s.ndim != 2 or s.shape[0] != t.shape[0] or s.shape[0] < 2:
        raise TorchSlimError(f"Agreement needs (N, D) embeddings of the same N >= 2 sentences; got student "
                             f"{tuple(s.shape)} and teacher {tuple(t.shape)}.")
    return s, t


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def mean_cosine(student: Tensor, teacher: Tensor) -> float:
    """Mean over sentences of the cosine between the student's and the teacher's embedding.

    The widths must match (a narrower student's embeddings are compared after its projection).
    """
    s, t = _pair(student, teacher)
    if s.shape[1] != t.shape[1]:
        raise TorchSlimError(f"mean_cosine needs embeddings of equal width; got {s.shape[1]} and {t.shape[1]}.")
    return float((_unit(s) * _unit(t)).sum(dim=1).mean())


def knn_overlap(student: Tensor, teacher: Tensor, k: int = 10) -> float:
    """Mean over sentences of |kNN_student ∩ kNN_teacher| / k, by cosine, each sentence excluded
    from its own neighbours. Widths may differ (each model is compared with itself)."""
    s, t = _pair(student, teacher)
    if not 1 <= k < len(s):
        raise TorchSlimError(f"k must be in [1, {len(s) - 1}] for {len(s)} sentences, got {k}.")

    def neighbours(x: Tensor) -> Tensor:
        sim = _unit(x) @ _unit(x).T
        sim.fill_diagonal_(-float("inf"))
        return sim.topk(k, dim=1).indices

    ns, nt = neighbours(s), neighbours(t)
    shared = (ns.unsqueeze(2) == nt.unsqueeze(1)).any(dim=2).sum(dim=1)
    return float(shared.double().mean() / k)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (as Spearman's rho defines them)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for a, b in zip(starts, ends, strict=True):
        if b - a > 1:
            ranks[order[a:b]] = (a + 1 + b) / 2.0
    return ranks


def pairwise_spearman(student: Tensor, teacher: Tensor) -> float:
    """Spearman's rho between the two models' cosine similarities over all pairs i < j."""
    s, t = _pair(student, teacher)
    if len(s) < 3:
        raise TorchSlimError("pairwise_spearman needs at least 3 sentences (3 pairs).")
    iu = torch.triu_indices(len(s), len(s), offset=1)
    sims = [(_unit(x) @ _unit(x).T)[iu[0], iu[1]].numpy() for x in (s, t)]
    rs, rt = _ranks(sims[0]), _ranks(sims[1])
    rs, rt = rs - rs.mean(), rt - rt.mean()
    denominator = np.sqrt((rs**2).sum() * (rt**2).sum())
    return float((rs * rt).sum() / denominator) if denominator > 0 else 0.0


def agreement(student: Tensor, teacher: Tensor, *, k: int = 10, spearman_n: int = 1000) -> dict[str, float]:
    """``{"mean_cosine", "knn_overlap", "pairwise_spearman", "n", "spearman_n"}``: cosine and
    neighbour overlap over all N sentences, Spearman over the first ``spearman_n``."""
    s, t = _pair(student, teacher)
    m = min(spearman_n, len(s))
    return {"mean_cosine": mean_cosine(s, t), "knn_overlap": knn_overlap(s, t, k),
            "pairwise_spearman": pairwise_spearman(s[:m], t[:m]), "n": len(s), "spearman_n": m, "k": k}
