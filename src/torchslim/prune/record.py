"""What a pruning run did, as typed JSON-able records: sizes before and after, the settings, the
accuracy along the way, and (for channel pruning) the applied steps that rebuild the model."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from torchslim.prune.errors import PruneError
from torchslim.prune.surgery import ChannelSteps

DENSE_NOTE = ("Unstructured sparsity leaves every tensor dense: torch's dense kernels still multiply "
              "the zeros, so the model runs no faster than the dense one. The saving is in compressed "
              "size only (the zeros compress), unless a sparse kernel or runtime exploits them.")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict."""
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Rebuild a record from :meth:`to_dict`'s output.

        Raises:
            PruneError: a missing or mistyped field (named).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PruneError(f"Not a valid {cls.__name__}: {exc}") from None


class Size(_Record):
    """Parameters, MACs per sample and bytes of the state_dict saved as safetensors."""

    parameters: int = Field(ge=0)
    macs: int = Field(ge=0)
    bytes: int = Field(ge=0)


class StepRecord(_Record):
    """One pruning step of an iterative run (one-shot runs have one)."""

    step: int = Field(ge=1)
    target_ratio: float = Field(description="cumulative fraction of channels removed after this step")
    size: Size
    accuracy_pruned: float | None = Field(None, description="test accuracy % right after pruning")
    accuracy_recovered: float | None = Field(None, description="test accuracy % after recovery")
    recovery_epochs: int = 0
    recovery_seconds: float = 0.0
    recovery_history: list[dict[str, float]] = Field(default_factory=list,
                                                     description="fit's per-epoch records of the recovery")


class ChannelPruneRecord(_Record):
    """A ``channels`` run: settings, sizes before/after, per-step history and the applied steps."""

    criterion: str
    ratio: float
    ratios: dict[str, float] = Field(default_factory=dict, description="per-layer ratios by module path")
    head_ratio: float | None = None
    global_ranking: bool = False
    round_to: int | None = None
    ignored: list[str] = Field(default_factory=list)
    classifier: str | None = None
    attention: dict[str, dict[str, int]] = Field(default_factory=dict,
                                                 description="path -> heads before and after")
    widths: dict[str, list[int]] = Field(default_factory=dict,
                                         description="layer path -> [output channels before, after]")
    iterations: int = Field(1, validation_alias=AliasChoices("iterations", "iterative_steps"),  # the older name
                            description="pruning rounds, recovering between them")
    recover: str = "none"
    epochs: int = 0
    before: Size
    after: Size
    accuracy_before: float | None = None
    history: list[StepRecord] = Field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)
    steps: ChannelSteps

    @property
    def parameter_ratio(self) -> float:
        """Parameters after / before."""
        return self.after.parameters / max(self.before.parameters, 1)

    @property
    def mac_ratio(self) -> float:
        """MACs after / before."""
        return self.after.macs / max(self.before.macs, 1)


class LayerSparsity(_Record):
    zeros: int = Field(ge=0)
    numel: int = Field(gt=0)
    sparsity: float = Field(ge=0, le=1)


class SparsityRecord(_Record):
    """A ``sparsify`` run: the sparsity reached per layer and overall, and dense vs compressed size."""

    target: float
    scope: str
    ramp: str = Field(validation_alias=AliasChoices("ramp", "schedule"),  # records written before the rename say "schedule"
                      description="oneshot or agp")
    epochs: int = 0
    layers: dict[str, LayerSparsity]
    sparsity: float = Field(description="zeros / elements over the sparsified weights")
    sparsity_all_parameters: float = Field(description="zeros / elements over every parameter")
    parameters: int
    nonzero_parameters: int
    dense_bytes: int = Field(description="state_dict as safetensors")
    zipped_bytes: int = Field(description="the same file, deflate-compressed")
    csr_bytes: int = Field(description="sparsified weights as CSR (float32 values, int32 indices), rest dense")
    accuracy_before: float | None = Field(None, description="test accuracy % of the dense model")
    accuracy_pruned: float | None = Field(None, description="right after one-shot masking, before training")
    accuracy_after: float | None = None
    seconds: float = 0.0
    note: str = DENSE_NOTE
