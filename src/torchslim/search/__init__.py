"""Strategy search: the best compressed models for a budget, found instead of hand-written.

    from torchslim import search
    summary = search.search("recipes/fashion-mnist.yaml", "runs/search", budget="60m")

A recipe's ``search:`` section (:class:`SearchConfig`) names what varies (fields of the step configs,
with ranges or choices, plus the route, recovery and quantization of a candidate), the objectives
(validation accuracy, latency on the deployment target against the teacher, bytes) and the
constraints; Optuna samples candidates (multi-objective TPE or NSGA-II) in a study stored in its RDB
storage (SQLite in the output directory, or PostgreSQL for workers on many machines); every
candidate is made by the pipeline and measured; the front is re-measured on the test set against
the teacher, and one pick per scenario is exported as a recipe ``torchslim compare`` reproduces.
See :mod:`torchslim.search.run` for the output directory and resuming, :mod:`torchslim.search.trial`
for early stopping, :mod:`torchslim.pipeline.search_space` for the space.
"""

from typing import TYPE_CHECKING

from torchslim.core.lazy import lazy_exports

if TYPE_CHECKING:  # the names for type checkers and the API reference; at run time on first use
    from torchslim.options.search import SearchConfig
    from torchslim.pipeline.search_space import DEFAULT_SPACE, SpaceError, build_space
    from torchslim.search.run import search
    from torchslim.search.study import SearchError

_EXPORTS = {"search": "run", "SearchError": "study"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The section's options and the space are defined beside what they validate against: SearchConfig in
# torchslim.options (a recipe section), the space in torchslim.pipeline (it is read against the steps'
# configs, and a recipe is checked with it when parsed).
from torchslim.options.search import SearchConfig  # noqa: E402
from torchslim.pipeline.search_space import DEFAULT_SPACE, SpaceError, build_space  # noqa: E402

__all__ = ["DEFAULT_SPACE", "SearchConfig", "SearchError", "SpaceError", "build_space", "search"]
