"""Which INT8 operand types to ask for, from what the CPU runs fast.

ONNX Runtime's CPU GEMM kernels (MLAS) multiply 8-bit activations by 8-bit weights. On x86 the
fast paths multiply **unsigned** activations by **signed** weights (U8S8): ``vpmaddubsw`` on AVX2
and ``vpdpbusd`` on AVX512-VNNI / AVX-VNNI both take u8 x s8, so signed activations (S8S8) need
extra work. Measured here (Xeon with AVX512-VNNI, ONNX Runtime 1.32, the shipped resnet20 at batch
64, one thread): S8S8 QDQ ran 3x slower than U8S8 — slower even than FP32. The rule:

* **x86**: U8S8, always. Without VNNI, weights are also reduced to 7 bits (``reduce_range``), as
  ONNX Runtime's guide advises, because ``vpmaddubsw`` adds pairs of u8 x s8 products into int16,
  which saturates with full 8-bit weights. With VNNI (``avx512_vnni``, ``avx_vnni``) or AMX
  (``amx_int8``) products accumulate in int32 and full 8-bit weights are used. Asking for S8S8 is
  allowed, with a :class:`SlowKernelWarning` naming the reason.
* **ARM** (aarch64): S8S8 — the dot-product instructions (``sdot``, ``asimddp``; ``i8mm``) are
  signed x signed, and ONNX Runtime's guide recommends S8S8 there. U8S8 also runs.
* anything else: U8S8, the format with the widest kernel coverage.

The choice and the reason are recorded in the artifact's sidecar.
"""

from __future__ import annotations

import dataclasses
import platform
import warnings
from typing import Any

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean
from torchslim.measure.system import CPU_FLAGS, cpuinfo

CHOICES = ("auto", "u8s8", "s8s8")
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")
ARM = ("aarch64", "arm64", "armv8l")


class SlowKernelWarning(UserWarning):
    """The requested INT8 operand types have no fast kernel on this CPU."""


@dataclasses.dataclass(frozen=True)
class Operands:
    """Activation and weight types of an INT8 model and why they were chosen."""

    activation: str  # "uint8" or "int8"
    weight: str  # "int8"
    reduce_range: bool  # weights in 7 bits
    reason: str
    requested: str
    cpu: dict[str, Any]

    @property
    def label(self) -> str:
        return {"uint8": "U8", "int8": "S8"}[self.activation] + "S8"

    def to_dict(self) -> dict[str, Any]:
        return {"operands": self.label, **dataclasses.asdict(self)}


def _cpu() -> dict[str, Any]:
    model, flags = cpuinfo()
    machine = platform.machine().lower()
    family = "x86" if machine in X86 else "arm" if machine in ARM else machine or "unknown"
    return {"model": model, "arch": family, "machine": machine, "flags": [f for f in CPU_FLAGS if f in flags],
            "all_flags": flags}


def choose(requested: str = "auto", cpu: dict[str, Any] | None = None) -> Operands:
    """The operand types for this CPU (or ``cpu``: ``{"arch": "x86"|"arm"|..., "flags": [...]}``).

    Args:
        requested: "auto" (the rule in the module docstring), "u8s8" or "s8s8".

    Raises:
        TorchSlimError: an unknown choice.
    Warns:
        SlowKernelWarning: S8S8 asked for on x86.
    """
    if requested not in CHOICES:
        raise TorchSlimError(f"Unknown INT8 operand types {requested!r}.{did_you_mean(requested, CHOICES)} "
                             f"Valid: {', '.join(CHOICES)}.")
    cpu = dict(cpu or _cpu())
    flags = set(cpu.pop("all_flags", None) or cpu.get("flags", []))
    arch = cpu.get("arch")
    vnni = sorted(flags & set(VNNI))
    reduce_range = arch == "x86" and not vnni
    s8s8_reason = None
    if arch == "x86":
        dot = f"VNNI ({', '.join(vnni)}: vpdpbusd, u8 x s8)" if vnni else "no VNNI (AVX2 vpmaddubsw, u8 x s8)"
        u8s8_reason = (f"x86 with {dot}: ONNX Runtime's fast INT8 kernels take unsigned activations and "
                       "signed weights" + ("" if vnni else "; weights in 7 bits (reduce_range) so the "
                                           "int16 pair sums of vpmaddubsw cannot saturate"))
        s8s8_reason = (f"S8S8 on x86 with {dot} has no fast ONNX Runtime kernel: signed activations "
                       "need extra work (measured 3x slower than U8S8, and slower than FP32, on an "
                       "AVX512-VNNI Xeon with ONNX Runtime 1.32)")
        auto = "u8s8"
    elif arch == "arm":
        u8s8_reason = "ARM: U8S8 runs, though the dot-product instructions are signed x signed"
        auto = "s8s8"
    else:
        u8s8_reason = f"{arch}: U8S8, the operand types with the widest ONNX Runtime kernel coverage"
        auto = "u8s8"
    chosen = auto if requested == "auto" else requested
    if chosen == "s8s8":
        reason = s8s8_reason or ("ARM: sdot/i8mm dot products are signed x signed; ONNX Runtime's guide "
                                 "recommends S8S8" if arch == "arm" else f"{arch}: S8S8 as asked")
        if s8s8_reason:
            warnings.warn(f"INT8 operands S8S8 were asked for, but {s8s8_reason}. U8S8 (operands='auto') "
                          "is the fast choice on this CPU.", SlowKernelWarning, stacklevel=3)
            reason = f"asked for; slow here: {s8s8_reason}"
    else:
        reason = u8s8_reason if requested == "auto" or arch == "x86" else f"asked for; {u8s8_reason}"
    return Operands(activation="uint8" if chosen == "u8s8" else "int8", weight="int8",
                    reduce_range=reduce_range, reason=reason, requested=requested, cpu=cpu)
