"""Facts read from an ONNX graph: its input, weight count, MACs and the arithmetic it runs.

MACs are counted from the graph itself, not from a torch model, so an ``.onnx`` from anywhere is
measured: the batch dimension is fixed to 1, ONNX shape inference runs over a copy whose weights
are replaced by typed inputs (no weight data is copied), and every Conv, ConvTranspose, Gemm and
MatMul — float or integer (ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul, QGemm) — adds
output elements x reduction length. Element-wise work is not counted, as in
``torchslim.measure.count_macs``, so an exported model counts the same MACs as its torch source.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from torchslim.core.errors import CorruptFileError, TorchSlimError

# op type -> (input index of the data, input index of the weight)
CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "ConvTranspose": (0, 1)}
MATMUL_OPS = {"Gemm": 0, "MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "QGemm": 0,
              "FusedMatMul": 0, "DynamicQuantizeMatMul": 0, "MatMulIntegerToFloat": 0}
# op type -> input positions that hold quantization scales and zero points, not weights
QPARAM_INPUTS = {"QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "MatMulInteger": {2, 3},
                 "ConvInteger": {2, 3}, "QLinearConv": {1, 2, 4, 5, 6, 7}, "QLinearMatMul": {1, 2, 4, 5, 6, 7},
                 "QGemm": {1, 2, 4, 5, 7, 8}, "QLinearAdd": {1, 2, 4, 5, 6, 7}}


def read_model(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a missing, damaged or invalid one is a clear error.

    Raises:
        TorchSlimError: no file at ``path``.
        CorruptFileError: the file does not parse as ONNX or fails the ONNX checker.
    """
    path = Path(path)
    if not path.is_file():
        raise TorchSlimError(f"No ONNX file at {path}.")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, OSError) as exc:
        raise CorruptFileError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]}): the file "
            "is damaged, truncated or not ONNX. Export or quantize the model again.") from None
    if not model.graph.node:
        raise CorruptFileError(f"{path} parses as ONNX but holds no graph nodes: the file is damaged or not ONNX.")
    return model


def graph_input(model: onnx.ModelProto) -> tuple[str, list[int | str]]:
    """``(name, shape)`` of the one graph input (dimension names for symbolic dimensions).

    Raises:
        TorchSlimError: the graph has several inputs (a runtime here feeds exactly one tensor).
    """
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise TorchSlimError(f"The ONNX graph has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                             "torchslim runs graphs with exactly one input tensor.")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _qparam_initializers(model: onnx.ModelProto) -> set[str]:
    """Initializers that every consumer reads as a scale or zero point."""
    uses: dict[str, list[bool]] = {}
    for node in model.graph.node:
        positions = QPARAM_INPUTS.get(node.op_type, set())
        for i, name in enumerate(node.input):
            uses.setdefault(name, []).append(i in positions)
    return {name for name, flags in uses.items() if all(flags)}


def parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the weight and bias initializers: not int64 shape constants, not quantization
    scales and zero points (inputs of Q/DQ and integer ops at those positions, or named
    ``*_scale`` / ``*_zero_point`` as ONNX Runtime's quantizers name them). After export a
    BatchNorm is folded into its conv (one bias per channel instead of BatchNorm's scale and
    shift), so this can be lower than the torch count."""
    skip = _qparam_initializers(model)
    return sum(math.prod(init.dims) for init in model.graph.initializer
               if init.name not in skip and init.data_type != TensorProto.INT64
               and not init.name.endswith(("_scale", "_zero_point")))


def _skeleton(model: onnx.ModelProto, input_shape: list[int]) -> onnx.ModelProto:
    """The graph with the input fixed to ``input_shape`` and weights as typed inputs (no data)."""
    name, _ = graph_input(model)
    graph = model.graph
    inputs = [helper.make_tensor_value_info(name, graph.input[[i.name for i in graph.input].index(name)]
                                            .type.tensor_type.elem_type, input_shape)]
    kept = [init for init in graph.initializer if init.data_type == TensorProto.INT64]  # shapes, axes
    inputs += [helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
               for init in graph.initializer if init.data_type != TensorProto.INT64]
    skeleton = helper.make_graph(list(graph.node), "skeleton", inputs, list(graph.output), kept)
    return helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int | None:
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type in CONV_OPS:
        data_at, weight_at = CONV_OPS[node.op_type]
        weight = shapes.get(node.input[weight_at])
        if node.op_type == "ConvTranspose":  # every input element meets (C_out / groups) x kernel
            data = shapes.get(node.input[data_at])
            return math.prod(data) * math.prod(weight[1:]) if data and weight else None
        return math.prod(out) * math.prod(weight[1:]) if out and weight else None
    data = shapes.get(node.input[MATMUL_OPS[node.op_type]])
    if out is None or data is None:
        return None
    trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
    k = data[0] if trans_a and node.op_type in ("Gemm", "QGemm") else data[-1]
    return math.prod(out) * k


def graph_macs(model: onnx.ModelProto, input_shape: list[int]) -> tuple[int, list[str]]:
    """``(MACs per sample, names of nodes whose shapes could not be inferred)``.

    ``input_shape`` is one sample's shape (without the batch dimension).
    """
    shapes = _shapes(_skeleton(model, [1, *input_shape]))
    total, unknown = 0, []
    for node in model.graph.node:
        if node.op_type in CONV_OPS or node.op_type in MATMUL_OPS:
            macs = _node_macs(node, shapes)
            if macs is None:
                unknown.append(node.name or node.op_type)
            else:
                total += macs
    return total, unknown


def kernel_of(model: onnx.ModelProto) -> str:
    """The arithmetic the graph asks for: "FP32", "INT8 QDQ U8S8 per-channel", "INT8 dynamic U8S8", ...

    Activations are the type of the QuantizeLinear zero points; weights the type of the
    DequantizeLinear inputs that are initializers (or of the integer ops' weight inputs).
    """
    types = {init.name: init.data_type for init in model.graph.initializer}
    sizes = {init.name: math.prod(init.dims) for init in model.graph.initializer}
    nodes = model.graph.node
    ops = {n.op_type for n in nodes}
    letter = {TensorProto.UINT8: "U8", TensorProto.INT8: "S8"}
    if "QuantizeLinear" in ops and "DequantizeLinear" in ops:
        acts = {letter.get(types.get(n.input[2]), "?") for n in nodes
                if n.op_type == "QuantizeLinear" and len(n.input) > 2}
        weights = [n for n in nodes if n.op_type == "DequantizeLinear" and types.get(n.input[0]) in letter]
        per_channel = any(sizes.get(n.input[1], 1) > 1 for n in weights)
        w = "/".join(sorted({letter[types[n.input[0]]] for n in weights})) or "FP"
        return f"INT8 QDQ {'/'.join(sorted(acts)) or '?'}{w}" + (" per-channel" if per_channel else " per-tensor")
    integer_ops = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")
    if ops & {*integer_ops, "DynamicQuantizeLinear"}:
        weights = {letter.get(types.get(n.input[1])) for n in nodes if n.op_type in integer_ops}
        per_channel = any(sizes.get(n.input[3], 1) > 1 for n in nodes
                          if n.op_type == "MatMulInteger" and len(n.input) > 3)
        return ("INT8 dynamic U8" + "/".join(sorted(w for w in weights if w))
                + (" per-channel" if per_channel else ""))
    if ops & {"QLinearConv", "QLinearMatMul", "QGemm"}:
        return "INT8 QOperator"
    names = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16"}
    floats = {names[t] for t in types.values() if t in names}
    return "/".join(sorted(floats)) or "FP32"
