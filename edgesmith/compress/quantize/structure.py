"""What kind of model is this? Read from the exported float ONNX graph, so it holds for every source.

The traits are the ones that decide which quantization pays on a target: transformer blocks (softmax
attention between MatMuls, LayerNorm, GELU), integer (token) inputs, depthwise convolutions, PReLU,
several outputs, and how much of the compute sits in convolutions vs matrix products.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Structure:
    ops: dict[str, int]
    int_inputs: list[str]
    float_inputs: list[str]
    outputs: int
    convs: int = 0
    depthwise: int = 0
    matmuls: int = 0  # MatMul/Gemm with a constant weight (linear layers)
    attention: int = 0  # MatMul activation x activation feeding/fed by a Softmax
    layernorms: int = 0
    prelu: int = 0
    gelu: int = 0
    params: int = 0
    kinds: list[str] = field(default_factory=list)  # transformer / cnn / depthwise / prelu / multi-output / int64-inputs

    @property
    def transformer(self) -> bool:
        return "transformer" in self.kinds

    def describe(self) -> str:
        bits = [f"{self.params / 1e6:.2f} M parameters"]
        if self.transformer:
            bits.append(f"transformer ({self.attention} attention MatMuls, {self.layernorms} LayerNorms, {self.gelu} GELUs)")
        if self.convs:
            bits.append(f"{self.convs} convolutions ({self.depthwise} depthwise)")
        if self.matmuls:
            bits.append(f"{self.matmuls} linear layers")
        if self.prelu:
            bits.append(f"{self.prelu} PReLU")
        if self.int_inputs:
            bits.append(f"integer inputs {', '.join(self.int_inputs)}")
        if self.outputs > 1:
            bits.append(f"{self.outputs} outputs")
        return "; ".join(bits)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.describe()}


def analyse(onnx_path: Path) -> Structure:
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(onnx_path), load_external_data=False)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ops = Counter(n.op_type for n in g.node)
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    ints = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL}
    s = Structure(
        ops=dict(ops),
        int_inputs=[i.name for i in real_inputs if i.type.tensor_type.elem_type in ints],
        float_inputs=[i.name for i in real_inputs if i.type.tensor_type.elem_type not in ints],
        outputs=len(g.output),
    )
    s.params = int(sum(_numel(t) for t in g.initializer))

    def weight_of(name: str) -> Any:
        # through a Transpose/Cast a constant is still a weight
        seen = 0
        while name not in inits and name in producer and producer[name].op_type in ("Transpose", "Cast", "Identity") and seen < 3:
            name, seen = producer[name].input[0], seen + 1
        return inits.get(name)

    for n in g.node:
        if n.op_type == "Conv":
            s.convs += 1
            w = weight_of(n.input[1])
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if w is not None and group > 1 and group == w.dims[0] and w.dims[1] == 1:
                s.depthwise += 1
        elif n.op_type in ("MatMul", "Gemm"):
            if any(weight_of(i) is not None for i in n.input[:2]):
                s.matmuls += 1
            elif _near_softmax(n, producer, consumers):
                s.attention += 1
        elif n.op_type == "PRelu":
            s.prelu += 1
    s.layernorms = ops.get("LayerNormalization", 0) + ops.get("SimplifiedLayerNormalization", 0)
    if not s.layernorms:  # un-fused: ReduceMean -> Sub -> Pow -> ReduceMean -> Sqrt
        s.layernorms = sum(1 for n in g.node if n.op_type == "ReduceMean") // 2
    s.gelu = ops.get("Gelu", 0) + ops.get("FastGelu", 0) + ops.get("Erf", 0)
    kinds = []
    if s.attention and ops.get("Softmax") and s.layernorms:
        kinds.append("transformer")
    if s.convs:
        kinds.append("cnn")
    if s.depthwise:
        kinds.append("depthwise")
    if s.prelu:
        kinds.append("prelu")
    if s.outputs > 1:
        kinds.append("multi-output")
    if s.int_inputs:
        kinds.append("int64-inputs")
    s.kinds = kinds
    return s


def _near_softmax(node: Any, producer: dict, consumers: dict, depth: int = 3) -> bool:
    """An activation x activation MatMul within a few ops of a Softmax (QK^T before it, PV after it)."""
    frontier = [node]
    for _ in range(depth):  # downstream: QK^T -> (Mul/Add) -> Softmax
        frontier = [c for n in frontier for o in n.output for c in consumers.get(o, [])]
        if any(n.op_type == "Softmax" for n in frontier):
            return True
    frontier = [node]
    for _ in range(depth):  # upstream: Softmax -> (Cast) -> PV
        frontier = [producer[i] for n in frontier for i in n.input if i in producer]
        if any(n.op_type == "Softmax" for n in frontier):
            return True
    return False


def _numel(t: Any) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n
