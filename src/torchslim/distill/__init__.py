"""Knowledge distillation: a student learns from one or more frozen teachers.

``DistillTask`` combines weighted losses (registry ``LOSSES``, one file per method under
``losses/``) over logits and tapped intermediate features; it works in a hand-written loop and
with ``torchslim.fit``. ``TeacherCache`` computes teacher outputs once.
"""

from torchslim.distill import losses
from torchslim.distill.cache import TeacherCache
from torchslim.distill.losses import LOSSES, DistillLoss, Outputs
from torchslim.distill.schedule import Schedule
from torchslim.distill.task import DistillTask

__all__ = ["LOSSES", "DistillLoss", "DistillTask", "Outputs", "Schedule", "TeacherCache", "losses"]
