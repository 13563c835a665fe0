"""The model registry: each entry is a factory ``f(num_classes, in_channels, **kwargs) -> nn.Module``."""

from torchslim.core.registry import Registry

MODELS: Registry = Registry("model")
