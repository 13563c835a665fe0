"""The checked plan of a ``channels`` call: ratios, what to leave alone, heads, and the model's facts.

Built before torch-pruning runs, so bad input fails at once (the options themselves were checked
by :class:`~torchslim.prune.config.PruneConfig`): a path that does not exist, a model that does not run
on the example input, a layer that would lose every channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.macs import batch_size_of
from torchslim.prune.config import PruneConfig
from torchslim.prune.errors import PruneError
from torchslim.prune.heads import (
    AttentionBlock,
    check_heads_arg,
    find_attention,
    refuse_unknown_heads,
    unresolved,
)
from torchslim.prune.surgery import signature
from torchslim.prune.targets import find_classifier, resolve_ignore, resolve_ratios
from torchslim.prune.trace import run_naming_module


@dataclass
class Plan:
    ratio: float
    head_ratio: float
    iterations: int
    round_to: int | None
    ratio_modules: dict[nn.Module, float]
    ignored: list[nn.Module]
    ignored_labels: list[str]
    classifier: str | None
    attention: list[AttentionBlock]
    num_heads: dict[nn.Module, int]
    base: dict[str, Any]
    widths: dict[str, int]
    output_shape: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)

    def check_every_group_keeps_channels(self, pruner) -> None:
        """Raise when uniform pruning would leave a layer (or an attention module) with nothing.

        torch-pruning keeps ``int(channels * (1 - ratio))`` channels of each group (rounded down to
        ``round_to``) and skips a group that would keep none, silently; here that is an error.
        """
        if pruner.global_pruning:
            return  # the per-layer counts depend on the scores; checked while pruning
        graph = pruner.DG
        for group in graph.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
            heads = [dep.target.module for dep, _ in group
                     if dep.target.module in self.num_heads and graph.is_out_channel_pruning_fn(dep.handler)]
            if heads:
                self._check_heads(heads[0])
                continue
            root = group[0].dep.target.module
            channels = graph.get_out_channels(root) // pruner._get_channel_groups(group)
            ratio = self._ratio_of(group, graph, pruner)
            keep = int(channels * (1 - ratio))
            keep -= keep % self.round_to if self.round_to else 0
            if keep < 1:
                path = graph._module2name.get(root, str(root))
                rounding = f" rounded down to a multiple of round_to={self.round_to}" if self.round_to else ""
                raise PruneError(
                    f"Pruning {ratio:g} of layer {path!r} ({channels} output channels) would remove every "
                    f"channel (it would keep {keep}{rounding}). Lower the ratio for it (ratios={{{path!r}: "
                    f"...}}), lower round_to, or leave it alone with ignore=[{path!r}].")

    def _ratio_of(self, group, graph, pruner) -> float:
        for dep, _ in group:
            module = dep.target.module
            if module in pruner.pruning_ratio_dict and graph.is_out_channel_pruning_fn(dep.handler):
                return pruner.pruning_ratio_dict[module][-1]
        return self.ratio

    def _check_heads(self, projection: nn.Module) -> None:
        block = next(b for b in self.attention if any(projection is m for m in b.qkv.values()))
        if block.heads_kept(self.head_ratio) < 1:
            raise PruneError(
                f"Pruning {self.head_ratio:g} of the {block.heads} head(s) of attention module "
                f"{block.path!r} would remove every head. Lower head_ratio, or leave it alone with "
                f"ignore=[{block.path!r}].")


def make_plan(model: nn.Module, example_input: torch.Tensor, config: PruneConfig,
              ignore_types: Sequence[type] = ()) -> Plan:
    """Check ``config`` against ``model`` and gather what pruning needs to know about it.

    The options' own bounds are the config's; here come the paths (``ignore``, plus module classes
    ``ignore_types``; ``ratios``; ``heads``), then the model runs on ``example_input`` once to
    check the input, once to find the classifier and once to find the attention blocks.
    """
    ratio, ratios, heads, ignore_classifier = config.ratio, config.ratios, config.heads, config.ignore_classifier
    head_ratio = ratio if config.head_ratio is None else config.head_ratio
    ignore = [*config.ignore, *ignore_types]
    ignored, labels = resolve_ignore(model, ignore)
    ratio_modules = resolve_ratios(model, ratios)
    check_heads_arg(model, heads)
    _check_example_input(example_input)
    output_shape = _output_shape(model, example_input)
    classifier = find_classifier(model, example_input) if ignore_classifier else None
    notes = []
    if classifier is not None:
        ignored.append(model.get_submodule(classifier))
        labels.append(f"{classifier} (classifier)")
    elif ignore_classifier:
        notes.append("No classifier layer found: the output layer is protected only by the output-shape check.")
    attention = find_attention(model, example_input, heads)
    refuse_unknown_heads(model, unresolved(attention, ignored))
    # what is left without a count: blocks already ignored, and blocks with no output projection
    # of their own, which _protect_attention leaves alone whole
    attention = [b for b in attention if b.heads is not None or (b.path and not b.out)]
    num_heads = _protect_attention(attention, ignored, labels, notes)
    _refuse_nothing_prunable(model, ignored, labels)
    return Plan(ratio=ratio, head_ratio=head_ratio, iterations=config.iterations, round_to=config.round_to,
                ratio_modules=ratio_modules,
                ignored=ignored, ignored_labels=labels, classifier=classifier, attention=attention,
                num_heads=num_heads, base=signature(model), widths=layer_widths(model),
                output_shape=output_shape, notes=notes)


def _protect_attention(attention: list[AttentionBlock], ignored: list[nn.Module], labels: list[str],
                       notes: list[str]) -> dict[nn.Module, int]:
    """Heads of each attention module go as whole heads; its output projection (which writes the
    residual stream) is left alone, and an attention module whose heads cannot be separated is
    left alone entirely."""
    num_heads: dict[nn.Module, int] = {}
    for block in attention:
        if block.head_prunable:
            num_heads.update({layer: block.heads for layer in block.qkv.values()})
            ignored.extend(block.out.values())
            labels.extend(f"{path} (attention output: residual stream)" for path in block.out)
        else:
            ignored.append(block.module)
            labels.append(f"{block.path} (attention without separate head projections)")
            notes.append(f"{block.path} ({type(block.module).__name__}): heads cannot be pruned as heads "
                         "without changing the residual stream; left alone.")
    return num_heads


def _refuse_nothing_prunable(model: nn.Module, ignored: list[nn.Module], labels: list[str]) -> None:
    """Fail before tracing when every convolution and Linear layer is ignored or protected."""
    left_alone = {id(m) for root in ignored for m in root.modules()}
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    if any(id(m) not in left_alone for m in layers):
        return
    what = f"its {len(layers)} convolution/Linear layer(s) are all left alone: {', '.join(labels)}" if layers \
        else "it has no convolution or Linear layer"
    raise PruneError(f"Nothing to prune in {type(model).__name__}: {what}. Channel pruning removes output channels "
                     "of convolutions and Linear layers; ignore fewer layers, or prune a model that has some.")


def _check_example_input(example_input: Any) -> None:
    try:
        batch_size_of(example_input)
    except TorchSlimError as exc:
        raise PruneError(str(exc)) from None


def _output_shape(model: nn.Module, example_input: torch.Tensor) -> tuple[int, ...] | None:
    """Run the model once (naming the failing module), and check its output is traceable."""
    def run():
        was_training = model.training
        try:
            with torch.no_grad():
                return model.eval()(example_input)
        finally:
            model.train(was_training)

    what = f"Running {type(model).__name__} on example_input of shape {tuple(example_input.shape)}"
    with _LayerInputs(model) as inputs:
        try:
            out = run_naming_module(model, what, run, "Pass an example_input the model accepts (a batch, N x ...).")
        except PruneError as exc:
            raise inputs.mismatch(example_input) or exc from None
    bad = _non_tensor_leaf(out, "output")
    if bad is not None:
        raise PruneError(f"torch-pruning cannot trace {type(model).__name__}: its {bad[0]} is a "
                         f"{type(bad[1]).__name__}, not a tensor. It traces models whose output is a tensor "
                         "(or tuples, lists and dicts of tensors); wrap the model so it returns the logits.")
    return tuple(out.shape) if isinstance(out, torch.Tensor) else None


class _LayerInputs:
    """Input shapes of the convolutions and Linears that started but did not finish: when the
    example input has the wrong channels, the layer that refused it and what it expects."""

    def __init__(self, model: nn.Module) -> None:
        self.running: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
        self._handles = []
        for path, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                self._handles.append(module.register_forward_pre_hook(self._enter(path)))
                self._handles.append(module.register_forward_hook(self._leave(path)))

    def _enter(self, path: str):
        def hook(module: nn.Module, args: Any) -> None:
            if args and isinstance(args[0], torch.Tensor):
                self.running[path] = (module, tuple(args[0].shape))

        return hook

    def _leave(self, path: str):
        def hook(_module: nn.Module, _args: Any, _output: Any) -> None:
            self.running.pop(path, None)  # returning it would replace the layer's output

        return hook

    def mismatch(self, example_input: torch.Tensor) -> PruneError | None:
        if not self.running:
            return None
        path, (layer, shape) = next(reversed(self.running.items()))
        if isinstance(layer, nn.Linear):
            if shape and shape[-1] == layer.in_features:
                return None
            want = f"(..., {layer.in_features}) (in_features={layer.in_features})"
        else:
            rank = len(layer.kernel_size)
            if len(shape) in (rank + 1, rank + 2) and shape[-rank - 1] == layer.in_channels:
                return None
            want = (f"(N, {layer.in_channels}, {', '.join('HWD'[:rank])}) (in_channels={layer.in_channels})")
        return PruneError(f"example_input of shape {tuple(example_input.shape)} does not fit the model: layer "
                          f"{path!r} ({type(layer).__name__}) received an input of shape {shape} but expects "
                          f"{want}. Pass a batch of the model's real input (e.g. next(iter(loader))[0]).")

    def __enter__(self) -> _LayerInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


def _non_tensor_leaf(value: Any, where: str) -> tuple[str, Any] | None:
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, dict):
        items = [(f"{where}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (tuple, list)):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        return where, value
    for path, item in items:
        found = _non_tensor_leaf(item, path)
        if found is not None:
            return found
    return None


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution and linear layer, by path."""
    widths = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            widths[path] = module.out_channels
        elif isinstance(module, nn.Linear):
            widths[path] = module.out_features
    return widths
