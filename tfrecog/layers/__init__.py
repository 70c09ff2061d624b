"""Shared building blocks: MLPs, masked (autoregressive) dense layers, the rank-one Gaussian head."""

from tfrecog.layers.bernoulli import bernoulli_log_prob
from tfrecog.layers.gaussian import (
    GaussianHead,
    LinearOperatorRankOnePrecisionSqrt,
    MultivariateNormalRankOnePrecision,
)
from tfrecog.layers.masked import MaskedDense
from tfrecog.layers.mlp import MLP

__all__ = [
    "MLP",
    "GaussianHead",
    "LinearOperatorRankOnePrecisionSqrt",
    "MaskedDense",
    "MultivariateNormalRankOnePrecision",
    "bernoulli_log_prob",
]
