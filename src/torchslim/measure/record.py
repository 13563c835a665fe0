"""Typed measurement records: one :class:`LatencyStat` per (batch size, threads), one
:class:`RatioStat` per speed-up against a baseline, one :class:`MeasureRecord` per measured model,
and a :class:`TimingRun` for a whole run of timing rounds; all JSON round-trippable.

Fields added later are optional with defaults, so JSON written before them still reads.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from torchslim.core.errors import TorchSlimError

# p90/p10 above this means the machine was busy while timing: the median is not to be trusted.
SPREAD_LIMIT = 1.5


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ascending ``sorted_values``, linearly interpolated."""
    pos = q * (len(sorted_values) - 1)
    low, high = math.floor(pos), math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


class LatencyStat(BaseModel):
    """Timing of one (batch size, threads, runtime) setting; times in milliseconds per batch."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(gt=0)
    threads: int = Field(gt=0)
    median_ms: float = Field(ge=0)
    p10_ms: float = Field(ge=0)
    p90_ms: float = Field(ge=0)
    per_sample_ms: float = Field(ge=0, description="median_ms / batch_size")
    throughput: float = Field(ge=0, description="samples per second at the median")
    repeats: int = Field(gt=0)
    runtime: str
    times_ms: list[float] = Field(default_factory=list, description="every timed repetition, in order")
    rounds: int | None = Field(default=None, gt=0, description="timing rounds the repetitions came from")
    round_medians_ms: list[float] = Field(default_factory=list, description="median of each round, in order")
    cores: list[int] | None = Field(default=None, description="CPU cores the process was pinned to")

    @classmethod
    def from_times(cls, times_ms: list[float], *, batch_size: int, threads: int, runtime: str,
                   **timing: Any) -> LatencyStat:
        """Summarise raw per-repetition times (ms per batch of ``batch_size``).

        Raises:
            TorchSlimError: ``times_ms`` is empty.
        """
        if not times_ms:
            raise TorchSlimError("No timed repetitions to summarise (times_ms is empty).")
        ordered = sorted(times_ms)
        median = statistics.median(ordered)
        return cls(
            batch_size=batch_size, threads=threads, median_ms=median,
            p10_ms=percentile(ordered, 0.1), p90_ms=percentile(ordered, 0.9),
            per_sample_ms=median / batch_size,
            throughput=batch_size * 1000.0 / max(median, 1e-6),  # 0 only below the clock's resolution
            repeats=len(times_ms), runtime=runtime,
            times_ms=[round(t, 6) for t in times_ms],  # nanosecond resolution is all perf_counter has
            **timing,
        )

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 on a quiet machine; above :data:`SPREAD_LIMIT` the machine was busy."""
        return self.p90_ms / self.p10_ms if self.p10_ms > 0 else math.inf

    @property
    def key(self) -> tuple[int, int]:
        return self.batch_size, self.threads


class RatioStat(BaseModel):
    """A speed-up ``baseline time / candidate time`` (above 1: faster) with its interval.

    ``ratio`` is the median of per-round ratios and ``[low, high]`` its bootstrap interval at
    ``confidence`` (see :mod:`torchslim.measure.confidence`); ``converged`` says whether the
    interval came within ``ratio x (1 +- target_width)`` before the time cap.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    baseline: str
    ratio: float = Field(gt=0)
    low: float = Field(gt=0)
    high: float = Field(gt=0)
    rounds: int = Field(gt=0)
    converged: bool
    runtime: str
    batch_size: int = Field(gt=0)
    threads: int = Field(gt=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    target_width: float = Field(default=0.05, gt=0)
    seconds: float | None = Field(default=None, ge=0, description="wall time of the setting's rounds")

    @property
    def half_width(self) -> float:
        """The interval's larger side as a fraction of the ratio (0.05: within +-5%)."""
        return max(self.ratio - self.low, self.high - self.ratio) / self.ratio

    @property
    def key(self) -> tuple[int, int]:
        return self.batch_size, self.threads

    def ties_with(self, other: RatioStat) -> bool:
        """Whether ``self`` and ``other`` are within noise of each other (their intervals overlap).

        Raises:
            TorchSlimError: the two were not measured at the same setting against the same baseline
                (their ratios are then not comparable).
        """
        mine = (self.baseline, self.batch_size, self.threads)
        theirs = (other.baseline, other.batch_size, other.threads)
        if mine != theirs:
            raise TorchSlimError(
                f"Speed-ups of {self.name!r} (baseline, batch, threads = {mine}) and {other.name!r} "
                f"({theirs}) are not comparable: compare ratios of one setting and baseline.")
        return self.low <= other.high and other.low <= self.high

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatioStat:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            TorchSlimError: a missing, mistyped or unknown field (named).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise TorchSlimError(f"Not a valid RatioStat: {exc}") from None


class SettingTiming(BaseModel):
    """The rounds of one (batch size, threads) setting: every candidate's times and speed-up."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(gt=0)
    threads: int = Field(gt=0)
    cores: list[int] | None = Field(description="cores the process was pinned to; None: not pinned")
    rounds: int = Field(gt=0)
    seconds: float = Field(ge=0)
    orders: list[list[str]] = Field(description="the order the candidates ran in, per round")
    latency: dict[str, LatencyStat]
    ratios: dict[str, RatioStat] = Field(description="every candidate but the baseline")
    baseline_spread: float = Field(ge=0, description="(p90 - p10) / median of the baseline's round medians")
    notes: list[str] = Field(default_factory=list)

    @property
    def converged(self) -> bool:
        return all(r.converged for r in self.ratios.values())


class TimingRun(BaseModel):
    """A run of confident timing: its options, each setting, and one summary of the machine's noise."""

    model_config = ConfigDict(extra="forbid")

    baseline: str
    options: dict[str, Any]
    settings: list[SettingTiming]
    ratios_total: int = Field(ge=0)
    ratios_not_converged: int = Field(ge=0)
    baseline_spread: float = Field(ge=0, description="the widest setting's baseline spread")
    verdict: str
    notes: list[str] = Field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return self.ratios_not_converged == 0

    def latency_of(self, name: str) -> list[LatencyStat]:
        """``name``'s timing at every setting, in run order."""
        return [s.latency[name] for s in self.settings]

    def speedups_of(self, name: str) -> list[RatioStat]:
        """``name``'s speed-ups at every setting (empty for the baseline)."""
        return [s.ratios[name] for s in self.settings if name in s.ratios]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimingRun:
        """Rebuild from :meth:`to_dict`'s output (errors as :meth:`RatioStat.from_dict`)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise TorchSlimError(f"Not a valid TimingRun: {exc}") from None


class MeasureRecord(BaseModel):
    """Everything measured about one model (or deployed artifact) on one runtime.

    ``accuracy`` is top-1 in percent over ``test_samples`` samples, ``loss`` the mean cross-entropy
    over them; ``macs`` is per sample; ``bytes`` the size on disk of the saved artifact.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    runtime: str = "torch-eager"
    parameters: int = Field(ge=0)
    macs: int = Field(ge=0)
    bytes: int = Field(ge=0)
    accuracy: float | None = None
    test_samples: int | None = None
    loss: float | None = None
    latency: list[LatencyStat] = Field(default_factory=list)
    speedups: list[RatioStat] = Field(default_factory=list, description="against the run's baseline")
    notes: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (floats, ints, strings, lists)."""
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureRecord:
        """Rebuild a record from :meth:`to_dict`'s output.

        Raises:
            TorchSlimError: a missing or mistyped field, or a key no record has (each named).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise TorchSlimError(f"Not a valid MeasureRecord: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> MeasureRecord:
        """Rebuild a record from :meth:`to_json`'s output (errors as :meth:`from_dict`)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise TorchSlimError(f"Not a valid MeasureRecord JSON: {exc}") from None

    def latency_for(self, batch_size: int, threads: int) -> LatencyStat | None:
        """The timing at (``batch_size``, ``threads``), or None when it was not measured."""
        return next((s for s in self.latency if s.key == (batch_size, threads)), None)

    def spread_warning(self) -> list[str]:
        """One note per timing whose p90/p10 exceeds :data:`SPREAD_LIMIT` (a busy machine)."""
        return [
            f"{self.name}: batch {s.batch_size}, {s.threads} thread(s): p90/p10 = {s.spread:.2f} "
            f"(p10 {s.p10_ms:.3g} ms, p90 {s.p90_ms:.3g} ms) > {SPREAD_LIMIT}: the machine was busy "
            "while timing; do not trust this median."
            for s in self.latency if s.spread > SPREAD_LIMIT
        ]
