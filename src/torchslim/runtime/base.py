"""What every deployed-model wrapper offers, whatever runs it.

A runtime takes a batch tensor and returns the output tensor, has a thread count, saves and loads
itself, and names what executes it (``runtime``: "torch-eager", "onnxruntime"; ``kernel``: the
arithmetic path where known, e.g. "INT8 QDQ U8S8 per-channel"). It also answers ``eval()``,
``train()`` and ``training`` like a module in eval mode, so ``torchslim.evaluate`` and
``torchslim.measure`` run it exactly as they run an ``nn.Module``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from torchslim.core.errors import TorchSlimError


def check_threads(threads: int | None) -> int | None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise TorchSlimError(f"threads must be a positive integer or None (the runtime's default), got {threads!r}.")
    return threads


class Runtime(ABC):
    """A deployed model: ``runtime(x) -> y`` on tensors."""

    runtime: str = "unknown"
    training = False  # deployed models are always in inference mode

    def __init__(self, threads: int | None = None) -> None:
        self._threads = check_threads(threads)

    @property
    def threads(self) -> int | None:
        """Intra-op threads, or None for the runtime's default."""
        return self._threads

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` intra-op threads from the next call on (``measure_latency`` calls this)."""
        self._threads = check_threads(threads)

    @property
    def kernel(self) -> str | None:
        """The arithmetic path that runs the model ("FP32", "INT8 QDQ U8S8 per-channel", ...)."""
        return None

    @property
    def path(self) -> Path | None:
        """The file or directory the model was loaded from or saved to, if any."""
        return None

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the model so that :func:`torchslim.runtime.load` reads it back; returns the path."""

    @abstractmethod
    def parameter_count(self) -> int:
        """Number of weight and bias elements."""

    @abstractmethod
    def macs(self, example_input: torch.Tensor) -> int:
        """Multiply-accumulates per sample of one forward pass on ``example_input`` (N, ...)."""

    def eval(self) -> Runtime:
        return self

    def train(self, mode: bool = True) -> Runtime:
        if mode:
            raise TorchSlimError(f"A {self.runtime} model is deployed for inference and cannot be put "
                                 "in training mode; train the torch model instead.")
        return self

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"{type(self).__name__}(runtime={self.runtime!r}, kernel={self.kernel!r}, threads={self.threads}{where})"
