"""INT8 and ONNX export options: static INT8 (:class:`StaticInt8Config`), dynamic INT8
(:class:`DynamicInt8Config`), quantization-aware training (:class:`QATConfig`) and the FP32 ONNX
export (:class:`ExportConfig`).

``torchslim.quantize.static_int8(model, loader, config=...)`` (or keyword arguments that build the
config), the recipe's ``quantize`` step (:class:`QuantizeConfig`: a ``mode`` and the fields of
either method), its ``qat`` step (:class:`QATConfig`) and ``export`` step (:class:`ExportConfig`),
and ``torchslim quantize``'s flags all come from here.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator, model_validator

from torchslim.options.base import Options, OptionsError
from torchslim.options.fit import Schedule

ConfigT = TypeVar("ConfigT", bound=Options)

CalibrationMethod = Literal["minmax", "entropy", "percentile"]
OperandTypes = Literal["auto", "u8s8", "s8s8"]
# ONNX op types ONNX Runtime's dynamic quantizer turns into integer kernels.
DynamicOp = Literal["MatMul", "Conv", "Attention", "LSTM", "Gather"]


class Int8Config(Options):
    """What every INT8 route shares: which layers stay FP32, the weights' grid, the graph's preparation."""

    keep_fp32: list[str] = Field(default_factory=list)
    """Module paths (every node inside) or ONNX node names left in FP32, e.g. fc, layer3."""
    per_channel: bool = True
    """One weight scale per output channel (true) or one per tensor."""
    preprocess_graph: bool = True
    """Run ONNX Runtime's quantization pre-processing (shape inference, graph optimisation) first."""

    @field_validator("keep_fp32", "op_types", mode="before", check_fields=False)
    @classmethod
    def _names_as_a_list(cls, value: Any) -> Any:
        # keep_fp32="fc" and op_types=("MatMul", "Conv") read as lists of names
        return [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) else value


class StaticInt8Config(Int8Config):
    """Static INT8: activation ranges calibrated on real batches; QDQ format for ONNX Runtime."""

    calibration_batches: int = Field(8, gt=0)
    """Batches of the calibration data whose activations set the ranges."""
    calibration_method: CalibrationMethod = "minmax"
    """How a range is read from the calibration activations: minmax, entropy or percentile."""
    percentile: float = Field(99.999, gt=0, le=100)
    """Share of |activation| values the range keeps, with calibration_method percentile."""
    operand_types: OperandTypes = "auto"
    """INT8 operand types: auto (what this CPU runs fast), u8s8 or s8s8."""

    @model_validator(mode="after")
    def _percentile_needs_its_method(self) -> StaticInt8Config:
        if "percentile" in self.model_fields_set and self.calibration_method != "percentile":
            raise ValueError(f"percentile = {self.percentile} is used by calibration_method percentile only, but "
                             f"calibration_method is {self.calibration_method}; set calibration_method: "
                             "percentile or drop percentile")
        return self


class DynamicInt8Config(Int8Config):
    """Dynamic INT8: weights quantized ahead of time, activations per batch at run time (no calibration)."""

    op_types: list[DynamicOp] = Field(default_factory=lambda: ["MatMul"], min_length=1)
    """ONNX op types to quantize: MatMul (every Linear) by default; Conv becomes ConvInteger."""


class QuantizeConfig(StaticInt8Config, DynamicInt8Config):
    """The recipe's ``quantize`` step: static or dynamic INT8, with the options of that mode."""

    mode: Literal["static", "dynamic"] = "static"
    """static (calibrated activation ranges) or dynamic (activations quantized per batch)."""

    @model_validator(mode="after")
    def _options_of_the_mode(self) -> QuantizeConfig:
        other = DynamicInt8Config if self.mode == "static" else StaticInt8Config
        stray = sorted(self.model_fields_set & (set(other.model_fields) - set(Int8Config.model_fields)))
        if stray:
            owner = "dynamic" if self.mode == "static" else "static"
            raise ValueError(f"{', '.join(stray)} applies to mode {owner}, but mode is {self.mode}; drop "
                             f"{'it' if len(stray) == 1 else 'them'} or set mode: {owner}")
        return self

    def method(self) -> StaticInt8Config | DynamicInt8Config:
        """The options of the chosen mode alone."""
        kind = StaticInt8Config if self.mode == "static" else DynamicInt8Config
        return kind.model_validate({k: getattr(self, k) for k in kind.model_fields if k in self.model_fields_set})


class QATConfig(StaticInt8Config):
    """Quantization-aware training: fake-quantized fine-tuning (optionally distilled from a teacher),
    then static INT8 with the activation ranges learned in training."""

    epochs: int = Field(1, gt=0)
    """Fine-tuning epochs with fake-quantized weights and activations."""
    lr: float = Field(0.01, gt=0)
    """Peak learning rate of the fine-tuning (SGD)."""
    schedule: Schedule = "cosine"
    """Learning-rate schedule of the fine-tuning: onecycle, cosine or constant."""
    ranges: Literal["observe", "learn"] = "observe"
    """Activation ranges in training: observe (running min/max) or learn (trained by gradient)."""
    range_momentum: float = Field(0.01, gt=0, le=1)
    """Weight of each batch in the running min/max of observed ranges."""
    teacher: str | None = None
    """Distil from a teacher while training: source (the model before QAT) or a model by name; none: labels only."""
    T: float = Field(4.0, gt=0)
    """Temperature of the KD term (with a teacher)."""
    kd_weight: float = Field(0.9, ge=0, le=1)
    """Weight of the KD term (with a teacher); the cross-entropy with labels gets 1 - kd_weight."""

    @model_validator(mode="after")
    def _kd_needs_a_teacher(self) -> QATConfig:
        kd = sorted({"T", "kd_weight"} & self.model_fields_set)
        if kd and self.teacher is None:
            raise ValueError(f"{', '.join(kd)} {'sets' if len(kd) == 1 else 'set'} the distillation term, but "
                             "teacher is none; set teacher (source, or a model) or drop "
                             f"{'it' if len(kd) == 1 else 'them'}")
        if "range_momentum" in self.model_fields_set and self.ranges != "observe":
            raise ValueError(f"range_momentum = {self.range_momentum} averages observed ranges, but ranges is "
                             f"{self.ranges}; set ranges: observe or drop range_momentum")
        return self

    def losses_text(self) -> str:
        """The training objective in words, as the record and the log say it."""
        if self.teacher is None:
            return "ce"
        return f"{self.kd_weight:g} kd(T={self.T:g}) + {1 - self.kd_weight:g} ce"


class ExportConfig(Options):
    """FP32 ONNX export, checked against the torch model before it is written."""

    opset: int | None = Field(None, gt=0)
    """ONNX opset of the graph; none: the exporter's recommended one."""
    check_batches: int = Field(2, ge=0)
    """Batches of real data the graph is checked on (besides the example input)."""
    atol: float = Field(1e-4, ge=0)
    """Absolute tolerance of the check: max |onnx - torch| <= atol + rtol x max |torch|."""
    rtol: float = Field(1e-3, ge=0)
    """Relative tolerance of the same check."""


def configured(options: type[ConfigT], where: str, config: ConfigT | None, given: dict[str, Any]) -> ConfigT:
    """``config`` with the keyword arguments ``given`` laid over it (the defaults when there is no
    config), validated as one; a bad or unknown option raises :class:`OptionsError` naming ``where``.

    Only the options ``config`` set are carried over, so a check of an option set for another mode
    (``percentile`` without ``calibration_method: percentile``) sees what the user set."""
    if config is not None and not isinstance(config, options):
        raise OptionsError(f"{where}: config must be a {options.__name__}, got {type(config).__name__}.")
    if config is not None and not given:
        return config
    base = config.model_dump(exclude_unset=True) if config is not None else {}
    return options.build(where, {**base, **given})


__all__ = ["DynamicInt8Config", "ExportConfig", "Int8Config", "QATConfig", "QuantizeConfig", "StaticInt8Config",
           "configured"]
