"""What one participant computes: local training, distillation from soft labels, logits, accuracy.

Clients and the server share these. Distillation uses torchslim's own ``kd`` loss: the ensemble's
softened probabilities ``p`` become teacher logits ``T·log p`` (softmax of those over T is exactly
``p``), so the federation's soft labels go through the same loss as any other teacher.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchslim.core.errors import NonFiniteLossError
from torchslim.data.base import ArrayImageDataset
from torchslim.distill.losses import KD, Outputs

EPS = 1e-8  # floor of ensemble probabilities before the log (a class nobody predicts)


def make_model(name: str, num_classes: int, in_channels: int, seed: int) -> nn.Module:
    """A freshly initialised registered model; ``seed`` decides its weights."""
    from torchslim import models

    torch.manual_seed(seed)
    return models.create(name, num_classes=num_classes, in_channels=in_channels)


def _optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def _batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _step(model: nn.Module, optim: torch.optim.Optimizer, loss: torch.Tensor, where: str) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{where}: the loss became {value}; lower the learning rate (federated.lr).")
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()
    return value


def train_ce(model: nn.Module, dataset: ArrayImageDataset, indices: np.ndarray, *, epochs: int, lr: float,
             batch_size: int, seed: int, where: str = "local training") -> float:
    """Cross-entropy SGD on ``dataset[indices]``; returns the mean loss of the last epoch."""
    model.train()
    optim, mean = _optimizer(model, lr), 0.0
    for epoch in range(epochs):
        losses = []
        for batch in _batches(len(indices), batch_size, seed * 1009 + epoch):
            x, y, _ = dataset[indices[batch].tolist()]
            losses.append(_step(model, optim, F.cross_entropy(model(x), y), where))
        mean = float(np.mean(losses))
    return mean


def distil(model: nn.Module, images: torch.Tensor, probs: torch.Tensor, *, temperature: float, epochs: int,
           lr: float, batch_size: int, seed: int, where: str = "distillation") -> float:
    """Fit ``model`` to soft labels ``probs`` (N, C) on ``images`` (N, ...) with the ``kd`` loss."""
    loss_fn = KD(T=temperature)
    teacher = temperature * probs.clamp_min(EPS).log()
    model.train()
    optim, mean = _optimizer(model, lr), 0.0
    for epoch in range(epochs):
        losses = []
        for batch in _batches(len(images), batch_size, seed * 1013 + epoch):
            index = torch.from_numpy(batch)
            loss = loss_fn(Outputs(model(images[index])), Outputs(teacher[index]), {})
            losses.append(_step(model, optim, loss, where))
        mean = float(np.mean(losses))
    return mean


@torch.no_grad()
def logits_on(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits (N, C) float32 on ``images``, in eval mode."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]).float()


ENSEMBLES = ("mean", "class-reliability", "class-reliability-sq", "class-reliability-entropy")


def class_reliability(logits: list[torch.Tensor], power: float = 1.0) -> torch.Tensor:
    """Per client and class, how much the client's probability for that class is trusted (K, C).

    Under label skew a client only predicts the classes it was trained on, so the mean of its
    probabilities (T = 1) over the public set estimates its label mix from the logits alone. Each
    row is scaled so the client's most-predicted class gets 1, then raised to ``power``.
    """
    usage = torch.stack([F.softmax(z.float(), dim=1).mean(0) for z in logits])
    return (usage / usage.max(dim=1, keepdim=True).values.clamp_min(EPS)) ** power


def ensemble(logits: list[torch.Tensor], temperature: float, rule: str = "mean",
             reference: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The clients' consensus on the public set (N, C): softened probabilities ``softmax(z_k / T)``
    combined by ``rule``.

    ``mean`` averages them. ``class-reliability`` averages each class's probability over clients
    weighted by their :func:`class_reliability` for it (a client that rarely predicts a class is
    discounted for it), then renormalises each row; ``class-reliability-sq`` squares the weights;
    ``class-reliability-entropy`` further scales client k's weights on image n by the inverse entropy
    of its prediction there, so a confident client outweighs an unsure one.
    The reliabilities come from ``reference`` (each client's logits on the public set) when given,
    else from ``logits`` themselves.
    """
    probs = torch.stack([F.softmax(z.float() / temperature, dim=1) for z in logits])  # K, N, C
    if rule == "mean":
        return probs.mean(0)
    if rule not in ENSEMBLES:
        raise ValueError(f"unknown ensemble rule {rule!r}; valid: {', '.join(ENSEMBLES)}")
    reliability = class_reliability(logits if reference is None else reference,
                                    2.0 if rule == "class-reliability-sq" else 1.0)  # K, C
    weight = reliability[:, None, :].expand_as(probs)  # K, N, C
    if rule == "class-reliability-entropy":
        entropy = -(probs * probs.clamp_min(EPS).log()).sum(2, keepdim=True)  # K, N, 1
        weight = weight / (entropy + 1e-3)  # the floor keeps a one-hot prediction finite
    mixed = (probs * weight).sum(0) / weight.sum(0).clamp_min(EPS)
    return mixed / mixed.sum(dim=1, keepdim=True).clamp_min(EPS)


def accuracy(model: nn.Module, loader) -> float:
    """Top-1 accuracy in percent on ``loader`` (torchslim's evaluator)."""
    from torchslim.train import evaluate

    return float(evaluate(model, loader)["accuracy"])
