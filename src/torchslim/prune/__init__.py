"""Pruning: structured (channels and attention heads; the model physically shrinks) and
unstructured (magnitude sparsity; the same dense model with zeros).

``channels(model, x, ratio=0.5, importance="l2")`` returns ``(pruned, record)``: a smaller dense
``nn.Module`` and a :class:`ChannelPruneRecord` with sizes before/after and the applied steps
(which channels of which module were kept). ``save_model`` stores those steps in ``model.json``
and ``load_model`` replays them on a fresh model (``replay``) — no pickle. ``sparsify`` zeros the
smallest weights, one-shot or on an AGP ramp (:class:`GradualSparsity`). Their options are
:class:`PruneConfig` and :class:`SparsifyConfig` (keyword arguments build them).
"""

from typing import TYPE_CHECKING

from torchslim.core.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and the API reference; at run time on first use
    from torchslim.prune.config import PruneConfig, SparsifyConfig
    from torchslim.prune.errors import PruneError, ReplayError
    from torchslim.prune.importance import IMPORTANCE
    from torchslim.prune.record import ChannelPruneRecord, LayerSparsity, Size, SparsityRecord, StepRecord
    from torchslim.prune.structured import channels
    from torchslim.prune.surgery import ChannelSteps, SetAttr, Slice, replay, signature
    from torchslim.prune.unstructured import GradualSparsity, magnitude_masks, sparsify

_EXPORTS = {
    "PruneConfig": "config",
    "SparsifyConfig": "config",
    "PruneError": "errors",
    "ReplayError": "errors",
    "IMPORTANCE": "importance",
    "ChannelPruneRecord": "record",
    "LayerSparsity": "record",
    "Size": "record",
    "SparsityRecord": "record",
    "StepRecord": "record",
    "channels": "structured",
    "ChannelSteps": "surgery",
    "SetAttr": "surgery",
    "Slice": "surgery",
    "replay": "surgery",
    "signature": "surgery",
    "GradualSparsity": "unstructured",
    "magnitude_masks": "unstructured",
    "sparsify": "unstructured",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "IMPORTANCE", "ChannelPruneRecord", "ChannelSteps", "GradualSparsity", "LayerSparsity", "PruneConfig",
    "PruneError", "ReplayError", "SetAttr", "Size", "Slice", "SparsifyConfig", "SparsityRecord", "StepRecord",
    "channels", "magnitude_masks", "replay", "signature", "sparsify",
]
