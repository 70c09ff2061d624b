"""Shared building blocks: MLPs and, for the autoregressive families, masked dense layers."""

from tfrecog.layers.mlp import MLP

__all__ = ["MLP"]
