"""Result objects of the log-likelihood estimators (importance sampling, AIS): plain data, no TensorFlow.

They sit below `tfrecog.evaluate` and `tfrecog.annealing`, which both return them.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class LogLikelihood:
    """Result of `log_likelihood`: means over the data, their standard errors and the per-example values."""

    log_likelihood: float
    stderr: float
    elbo: float
    elbo_stderr: float
    samples: int
    num_examples: int
    per_example: np.ndarray
    per_example_elbo: np.ndarray
    perplexity: float | None = None  # documents only: set by `tfrecog.training.evaluate_run`

    def as_dict(self):
        return {
            "log_likelihood": self.log_likelihood,
            "log_likelihood_stderr": self.stderr,
            "elbo": self.elbo,
            "elbo_stderr": self.elbo_stderr,
            "samples": self.samples,
            "num_examples": self.num_examples,
        }

    def __str__(self):
        text = (
            f"log p(x) ~= {self.log_likelihood:.3f} +- {self.stderr:.3f} (K={self.samples}, n={self.num_examples}); "
            f"ELBO {self.elbo:.3f} +- {self.elbo_stderr:.3f}"
        )
        return text if self.perplexity is None else f"{text}; perplexity {self.perplexity:.1f}"

    @classmethod
    def from_examples(cls, values, elbos, samples: int, what: str = "log-likelihood estimate") -> LogLikelihood:
        """Means of the per-example log p(x) estimates and ELBOs [N] with their standard errors sd / sqrt(N) (NaN for
        N = 1); FloatingPointError naming `what` if an estimate is not finite."""
        values, elbos = np.asarray(values, np.float64), np.asarray(elbos, np.float64)
        if not np.isfinite(values).all():
            raise FloatingPointError(f"{what} is not finite; the model or data produce NaN/inf")
        n = len(values)
        err = lambda v: float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
        return cls(float(values.mean()), err(values), float(elbos.mean()), err(elbos), samples, n, values, elbos)
