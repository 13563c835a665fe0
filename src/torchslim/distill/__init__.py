"""Knowledge distillation: a student learns from one or more frozen teachers.

``DistillTask`` combines weighted losses (registry ``LOSSES``, one file per method under
``losses/``) over logits and tapped intermediate features; it works in a hand-written loop and
with ``torchslim.fit``. ``TeacherCache`` computes teacher outputs once. ``distill(student, teacher,
data, config=DistillConfig(...))`` runs the whole distillation from typed options (``make_task`` and
``build_losses`` are its parts, shared with the CLI and the recipe step).
"""

from typing import TYPE_CHECKING

from torchslim.core.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and the API reference; at run time on first use
    from torchslim.distill import losses
    from torchslim.distill.cache import TeacherCache
    from torchslim.distill.losses import LOSSES, DistillLoss, Outputs
    from torchslim.distill.run import build_losses, distill, make_task
    from torchslim.distill.schedule import Schedule
    from torchslim.distill.task import DistillTask

_EXPORTS = {
    "losses": "losses",
    "TeacherCache": "cache",
    "LOSSES": "losses",
    "DistillLoss": "losses",
    "Outputs": "losses",
    "build_losses": "run",
    "distill": "run",
    "make_task": "run",
    "Schedule": "schedule",
    "DistillTask": "task",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["LOSSES", "DistillLoss", "DistillTask", "Outputs", "Schedule", "TeacherCache", "build_losses", "distill",
           "losses", "make_task"]
