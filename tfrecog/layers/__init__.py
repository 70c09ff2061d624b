"""Shared building blocks: MLPs and, for the autoregressive families, masked dense layers."""

from tfrecog.layers.mlp import MLP

__all__ = ["MLP"]
from tfrecog.layers.gaussian import (  # noqa: E402
    GaussianHead,
    LinearOperatorRankOnePrecisionSqrt,
    MultivariateNormalRankOnePrecision,
)

__all__ += ["GaussianHead", "LinearOperatorRankOnePrecisionSqrt", "MultivariateNormalRankOnePrecision"]
from tfrecog.layers.masked import MaskedDense  # noqa: E402

__all__ += ["MaskedDense"]
