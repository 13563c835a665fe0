"""Tidy an exported ONNX graph: each node names the torch module it came from, nothing else.

The exporter annotates every node with debugging metadata (stack traces with local file paths,
FX node text, class hierarchies): about 6% of a small model's file, and private paths in a file
meant to ship. It is replaced by one ``torchslim.module`` entry per node (the module path, e.g.
``layer1.0.conv1``), which is how nodes are selected by name later (keep in FP32, QAT ranges).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

import onnx

MODULE_KEY = "torchslim.module"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
PARAM_SUFFIXES = (".weight", ".bias")


def _owner_of_parameter(name: str, modules: set[str]) -> str | None:
    """``layer1.0.conv1`` for an initializer named ``layer1.0.conv1.weight`` (or ``..._bias``)."""
    for suffix in PARAM_SUFFIXES:
        stem, sep, _ = name.rpartition(suffix)
        if sep and stem in modules:
            return stem
    return None


def _scope_module(node: onnx.NodeProto, modules: set[str]) -> str | None:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            named = [s for s in scopes if s in modules and s]
            return named[-1] if named else None
    return None


def node_module(node: onnx.NodeProto, modules: set[str], initializers: set[str]) -> str | None:
    """The module a node computes: the owner of its weight when it has one (a Conv with BatchNorm
    folded in belongs to the conv, not the BatchNorm), else the innermost module scope."""
    for name in node.input:
        if name in initializers:
            owner = _owner_of_parameter(name, modules)
            if owner is not None:
                return owner
    return _scope_module(node, modules)


def tidy(model: onnx.ModelProto, module_names: Iterable[str]) -> onnx.ModelProto:
    """Replace every node's metadata with its ``torchslim.module`` path; clear doc strings."""
    modules = set(module_names) - {""}
    initializers = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        owner = node_module(node, modules, initializers)
        del node.metadata_props[:]
        node.doc_string = ""
        if owner is not None:
            node.metadata_props.add(key=MODULE_KEY, value=owner)
    model.graph.doc_string = ""
    return model


def module_of(node: onnx.NodeProto) -> str | None:
    """The ``torchslim.module`` of a node, or None (a node of a graph torchslim did not export)."""
    return next((p.value for p in node.metadata_props if p.key == MODULE_KEY), None)
