"""Pick graph nodes by the names a user knows: torch module paths (``fc``, ``layer3``) or ONNX
node names. A module path selects every node exported from that module or from inside it."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from torchslim.core.errors import TorchSlimError
from torchslim.core.registry import did_you_mean
from torchslim.export.tidy import module_of


def resolve(model: onnx.ModelProto, names: Sequence[str], what: str = "keep_fp32") -> dict[str, list[str]]:
    """``{name: [node names]}`` for each of ``names``.

    Raises:
        TorchSlimError: a name that matches no node (the closest module path or node name given).
    """
    if isinstance(names, str):
        names = [names]
    found: dict[str, list[str]] = {}
    modules = sorted({m for n in model.graph.node if (m := module_of(n))})
    for name in names:
        hits = [n.name for n in model.graph.node
                if n.name == name or (m := module_of(n)) is not None and (m == name or m.startswith(name + "."))]
        if not hits:
            candidates = modules + [n.name for n in model.graph.node]
            shown = ", ".join(modules[:12]) + (" ..." if len(modules) > 12 else "")
            raise TorchSlimError(
                f"{what}: {name!r} names no module or node of the graph.{did_you_mean(name, candidates)} "
                + (f"Module paths: {shown}." if modules else "This graph records no module paths (it was "
                   "not exported by torchslim): use ONNX node names."))
        found[name] = hits
    return found
