"""Students made from their teacher: fewer layers, initialised from chosen teacher layers.

DistilBERT (Sanh et al., 2019) initialises a half-depth student from every other teacher layer.
Which layers to keep matters, and every-other is not always best, so :func:`choose_layers` measures
on a sample how well each candidate keeps the teacher's embeddings *before* any training (the mean
cosine between the layer-dropped model's and the teacher's pooled embeddings) and keeps the best.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from torchslim.core.errors import TorchSlimError
from torchslim.text._configure import configure
from torchslim.text.config import TextLayersConfig
from torchslim.text.encoder import SentenceEncoder
from torchslim.text.metrics import embed, mean_cosine


def check_layers(layers: Sequence[int], available: int) -> list[int]:
    """``layers`` as a list of distinct increasing teacher layer indices in ``0..available-1``.

    Raises:
        TorchSlimError: empty, not integers, out of range, repeated or out of order.
    """
    layers = list(layers)
    if not layers:
        raise TorchSlimError("A student needs at least one teacher layer to keep; got none.")
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TorchSlimError(f"Student layer indices must be integers, got {i!r} in {layers}.")
        if not 0 <= i < available:
            raise TorchSlimError(f"Student layer index {i} is out of range: the teacher has {available} layers, "
                                 f"numbered 0..{available - 1}.")
    if any(b <= a for a, b in itertools.pairwise(layers)):
        raise TorchSlimError(f"Student layers must be distinct and increasing (the order of the teacher), "
                             f"got {layers}.")
    return layers


def layer_student(teacher: SentenceEncoder, layers: Sequence[int]) -> SentenceEncoder:
    """A copy of ``teacher`` keeping only the transformer layers ``layers`` (and its embeddings).

    Raises:
        TorchSlimError: see :func:`check_layers`.
    """
    layers = check_layers(layers, len(teacher.layers))
    kept = nn.ModuleList(copy.deepcopy(teacher.layers[i]) for i in layers)
    skeleton = teacher.bert.encoder.layer
    teacher.bert.encoder.layer = nn.ModuleList()  # deep-copy everything but the layers
    try:
        bert = copy.deepcopy(teacher.bert)
    finally:
        teacher.bert.encoder.layer = skeleton
    bert.encoder.layer = kept
    bert.config.num_hidden_layers = len(layers)
    for index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    student = teacher.rewrap(bert)
    student.teacher_layers = layers
    student.requires_grad_(True)  # trainable even when copied from a teacher a distillation froze
    return student.train(teacher.training)


def every_other(available: int, keep: int) -> list[int]:
    """DistilBERT's choice: ``keep`` layers evenly spaced, ending at the last layer."""
    step = available / keep
    return [min(available - 1, math.ceil((i + 1) * step) - 1) for i in range(keep)]


@dataclass
class LayerChoice:
    """What :func:`choose_layers` measured: every candidate's score, best first."""

    layers: list[int]
    score: float
    method: str
    sample_size: int
    scores: list[tuple[list[int], float]] = field(default_factory=list)
    every_other: tuple[list[int], float] | None = None

    def to_dict(self) -> dict:
        return {"layers": self.layers, "score": self.score, "method": self.method, "sample_size": self.sample_size,
                "scores": [[c, s] for c, s in self.scores],
                "every_other": list(self.every_other) if self.every_other else None}


@torch.no_grad()
def choose_layers(teacher: SentenceEncoder, sample: Tensor, keep: int, *, max_candidates: int = 64,
                  batch_size: int = 128) -> LayerChoice:
    """The ``keep`` teacher layers whose layer-dropped student best agrees with the teacher.

    Every subset is scored when there are at most ``max_candidates`` of them (6 choose 3 = 20);
    otherwise layers are dropped greedily, each step removing the one whose loss hurts least.
    The score is the mean cosine between the student's and the teacher's embeddings of ``sample``.

    Args:
        sample: (N, L) token ids of real text (a few hundred sentences suffice).
        keep: layers the student keeps, 1 <= keep <= the teacher's layers.

    Raises:
        TorchSlimError: ``keep`` out of range or an empty sample.
    """
    available = len(teacher.layers)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= available:
        raise TorchSlimError(f"keep must be an integer in [1, {available}] (the teacher's layers), got {keep!r}.")
    if sample.ndim != 2 or len(sample) < 2:
        raise TorchSlimError(f"The sample must be (N, L) token ids with N >= 2, got {tuple(sample.shape)}.")
    target = embed(teacher, sample, teacher.pad_token_id, batch_size)
    scored: dict[tuple[int, ...], float] = {}

    def score(layers: tuple[int, ...]) -> float:
        if layers not in scored:
            student = layer_student(teacher, layers)
            scored[layers] = mean_cosine(embed(student, sample, teacher.pad_token_id, batch_size), target)
        return scored[layers]

    if math.comb(available, keep) <= max_candidates:
        method = f"exhaustive over {math.comb(available, keep)} subsets"
        for layers in itertools.combinations(range(available), keep):
            score(layers)
    else:
        method = "greedy: drop the least useful layer, one at a time"
        current = tuple(range(available))
        while len(current) > keep:
            current = max((tuple(x for x in current if x != drop) for drop in current), key=score)
    ranked = sorted(scored.items(), key=lambda item: -item[1])
    best_layers, best_score = ranked[0]
    if len(best_layers) != keep:  # greedy: the best of the final size
        best_layers, best_score = max(((c, s) for c, s in ranked if len(c) == keep), key=lambda cs: cs[1])
    reference = tuple(every_other(available, keep))
    return LayerChoice(list(best_layers), best_score, method, len(sample),
                       [(list(c), s) for c, s in ranked if len(c) == keep],
                       (list(reference), score(reference)))


def shrink_layers(teacher: SentenceEncoder, sample: Tensor, config: TextLayersConfig | None = None,
                  **options: object) -> tuple[SentenceEncoder, LayerChoice | None]:
    """A student with fewer layers made from ``teacher``: the ``keep`` layers that agree best with it
    (:func:`choose_layers` on the first ``sample_size`` sentences of ``sample``) or the given
    ``layers``.

    Args:
        sample: (N, L) token ids of real text; unused when ``layers`` are given.
        config: a :class:`~torchslim.text.config.TextLayersConfig`; keyword arguments (``keep=3``,
            ``layers=[0, 4, 5]``, ``sample_size``) build it or override its fields.

    Returns:
        ``(student, choice)``: ``choice`` is what :func:`choose_layers` measured, None for given layers.

    Raises:
        OptionsError: bad options (neither or both of keep and layers, ...).
        TorchSlimError: ``keep`` or an index beyond the teacher's layers, or a sample of fewer than 2.
    """
    cfg = configure(TextLayersConfig, "text.shrink_layers", config, options)
    if cfg.layers is not None:
        return layer_student(teacher, cfg.layers), None
    choice = choose_layers(teacher, sample[: cfg.sample_size], cfg.keep)
    return layer_student(teacher, choice.layers), choice
