"""Pruning: structured (channels and attention heads; the model physically shrinks) and
unstructured (magnitude sparsity; the same dense model with zeros).

``channels(model, x, ratio=0.5, importance="l2")`` returns ``(pruned, record)``: a smaller dense
``nn.Module`` and a :class:`ChannelPruneRecord` with sizes before/after and the applied steps
(which channels of which module were kept). ``save_model`` stores those steps in ``model.json``
and ``load_model`` replays them on a fresh model (``replay``) — no pickle. ``sparsify`` zeros the
smallest weights, one-shot or on an AGP ramp (:class:`GradualSparsity`). Their options are
:class:`PruneConfig` and :class:`SparsifyConfig` (keyword arguments build them).
"""

from torchslim.options.prune import PruneConfig, SparsifyConfig
from torchslim.prune.errors import PruneError, ReplayError
from torchslim.prune.importance import IMPORTANCE
from torchslim.prune.record import ChannelPruneRecord, LayerSparsity, Size, SparsityRecord, StepRecord
from torchslim.prune.structured import channels
from torchslim.prune.surgery import ChannelSteps, SetAttr, Slice, replay, signature
from torchslim.prune.unstructured import GradualSparsity, magnitude_masks, sparsify

__all__ = [
    "IMPORTANCE", "ChannelPruneRecord", "ChannelSteps", "GradualSparsity", "LayerSparsity", "PruneConfig",
    "PruneError", "ReplayError", "SetAttr", "Size", "Slice", "SparsifyConfig", "SparsityRecord", "StepRecord",
    "channels", "magnitude_masks", "replay", "signature", "sparsify",
]
