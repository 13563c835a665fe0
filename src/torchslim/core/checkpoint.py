"""Where checkpoint names have always been imported from; each lives in the module of its layer.

- tensors on disk: :mod:`torchslim.core.tensors`;
- resumable training states: :mod:`torchslim.core.training_state`;
- model artifacts (``save_model``, ``load_model``, ``read_meta``, ...): :mod:`torchslim.models.checkpoint`,
  above ``core`` because rebuilding a model needs its family.

New code imports from those modules. The model-artifact names below are the one import from
``core`` up into ``models``; it goes once no caller imports them from here.
"""

from __future__ import annotations

from torchslim.core.tensors import (  # noqa: F401  (re-exported)
    FORMAT_VERSION,
    load_state,
    read_tensors,
    save_tensors,
    sha256_file,
)
from torchslim.core.training_state import (  # noqa: F401  (re-exported)
    STATE_JSON,
    STATE_TENSORS,
    find_training_state,
    load_training_state,
    save_training_state,
)
from torchslim.models.checkpoint import (  # noqa: F401  (re-exported, see above)
    META,
    WEIGHTS,
    check_meta,
    check_spec,
    load_model,
    not_rebuildable,
    read_meta,
    save_model,
)
