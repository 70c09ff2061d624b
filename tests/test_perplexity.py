"""Document perplexity: exact values on hand-made inputs, and end to end through `evaluate_run` on 20 Newsgroups."""

import math

import numpy as np
import pytest

from tfrecog.evaluate import perplexity


def test_uniform_model_has_perplexity_equal_to_vocabulary_size():
    # A model that draws every word uniformly from V words: log p(doc) = N_d log(1/V), perplexity V exactly.
    vocabulary, lengths = 37, np.array([3, 10, 1, 250])
    log_probs = lengths * math.log(1.0 / vocabulary)
    result = perplexity(log_probs, lengths)
    assert result["perplexity"] == pytest.approx(vocabulary, rel=1e-12)
    assert result["documents"] == 4 and result["empty_documents"] == 0


def test_average_is_over_documents_not_words():
    counts = np.zeros((2, 5))
    counts[0, 0] = 1  # one word, per-word log-prob -1
    counts[1, :] = 20  # 100 words, per-word log-prob -3
    result = perplexity(np.array([-1.0, -300.0]), counts)
    assert result["perplexity"] == pytest.approx(math.exp(2.0))  # mean of (1, 3), not (1 + 300) / 101
    assert result["perplexity_low"] < result["perplexity"] < result["perplexity_high"]


def test_empty_documents_are_left_out_and_counted():
    result = perplexity(np.array([0.0, -4.0]), np.array([0, 2]))
    assert result["perplexity"] == pytest.approx(math.exp(2.0))
    assert result["empty_documents"] == 1


def test_bad_input_names_the_shapes():
    with pytest.raises(ValueError, match="one word count per document"):
        perplexity(np.zeros(3), np.ones(4))
    with pytest.raises(ValueError, match="every document is empty"):
        perplexity(np.zeros(2), np.zeros(2))


def test_evaluate_run_reports_perplexity_for_documents(tmp_path, data_dir):
    from tfrecog import checkpoints, data, io, training

    config = training.default_config("fdarn", "20news", model={"latent_sizes": [8]}, epochs=1)
    assert config["model"]["autoregressive_visible"] is False  # words are exchangeable
    run = tmp_path / "run"
    training.train(config, run, data_dir=data_dir, verbose=0)
    result = training.evaluate_run(run, samples=4, limit=30, data_dir=data_dir, progress=False)
    recorded = io.read_json(run / "metrics.json")["test_K4_n30"]
    assert recorded["perplexity"] == pytest.approx(result.perplexity)
    # With every weight of p and q at zero, p(word | h) = 1/V for every h and q(h | x) = p(h) = Bernoulli(1/2) per
    # unit, so every importance weight p(x, h) / q(h | x) is p(x) = V^-N_d exactly: log p(doc) = -N_d log V and the
    # perplexity of any documents is the vocabulary size V = 1995. The whole path (checkpoint, document lengths,
    # per-document averaging, the exp) must give it to float32 accuracy.
    model, _ = training.load_run(run)
    for v in [*model.generative_variables, *model.recognition_variables]:
        v.assign(np.zeros(v.shape, np.float32))
    previous = checkpoints.latest(run / "checkpoints")
    save = lambda path: model.save_weights(str(path))  # noqa: E731
    checkpoints.publish(run / "checkpoints", previous.state, save, save, previous)  # the run's newest checkpoint
    uniform = training.evaluate_run(run, samples=4, limit=30, data_dir=data_dir, progress=False)
    assert uniform.perplexity == pytest.approx(1995, rel=1e-5)
    lengths = data.load("20news", "test", data_dir=data_dir).x[:30].sum(axis=1)
    np.testing.assert_allclose(uniform.per_example, -lengths * np.log(1995), rtol=1e-5)
    assert result.perplexity < 1995 * 0.9  # one epoch of training beats the uniform model
