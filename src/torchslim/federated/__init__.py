"""Federated distillation on Flower: clients share logits on a public set, never weights or data.

``torchslim.federated.run(recipe, out)`` (or ``torchslim federated RECIPE --out DIR``) runs a
federation described by a recipe's ``federated:`` section on Flower's simulation engine, or with
``engine="deployment"`` on a running SuperLink and SuperNodes. Methods: ``fd`` (federated
distillation by logits, with a server model distilled from the clients' ensemble) and ``fedavg``
(Flower's FedAvg strategy, the baseline). Requires the ``federated`` extra (``flwr``).
"""

from __future__ import annotations

import os

# Flower reports usage events to its makers by default; a compression toolkit that runs offline should
# not, unless the user opts in by setting the variable themselves. Set before flwr is imported.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from torchslim.federated.config import FederatedConfig, FederatedRecipe, load, parse
from torchslim.federated.engine import ENGINES, run

__all__ = ["ENGINES", "FederatedConfig", "FederatedRecipe", "load", "parse", "run"]
