"""What every torch twin shares: its layer graph as ``forward`` runs it, the spec's kind of each layer, MAC counts.

The graph comes from ``torch.fx``: tracing ``forward`` records every module call and every function that joins
or reshapes tensors (a residual ``+=``, ``torch.cat``, ``torch.flatten``, ``F.relu``), with the tensors each reads,
so the definition is checked against the spec's graph edge by edge, not only layer by layer.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from zoo._spec import IMAGES

# The spec's kind of each torch layer. A model folder's own module can say its kind with a ``spec_kind``
# class attribute instead of an entry here.
_MODULE_KINDS: dict[type[nn.Module], str] = {
    nn.Conv2d: "conv",
    nn.BatchNorm2d: "bn",
    nn.ReLU: "relu",
    nn.MaxPool2d: "maxpool",
    nn.LocalResponseNorm: "lrn",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "flatten",
    nn.Dropout: "dropout",
    nn.Linear: "dense",
}
# Functions (and tensor methods) that ``forward`` may call between modules, as traced by torch.fx.
_FUNCTION_KINDS = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    torch.cat: "concat", torch.flatten: "flatten", functional.relu: "relu", torch.relu: "relu",
}
_METHOD_KINDS = {"add": "add", "add_": "add", "flatten": "flatten", "relu": "relu", "relu_": "relu"}


class _SpecTracer(torch.fx.Tracer):
    """torch.fx's tracer, which also keeps a module with its own ``spec_kind`` whole instead of tracing into it."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return hasattr(type(module), "spec_kind") or super().is_leaf_module(module, qualified_name)

    def trace_module(self, model: nn.Module) -> torch.fx.GraphModule:
        return torch.fx.GraphModule(model, self.trace(model))


@dataclass(frozen=True)
class TracedLayer:
    """One step of a torch model's ``forward``: a module call (``module`` set) or a function on tensors."""

    path: str  # the module's path in the model, or the traced function's node name
    module: nn.Module | None
    kind: str
    inputs: tuple[str, ...]  # the paths of the layers it reads, IMAGES for the model's input
    output_shape: tuple[int, ...]  # per image, channels-first

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters()) if self.module is not None else 0


def kind_of(module: nn.Module) -> str:
    """The spec's kind for a torch module (``"conv"``, ``"bn"``, ...)."""
    kind = getattr(type(module), "spec_kind", None) or _MODULE_KINDS.get(type(module))
    if kind is None:
        raise ValueError(f"{type(module).__name__} has no spec kind: add it to zoo.torch_common or give it spec_kind")
    return kind


def traced_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[TracedLayer]:
    """The model's layers in the order ``forward`` runs them, each with the layers it reads and its output shape.

    Traced in eval mode on one zero image, so nothing in the model changes (no BatchNorm statistics move);
    the model's own mode is restored after.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    graph_module = _SpecTracer().trace_module(model)
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(
                torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(was_training)

    traced: list[TracedLayer] = []
    calls: Counter[str] = Counter()
    path_of: dict[object, str] = {}
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            path_of[node] = IMAGES
            continue
        if node.op == "output":
            break
        module = None
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            kind, path = kind_of(module), str(node.target)
        elif node.op == "call_function" and node.target in _FUNCTION_KINDS:
            kind, path = _FUNCTION_KINDS[node.target], node.name
        elif node.op == "call_method" and node.target in _METHOD_KINDS:
            kind, path = _METHOD_KINDS[node.target], node.name
        else:
            raise ValueError(f"{type(model).__name__}.forward calls {node.op} {node.target!r}, which is no spec layer")
        # A module called twice (torchvision's blocks reuse one ReLU) is two layers: later calls get a suffix.
        calls[path] += 1
        if calls[path] > 1:
            path = f"{path}#{calls[path]}"
        path_of[node] = path
        inputs = tuple(path_of[source] for source in node.all_input_nodes)
        shape = tuple(node.meta["tensor_meta"].shape[1:])
        traced.append(TracedLayer(path, module, kind, inputs, shape))
    return traced


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward multiply-accumulates per image, counted by ``torch.utils.flop_counter`` (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model(torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_counts(model: nn.Module, spec) -> dict[str, int]:
    """Trainable parameters, kept statistics and forward MACs per image of a built model (zoo's framework table)."""
    return {"params": trainable_params(model), "statistics": statistics(model),
            "macs": count_macs(model, spec.input_shape)}


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def statistics(model: nn.Module) -> int:
    """Values BatchNorm keeps but does not train: the running mean and variance (not its step counter)."""
    return sum(buffer.numel() for name, buffer in model.named_buffers() if name.rsplit(".", 1)[-1] in
               ("running_mean", "running_var"))
