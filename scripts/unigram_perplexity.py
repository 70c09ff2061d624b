"""Perplexity of the unigram baseline on 20 Newsgroups: every word drawn from the training documents' word
frequencies (add-one smoothed), p(doc) = prod_w p_w^{x_w}; the same per-document average as `tfrecog.evaluate`.

Usage: TFRECOG_DATA_DIR=../shared/data python scripts/unigram_perplexity.py
"""



import numpy as np

from tfrecog import data
from tfrecog.evaluate import perplexity

train = data.load("20news", "train").x
test = data.load("20news", "test").x
counts = train.sum(axis=0) + 1.0
log_p = test @ np.log(counts / counts.sum())
result = perplexity(log_p, test)
print(f"unigram test perplexity {result['perplexity']:.1f} ({result['perplexity_low']:.1f}-"
      f"{result['perplexity_high']:.1f}) over {result['documents']} documents")
