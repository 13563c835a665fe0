"""Pipeline steps by family, and the registries a recipe's task draws them from.

:data:`STEPS` holds the image task's steps, :data:`~torchslim.pipeline.steps.text.TEXT_STEPS` the
text task's; importing this package registers them all. A recipe's task
(:mod:`torchslim.pipeline.tasks`) says which registry its steps come from.
"""

from torchslim.pipeline.steps.base import STEPS, Output, Step, StepContext, need_module, register
from torchslim.pipeline.steps.measurement import Evaluate, EvaluateParams
from torchslim.pipeline.steps.source import Load, LoadParams
from torchslim.pipeline.steps.structural import Export, Prune, Quantize, Sparsify
from torchslim.pipeline.steps.text import TEXT_STEPS
from torchslim.pipeline.steps.training import Distill, LossItem, Train

__all__ = ["STEPS", "TEXT_STEPS", "Distill", "Evaluate", "EvaluateParams", "Export", "Load", "LoadParams", "LossItem",
           "Output", "Prune", "Quantize", "Sparsify", "Step", "StepContext", "Train", "need_module", "register"]
