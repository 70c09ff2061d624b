"""tfrecog.diagnostics: the trace variance of each recognition-gradient estimator against its exact value, computed by
enumerating every latent configuration of a tiny two-layer SBN."""

import itertools

import numpy as np
import pytest

from tfrecog import diagnostics
from tfrecog._tf import tf
from tfrecog.estimators.nvil import learning_signals
from tfrecog.models import SBN, VAE
from tfrecog.models.sbn import latent_configurations

X = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], np.float32)


def tiny_model():
    model = SBN(event_size=5, latent_sizes=[2, 2], recognition_hidden_size=3, baseline_hidden_size=4, seed=1)
    rng = np.random.default_rng(8)
    for v in model.trainable_variables:
        v.assign(rng.normal(scale=1.0, size=v.shape).astype("float32"))
    model.signal_mean.assign([5.0, -4.0])  # far from the mean signal: centring by it changes the variance
    model.signal_variance.assign([4.0, 9.0])  # variance normalisation divides layer 1 by 2 and layer 2 by 3
    return model


def exact_estimates(model, x, flags):
    """The single-sample estimate g(h_1, ..., h_B) = (1/B) sum_b sum_i A_i(x_b, h_b) grad log q(h_b,i | h_b,i-1)
    for every joint configuration of the batch's latents, with its probability prod_b q(h_b | x_b)."""
    h = [t[:, None, :] for t in latent_configurations(model.latent_sizes)]  # C configurations
    variables = model.recognition_variables
    with tf.GradientTape(persistent=True) as tape:
        shape = [2 ** sum(model.latent_sizes), len(x)]
        q_terms = [tf.broadcast_to(t, shape) for t in model.recognition_log_prob_terms(x, h)]  # each [C, B]
        entries = [[[t[c, b] for b in range(shape[1])] for c in range(shape[0])] for t in q_terms]
    jacobians = []  # per layer i: [C, B, P], grad_phi log q(h_i | h_i-1) of every configuration and example
    for term in entries:
        rows = [[tape.gradient(entry, variables) for entry in row] for row in term]
        jacobians.append(np.array([[np.concatenate([np.zeros(v.shape).ravel() if g is None else g.numpy().ravel()
                                                    for g, v in zip(grads, variables, strict=True)])
                                    for grads in row] for row in rows]))
    signals = learning_signals(model.log_joint_terms(x, h), q_terms, local=flags["local_signals"]).numpy()  # [L, C, B]
    advantage = signals.astype(np.float64)
    if flags["input_dependent_baseline"]:
        advantage -= np.transpose(model.baseline_network(x).numpy())[:, None, :]
    if flags["centering"]:
        advantage -= model.signal_mean.numpy()[:, None, None]
    if flags["variance_normalization"]:
        advantage /= np.maximum(1.0, np.sqrt(model.signal_variance.numpy()))[:, None, None]
    per_example = sum(a[:, :, None] * j for a, j in zip(advantage, jacobians, strict=True))  # [C, B, P]
    q = np.exp(np.sum([t.numpy() for t in q_terms], axis=0).astype(np.float64))  # [C, B]
    num_configs, batch = q.shape
    points, probs = [], []
    for config in itertools.product(range(num_configs), repeat=batch):
        points.append(np.mean([per_example[c, b] for b, c in enumerate(config)], axis=0))
        probs.append(np.prod([q[c, b] for b, c in enumerate(config)]))
    return np.array(points), np.array(probs)


def exact_trace_variance(points, probs, repeats):
    """tr Cov[g] and the standard deviation of its estimate from `repeats` draws.

    The estimate sum_j Var_r[g_rj] (ddof=1) is the U-statistic with kernel k(a, b) = |a - b|^2 / 2, whose variance is
    2 / (R (R - 1)) (2 (R - 2) zeta_1 + zeta_2), zeta_1 = Var_a E_b k(a, b), zeta_2 = Var k(a, b) (Hoeffding)."""
    assert abs(probs.sum() - 1) < 1e-6
    mean = probs @ points
    trace = float(probs @ np.sum((points - mean) ** 2, axis=1))
    sq = np.sum(points**2, axis=1)
    kernel = (sq[:, None] + sq[None, :] - 2 * points @ points.T) / 2
    zeta1 = float(probs @ (kernel @ probs - trace) ** 2)
    zeta2 = float(probs @ kernel**2 @ probs - trace**2)
    r = repeats
    return trace, float(np.sqrt(2 / (r * (r - 1)) * (2 * (r - 2) * zeta1 + zeta2)))


def test_trace_variance_of_every_nvil_setting_matches_enumeration():
    """Within 4 standard deviations of the estimate (derived exactly above, not from the draws): a false alarm
    has probability below 1e-4 per setting under the normal approximation of a U-statistic of 400 draws."""
    model, repeats = tiny_model(), 400
    report = diagnostics.nvil_variance_report(model, X, repeats=repeats, jit_compile=False)
    assert [row["estimator"] for row in report["results"]] == list(diagnostics.NVIL_ABLATION)
    exact = {}
    for row in report["results"]:
        flags = diagnostics.ESTIMATORS[row["estimator"]].settings
        exact[row["estimator"]] = trace, sd = exact_trace_variance(*exact_estimates(model, X, flags), repeats)
        assert abs(row["trace_variance"] - trace) < 4 * sd, (row, trace, sd)
        assert row["trace_ratio"] == pytest.approx(row["trace_variance"] / report["results"][0]["trace_variance"])
    assert report["results"][0]["trace_ratio"] == 1.0
    # The check has power: each technique moves the exact variance by more than the two tolerances together, so
    # an estimator that dropped one (or applied it twice) would fail (exact values 44.4, 29.6, 86.8, 20.5).
    values = [exact[name] for name in diagnostics.NVIL_ABLATION]
    for (v_a, sd_a), (v_b, sd_b) in itertools.pairwise(values):
        assert abs(v_a - v_b) > 4 * (sd_a + sd_b), values
    assert "| reinforce | plain REINFORCE" in diagnostics.format_report(report)


def test_estimates_are_reproducible_and_share_seeds():
    model = tiny_model()
    a = diagnostics.gradient_variance(model, X, "nvil", repeats=3, seed=5, jit_compile=False)
    b = diagnostics.gradient_variance(model, X, "nvil", repeats=3, seed=5, jit_compile=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, sum(int(np.prod(v.shape)) for v in model.recognition_variables))


def test_bad_input_is_a_one_line_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="unknown estimator.*expected names from reinforce"):
        diagnostics.nvil_variance_report(model, X, estimators=["vimco-typo"], repeats=2)
    with pytest.raises(ValueError, match="repeats must be >= 2"):
        diagnostics.gradient_variance(model, X, "nvil", repeats=1)
    with pytest.raises(ValueError, match="need an SBN or fDARN.*got VAE"):
        diagnostics.nvil_variance_report(VAE(event_size=5, latent_size=2, hidden_sizes=(3,)), X, repeats=2)


def test_estimators_after_nvil_per_layer_report_and_plot(tmp_path):
    """VIMCO, RWS and DisARM on the same minibatch and weights: the per-layer traces add up to the whole trace, each
    layer's SNR is ||mean g|| / sqrt(trace Cov g) of its block, the time of an estimate is recorded, and the table
    and the plot are written."""
    model = tiny_model()
    names = ["nvil", "vimco", "rws", "disarm"]
    report = diagnostics.nvil_variance_report(model, X, estimators=names, repeats=20, samples=3, jit_compile=False)
    assert [row["estimator"] for row in report["results"]] == names
    assert [row["samples"] for row in report["results"]] == [1, 3, 3, 1]
    for row in report["results"]:
        assert [entry["layer"] for entry in row["layers"]] == ["q_1", "q_2"]
        assert sum(entry["trace_variance"] for entry in row["layers"]) == pytest.approx(row["trace_variance"])
        assert row["seconds_per_estimate"] > 0
    estimates = diagnostics.gradient_variance(model, X, "rws", repeats=20, samples=3, jit_compile=False)
    first = sum(int(np.prod(v.shape)) for v in model.recognition_variables if v.path.startswith("q_1/"))
    block = estimates[:, :first]
    expected = np.linalg.norm(block.mean(axis=0)) / np.sqrt(block.var(axis=0, ddof=1).sum())
    assert report["results"][2]["layers"][0]["snr"] == pytest.approx(expected)
    table = diagnostics.format_report(report)
    assert "SNR q_1 | SNR q_2 | ms per estimate |" in table and "| vimco | VIMCO" in table
    diagnostics.plot_report(report, tmp_path / "variance.png")
    assert (tmp_path / "variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="vimco takes K >= 2"):
        diagnostics.gradient_variance(model, X, "vimco", repeats=2, samples=1)
