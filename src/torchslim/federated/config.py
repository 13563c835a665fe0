"""The federated recipe: one typed, strict config that every front end reads.

A federated recipe is a YAML file with a ``federated:`` section::

    version: 1
    name: federated-fashion-mnist
    seed: 0
    federated:
      method: fd                      # fd: distillation by logits; fedavg: Flower's FedAvg baseline
      data: {name: fashion-mnist, test_subset: 2000}
      clients: {count: 10, architectures: [cnn-small, mlp, cnn-tiny]}
      split: {alpha: 0.3}             # Dirichlet(alpha) label mix per client, seeded
      public: {size: 2000}            # unlabelled transfer set, disjoint from every shard
      rounds: 5
      local_epochs: 1
      lr: 0.05
      temperature: 3.0
      ensemble: class-reliability-sq  # per-class weights from each client's own predictions
      min_clients: 8
      server: {architecture: cnn-small, epochs: 2}

Parsing reuses the pipeline recipe's strict machinery: an unknown key is an error naming its key
path, the closest valid key and ``file:line``; a value out of bounds names the value and the bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from torchslim.pipeline.recipe import VERSION, RecipeError, Strict, _Lines, dotted, validate_section
from torchslim.pipeline.recipe_yaml import read_text, read_yaml


class FederatedData(Strict):
    """Where the clients' shards, the public set and the test set come from."""

    name: str = Field("fashion-mnist", description="registered dataset (see `torchslim datasets`)")
    root: str | None = Field(None, description="directory holding the dataset files")
    train_subset: int | None = Field(None, gt=0, description="use only this many training images (seeded)")
    test_subset: int | None = Field(None, gt=0, description="evaluate on only this many test images (seeded)")
    options: dict[str, Any] = Field(default_factory=dict, description="further keyword arguments of the loader")


class ClientsConfig(Strict):
    """How many clients there are and which model each one trains."""

    count: int = Field(gt=0, le=10_000, description="number of clients (one data shard each)")
    architectures: list[str] = Field(
        min_length=1, description="registered model names; client i trains architectures[i % len]")

    def architecture(self, client: int) -> str:
        return self.architectures[client % len(self.architectures)]


class SplitConfig(Strict):
    """The non-IID split of the labelled training data across clients."""

    alpha: float = Field(gt=0, allow_inf_nan=False,
                         description="Dirichlet concentration: small = few labels per client, large = IID")
    min_size: int = Field(2, ge=1, description="fewest examples a client may get (resampled until met)")


class PublicConfig(Strict):
    """The public transfer set: training images whose labels are never read."""

    size: int = Field(gt=0, description="images held out of every shard for exchanging logits")


class ServerConfig(Strict):
    """The server's own model, distilled from the clients' ensemble (fd) on the public set."""

    architecture: str = Field("cnn-small", description="registered model name of the server model")
    epochs: int = Field(2, gt=0, le=1000, description="distillation epochs on the public set per round")
    lr: float = Field(0.05, gt=0, allow_inf_nan=False, description="server distillation learning rate")


class FederatedConfig(Strict):
    """Everything a federation needs; the only definition of its options and their bounds."""

    method: Literal["fd", "fedavg"] = Field("fd", description="fd: logits on the public set; fedavg: weights")
    data: FederatedData = Field(default_factory=FederatedData, description="the dataset")
    clients: ClientsConfig = Field(description="client count and architectures")
    split: SplitConfig = Field(description="Dirichlet non-IID split")
    public: PublicConfig = Field(description="the public transfer set")
    server: ServerConfig = Field(default_factory=ServerConfig, description="the server model (fd)")
    rounds: int = Field(gt=0, le=10_000, description="federated rounds")
    local_epochs: int = Field(1, gt=0, le=1000, description="epochs on the private shard per round")
    distill_epochs: int = Field(1, ge=0, le=1000, description="client epochs on the ensemble's soft labels (0: "
                                "clients train on their shards only and the server sends them no soft labels)")
    lr: float = Field(0.05, gt=0, allow_inf_nan=False, description="client SGD learning rate")
    batch_size: int = Field(64, gt=0, description="training batch size (clients and server)")
    temperature: float = Field(3.0, gt=0, allow_inf_nan=False, description="softmax temperature of the logits")
    ensemble: Literal["mean", "class-reliability", "class-reliability-sq", "class-reliability-entropy"] = Field(
        "class-reliability-entropy", description="how the server combines the clients' probabilities (fd): mean, "
        "or per class weighted by how often each client predicts that class (-sq: squared weights; -entropy: "
        "also by each prediction's inverse entropy)")
    soft_label_momentum: float = Field(
        0.0, ge=0, lt=1, allow_inf_nan=False, description="fd: share of the previous round's soft labels kept "
        "in the new ones (0: each round's ensemble alone)")
    min_clients: int = Field(2, gt=0, description="fewest answering clients for a round to count")
    round_timeout: float = Field(600.0, gt=0, allow_inf_nan=False,
                                 description="seconds to wait for replies in a round")
    join_timeout: float = Field(120.0, gt=0, allow_inf_nan=False,
                                description="seconds to wait for clients to connect before round 1")

    @model_validator(mode="after")
    def _check(self) -> FederatedConfig:
        if self.min_clients > self.clients.count:
            raise ValueError(f"min_clients = {self.min_clients} is more than clients.count = "
                             f"{self.clients.count}; it must be between 1 and the client count")
        if self.method == "fedavg" and len(set(self.clients.architectures)) > 1:
            raise ValueError(f"fedavg averages weights, so every client needs one architecture; got "
                             f"{self.clients.architectures} (use method: fd for mixed architectures)")
        return self


class FederatedRecipe(Strict):
    """A federated recipe file: metadata plus the ``federated:`` section."""

    version: Literal[1] = VERSION
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0, description="seeds the split, every model's init and data order")
    threads: int | None = Field(None, gt=0, description="torch threads per process (None: torch's default)")
    federated: FederatedConfig
    source: str = ""

    @field_validator("federated", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("`federated:` must be a mapping of options")
        return value

    def plain(self) -> dict[str, Any]:
        """JSON-ready form (what a client receives and what the output records)."""
        return json.loads(self.model_dump_json())


def parse(data: Any, source: str = "<recipe>", text: str | None = None) -> FederatedRecipe:
    """Validate an already-loaded mapping into a :class:`FederatedRecipe`, then check every name.

    ``text`` (the YAML ``data`` was read from) gives messages their ``file:line``.

    Raises:
        RecipeError: unknown keys, bad values, or an unknown architecture, each with its key path.
    """
    lines = _Lines(read_yaml(text, source)[1] if text else None, source)
    if not isinstance(data, dict) or "federated" not in data:
        raise RecipeError(f"{source}: a federated recipe is a mapping with a `federated:` section "
                          "(clients, split, public, rounds, ...); see recipes/federated-fashion-mnist.yaml.")
    recipe = validate_section(FederatedRecipe, {**data, "source": source}, (), lines)
    _check_names(recipe, lines)
    return recipe


def _check_names(recipe: FederatedRecipe, lines: _Lines) -> None:
    """Every architecture must be a registered model (the message lists the valid ones)."""
    from torchslim.core.registry import did_you_mean
    from torchslim.models import MODELS

    cfg = recipe.federated
    named = [(("federated", "clients", "architectures", i), a) for i, a in enumerate(cfg.clients.architectures)]
    named.append((("federated", "server", "architecture"), cfg.server.architecture))
    for path, name in named:
        if name not in MODELS:
            raise RecipeError(f"{lines.where(path)}: {dotted(path)} = {name!r} is not a registered model."
                              f"{did_you_mean(name, MODELS.list())} Valid architectures: {', '.join(MODELS.list())}.")
    if not math.isfinite(cfg.split.alpha):  # belt and braces: pydantic already refuses NaN/Inf
        raise RecipeError(f"{lines.where(('federated', 'split', 'alpha'))}: federated.split.alpha must be finite.")


def load(path: str | Path) -> FederatedRecipe:
    """Read and validate the federated recipe at ``path``.

    Raises:
        RecipeError: missing file, over-limit or invalid YAML, or an invalid recipe (key path and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"No federated recipe at {path}; a shipped one is recipes/federated-fashion-mnist.yaml.")
    text = read_text(path)  # size and encoding limits shared with pipeline recipes
    data, _ = read_yaml(text, str(path))  # duplicate keys, aliases and nesting refused with file:line
    return parse(data, str(path), text)


def from_plain(data: dict[str, Any]) -> FederatedRecipe:
    """Rebuild a recipe from :meth:`FederatedRecipe.plain` (as a client receives it)."""
    return parse(data, str(data.get("source") or "<recipe from server>"))
