"""Graph rewrites that let ONNX Runtime's quantizer reach more layers.

``torch.onnx`` exports ``nn.Linear`` on a 2-D input as ``Gemm``, which ONNX Runtime's dynamic
quantizer does not handle (its integer ops are MatMul, Conv, Attention, LSTM, Gather): an MLP
would stay FP32. ``gemm_to_matmul`` turns each such Gemm into ``MatMul`` (+ ``Add`` for the
bias), the same arithmetic.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite in place every ``Gemm`` with its own constant B, alpha = beta = 1 and no transA; returns
    how many were rewritten. Node metadata (the torch module path) is kept."""
    inits = {init.name: init for init in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    rewritten, nodes = 0, []
    for node in model.graph.node:
        plain = (_attr(node, "alpha", 1.0) == 1.0 and _attr(node, "beta", 1.0) == 1.0
                 and not _attr(node, "transA", 0))
        # A weight shared with another node is left alone: transposing it would change that node.
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits or uses[node.input[1]] > 1:
            nodes.append(node)
            continue
        weight = inits[node.input[1]]
        if _attr(node, "transB", 0):
            weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), weight.name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "_matmul" if has_bias else node.output[0]
        matmul = helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=node.name)
        matmul.metadata_props.extend(node.metadata_props)
        nodes.append(matmul)
        if has_bias:
            add = helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias")
            add.metadata_props.extend(node.metadata_props)
            nodes.append(add)
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten
