"""One shape for every batch: loaders may yield ``(x, y)``, ``(x, y, index)`` or a dict."""

from __future__ import annotations

from typing import Any

import torch

from torchslim.core.errors import TorchSlimError


def as_batch(batch: Any, device: torch.device | str = "cpu",
             memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, Any]:
    """A dict with ``x``, ``y`` and (when the loader gives it) ``index``, moved to ``device``."""
    if isinstance(batch, dict):
        out = dict(batch)
        if "x" not in out:
            raise TorchSlimError(f"A batch dict needs an 'x' entry; got keys {sorted(out)}.")
    elif isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        out = {"x": batch[0], "y": batch[1]}
        if len(batch) == 3:
            out["index"] = batch[2]
    else:
        raise TorchSlimError(
            f"A batch must be (x, y), (x, y, index) or a dict with 'x'; got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "") + "."
        )
    for key, value in out.items():
        if isinstance(value, torch.Tensor):
            if key == "x" and value.ndim == 4:
                value = value.contiguous(memory_format=memory_format)
            out[key] = value.to(device, non_blocking=True)
    return out
