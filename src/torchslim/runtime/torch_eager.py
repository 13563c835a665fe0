"""A torch module as a runtime: eager execution, eval mode, no gradients."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from torchslim.core.macs import count_macs, count_parameters
from torchslim.models.checkpoint import load_model, save_model
from torchslim.runtime.base import Runtime


class TorchModel(Runtime):
    """Run ``module`` in torch eager mode.

    torch's thread pool is process-wide: with ``threads`` set, each call sets it first when it
    differs (and leaves it so); with ``threads=None`` the current setting is used.
    """

    runtime = "torch-eager"

    def __init__(self, module: nn.Module, threads: int | None = None, path: str | Path | None = None) -> None:
        super().__init__(threads)
        self.module = module.eval()
        self._path = Path(path) if path is not None else None

    @property
    def kernel(self) -> str:
        dtypes = {p.dtype for p in self.module.parameters()} or {torch.float32}
        return "/".join(sorted(str(d).replace("torch.", "").upper() for d in dtypes))

    @property
    def path(self) -> Path | None:
        return self._path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._threads is not None and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            return self.module(x)

    def save(self, path: str | Path) -> Path:
        """Save as a model artifact directory (``model.safetensors`` + ``model.json``)."""
        self._path = save_model(self.module, path)
        return self._path

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> TorchModel:
        module, _ = load_model(path)
        return cls(module, threads, path)

    def parameter_count(self) -> int:
        return count_parameters(self.module)

    def macs(self, example_input: torch.Tensor) -> int:
        return count_macs(self.module, example_input)
