"""Tests of tfrecog.annealing (AIS, BDMC, inference gaps) against exact answers: the Gaussian marginal of factor
analysis and enumeration of a tiny SBN's latent states."""

import numpy as np
import pytest

import tfrecog
from tfrecog import annealing, data, evaluate
from tfrecog._tf import keras, tf
from tfrecog.models import DLGM, SBN, InputError
from tfrecog.models import sbn as sbn_module

# One batch shape and one setting for every AIS run of a model, so each compiles once per module.
BATCH, STEPS, CHAINS = 20, 300, 16


def _within_monte_carlo_error(estimate, exact, slack):
    """The mean of estimate - exact over examples is zero within 4 standard errors of that mean (the differences
    are independent across examples, each its own AIS run), plus `slack` for the deterministic bias of
    log-mean-exp over C chains (about -var(log w) / (2 C); var(log w) < 0.3 here, so < 0.01 nats)."""
    d = np.asarray(estimate, np.float64) - np.asarray(exact, np.float64)
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert abs(d.mean()) < 4 * se + slack, (d.mean(), se)
    return d


@pytest.fixture(scope="module")
def factor_analysis():
    """A one-layer linear Gaussian DLGM set to a random factor model (K = 2 latents, D = 8), its exact marginal
    N(b, W W^T + diag(psi)) and 20 examples drawn from it. The rank-one q can represent its Gaussian posterior."""
    x, params = data.factor_analysis(BATCH, observed=8, latent=2, seed=0)
    model = DLGM(event_size=8, latent_sizes=(2,), linear=True, likelihood="gaussian", recognition_hidden_sizes=(),
                 covariance="rank_one", seed=1)
    model.build((None, 8))
    dense = model.observation.dense_layers[0]
    dense.kernel.assign(params["loading"].T.astype(np.float32))
    dense.bias.assign(params["mean"].astype(np.float32))
    scale = np.sqrt(params["noise_variance"]) - model.min_scale
    model.observation_log_scale.assign(np.log(scale).astype(np.float32))
    return model, x


@pytest.fixture(scope="module")
def tiny_sbn():
    """A two-layer SBN (4 + 3 binary latents, 10 pixels) with strong random weights, so the posterior is far from
    the prior, and 20 examples drawn from it."""
    keras.utils.set_random_seed(3)
    model = SBN(event_size=10, latent_sizes=(4, 3), baseline_hidden_size=None)
    rng = np.random.default_rng(0)
    for v in model.generative_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype(np.float32))
    x, _ = model.sample_joint(BATCH, tf.constant([1, 2]))
    return model, x.numpy()


@pytest.fixture(scope="module")
def tiny_fdarn():
    """The fDARN counterpart of `tiny_sbn`: autoregressive connections within both latent layers and within the
    visible layer (masked kernels set to strong random weights too), and 20 examples drawn from it."""
    keras.utils.set_random_seed(4)
    model = SBN(event_size=10, latent_sizes=(4, 3), autoregressive_prior=True, autoregressive_visible=True,
                baseline_hidden_size=None)
    rng = np.random.default_rng(1)
    for v in model.generative_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype(np.float32))
    x, _ = model.sample_joint(BATCH, tf.constant([1, 2]))
    return model, x.numpy()


def test_ais_equals_factor_analysis_marginal(factor_analysis):
    model, x = factor_analysis
    exact = model.marginal().log_prob(x).numpy()
    result = tfrecog.ais_log_likelihood(model, x, steps=STEPS, chains=CHAINS, batch_size=BATCH, seed=0)
    assert isinstance(result, evaluate.AISLogLikelihood)
    assert result.per_example.shape == (BATCH,) and result.samples == CHAINS and result.steps == STEPS
    assert 0.4 < result.acceptance < 0.9  # the step size was adapted towards 0.65
    d = _within_monte_carlo_error(result.per_example, exact, slack=0.02)
    assert np.abs(d).max() < 0.5
    # Jensen: the mean log weight lies below the log-mean-exp for every example.
    assert (result.per_example_elbo <= result.per_example + 1e-9).all()


@pytest.mark.parametrize("which, transition", [("tiny_sbn", "gibbs"), ("tiny_sbn", "metropolis"),
                                               ("tiny_fdarn", "gibbs")])
def test_ais_equals_tiny_sbn_enumeration(which, transition, request):
    model, x = request.getfixturevalue(which)
    exact = sbn_module.exact_log_likelihood(model, x).numpy()
    result = evaluate.ais_log_likelihood(model, x, steps=STEPS, chains=CHAINS, batch_size=BATCH, seed=0,
                                         transition=transition)
    d = _within_monte_carlo_error(result.per_example, exact, slack=0.02)
    assert np.abs(d).max() < 0.5
    # Gibbs: the fraction of the 7 units that changed per sweep; Metropolis: the mean acceptance probability.
    assert 0.0 < result.acceptance < 1.0
    # Plain importance sampling from the prior with as many samples is far off: AIS is doing the work.
    prior_is = annealing.ais_log_likelihood(model, x, steps=1, chains=CHAINS, batch_size=BATCH, seed=0)
    assert np.abs(prior_is.per_example - exact).mean() > 3 * np.abs(d).mean()


@pytest.fixture(scope="module")
def tiny_documents():
    """A one-layer fDARN over word counts (7 autoregressive binary latents, a vocabulary of 8, documents of 3
    words): the categorical observation's child term is a log-softmax, and the sweep has a single layer, whose
    autoregressive weights are strong (scale 3). (In one layer, a sweep that dropped the terms of the later units
    would still be exact at beta = 0, where it is ancestral sampling, but not at beta > 0.)"""
    keras.utils.set_random_seed(5)
    model = SBN(event_size=8, latent_sizes=(7,), likelihood="categorical", document_length=3,
                autoregressive_prior=True, baseline_hidden_size=None)
    rng = np.random.default_rng(2)
    for v in model.generative_variables:
        v.assign(rng.normal(scale=3.0 if "masked/kernel" in v.path else 1.5, size=v.shape).astype(np.float32))
    x, _ = model.sample_joint(BATCH, tf.constant([1, 2]))
    return model, x.numpy()


@pytest.mark.parametrize("which, betas", [("tiny_sbn", [0.0, 0.5, 1.0]), ("tiny_fdarn", [0.0, 0.5, 1.0]),
                                          ("tiny_documents", [0.5, 1.0])])
def test_gibbs_sweeps_reach_the_tempered_distribution(which, betas, request):
    """From the all-zeros state, 100 sweeps at a fixed beta, N = 10,000 independent chains: the final states are
    draws from f_beta / Z_beta over all 2^7 latent states (computed by enumeration), for beta 0, 1/2, 1.

    Pearson's chi-square over the states whose expected count N p_s is at least 5 (the others pooled into one
    cell, with the next least likely until it expects 5; Cochran's rule) is approximately chi-square distributed
    with (number of cells - 1) degrees of freedom for N independent draws from p; a correct, converged sweep
    fails the bound P(X^2 > x) < 1e-4 with probability 1e-4 per beta.
    30 sweeps were too few for the documents' strongly autoregressive layer at beta = 1 (P = 1e-7 from the
    all-zeros start; 0.64 after 100 sweeps): the test checks convergence as well as invariance."""
    from scipy.stats import chi2

    model, x = request.getfixturevalue(which)
    x = tf.constant(x[:1])
    chains, sweeps = 10000, 100

    @tf.function
    def final_states(beta):
        kernel = annealing.GibbsSweep(model, x, beta)
        h = [tf.zeros([chains, 1, size]) for size in model.latent_sizes]
        results = kernel.bootstrap_results(h)
        for i in tf.range(sweeps):
            h, results = kernel.one_step(h, results, seed=tf.stack([7, i]))
        return tf.concat(h, axis=-1)[:, 0, :], results.target_log_prob

    configurations = sbn_module.latent_configurations(model.latent_sizes)
    terms = model.log_joint_terms(x, [c[:, None, :] for c in configurations])
    states = 2 ** sum(model.latent_sizes)
    for beta in betas:
        bits, target = final_states(tf.constant(beta))
        codes = (bits.numpy() @ 2 ** np.arange(bits.shape[-1])).astype(int)  # latent_configurations' order
        observed = np.bincount(codes, minlength=states).astype(np.float64)
        log_f = (tf.add_n(terms[1:]) + beta * terms[0])[:, 0].numpy().astype(np.float64)
        expected = np.exp(log_f - log_f.max())
        expected *= chains / expected.sum()
        order = np.argsort(expected)  # pool the least likely states, and more until the pool expects >= 5
        pool = int(np.sum(expected < 5))
        while 0 < pool < states and expected[order[:pool]].sum() < 5:
            pool += 1
        cells_expected = np.append(expected[order[pool:]], expected[order[:pool]].sum())
        cells_observed = np.append(observed[order[pool:]], observed[order[:pool]].sum())
        if pool == 0:
            cells_expected, cells_observed = cells_expected[:-1], cells_observed[:-1]
        statistic = np.sum((cells_observed - cells_expected) ** 2 / cells_expected)
        assert chi2.sf(statistic, len(cells_expected) - 1) > 1e-4, (beta, statistic, len(cells_expected))
        # The results carry log f_beta of the state they describe (what AIS's weights are made of).
        np.testing.assert_allclose(target.numpy()[:, 0], log_f[codes], rtol=1e-5, atol=1e-4)


def test_gibbs_needs_binary_affine_layers(factor_analysis, tiny_sbn):
    model, x = factor_analysis
    with pytest.raises(ValueError, match="transition must be one of 'gibbs', 'metropolis'"):
        evaluate.ais_log_likelihood(tiny_sbn[0], tiny_sbn[1], steps=2, transition="heat-bath")
    with pytest.raises(ValueError, match="is for binary latents"):
        evaluate.bdmc(model, steps=2, transition="gibbs")
    with pytest.raises(ValueError, match="needs binary latents"):
        annealing.GibbsSweep(model, x, 1.0)


@pytest.mark.parametrize("steps", [STEPS, 10])
@pytest.mark.parametrize("which, transition", [("factor_analysis", None), ("tiny_sbn", "metropolis"),
                                               ("tiny_sbn", "gibbs"), ("tiny_fdarn", "gibbs")])
def test_bdmc_sandwiches_the_exact_value(which, transition, steps, request):
    """With enough temperatures the bounds are tight; with 10 they are loose, but still on either side of the
    exact value (reverse AIS must start from the exact latent of each simulated example for that)."""
    model, _ = request.getfixturevalue(which)
    result = evaluate.bdmc(model, num_examples=BATCH, steps=steps, chains=CHAINS, seed=1, batch_size=BATCH,
                           transition=transition)
    exact = (model.marginal().log_prob(result.data) if which == "factor_analysis"
             else sbn_module.exact_log_likelihood(model, result.data)).numpy().astype(np.float64)
    # Lower bound in expectation: mean(lower - exact) <= 0 up to 4 standard errors of that mean; upper likewise.
    below, above = result.per_example_lower - exact, result.per_example_upper - exact
    assert below.mean() < 4 * below.std(ddof=1) / np.sqrt(BATCH), below.mean()
    assert above.mean() > -4 * above.std(ddof=1) / np.sqrt(BATCH), above.mean()
    assert abs(result.gap - (result.upper - result.lower)) < 1e-9
    if steps == STEPS:  # the gap certifies these AIS settings to a tenth of a nat
        assert abs(result.gap) < 0.1
    assert set(result.as_dict()) >= {"lower", "upper", "gap", "steps", "chains"}


def test_optimised_elbo_reaches_the_factor_analysis_posterior(factor_analysis):
    """The rank-one Gaussian family contains the exact posterior of a 2-latent factor model, where the ELBO equals
    log p(x): the per-example optimum must reach it from the (random) encoder's output. Near the optimum
    log p(x, h) - log q(h) is nearly constant, so the 1,000-sample estimate has negligible noise. With the default
    schedule (step 0.01, two tenfold decays at plateaus of 1e-3, 1e-4, 1e-5 nats per 100 updates, for the mean and
    for every example), 20 seeds of `optimised_elbo` on this batch stopped between 3,200 and 4,100 updates, at most
    0.0004 nats from log p(x) on average and 0.0074 on the worst example. The runs are not bit-reproducible across
    thread schedules, and in some schedules one example of the batch converges far more slowly (a fresh-check run
    stopped one 0.13 nats short, mean 0.0067, and a later one 0.16 short, mean 0.022, every other example within
    0.004; running this test alone, two examples 0.125 and 0.021 short; the rank-one factor of q near a saddle is the
    likely cause, not yet confirmed); hence the bounds: the median example within 0.002 nats (the typical example
    reaches the posterior; the mean is at the mercy of the slow ones), every example within 0.25, and 30,000 updates
    at most (2 of about 10 runs inside the whole file had not stopped within the default 10,000)."""
    model, x = factor_analysis
    exact = model.marginal().log_prob(x).numpy().astype(np.float64)
    gaps = evaluate.inference_gaps(model, x, steps=STEPS, chains=CHAINS, batch_size=BATCH, seed=0,
                                   max_iterations=30000)
    assert gaps.converged, gaps.iterations
    approximation = exact - gaps.optimised_elbo
    assert np.median(np.abs(approximation)) < 2e-3 and np.abs(approximation).max() < 0.25, approximation
    assert (gaps.optimised_elbo < exact + 5e-3).all()  # an ELBO never exceeds log p(x); 5e-3: the re-estimate's noise
    # The encoder is untrained: the whole loss is amortisation, and the AIS-based approximation gap is ~0.
    assert gaps.amortisation_gap.mean() > 1.0
    assert abs(gaps.approximation_gap.mean()) < 0.1
    d = gaps.as_dict()
    total = d["approximation_gap"] + d["amortisation_gap"]
    assert abs(total - (d["log_likelihood"] - d["amortised_elbo"])) < 1e-9


def test_optimised_sbn_posterior_by_enumeration(tiny_sbn):
    """The per-example offsets of the recognition model's logits (`SBN.offset_posterior`): the optimised ELBO (by
    the score-function optimiser) is at most log p(x) and above the amortised ELBO, which is checked against
    enumeration (sum_h q(h|x) log w(h)). Exact checks of the family itself: tests/test_offset_posterior.py."""
    model, x = tiny_sbn
    exact = sbn_module.exact_log_likelihood(model, x).numpy().astype(np.float64)
    exact_elbo = sbn_module.exact_elbo(model, x).numpy().astype(np.float64)
    gaps = evaluate.inference_gaps(model, x, steps=STEPS, chains=CHAINS, batch_size=BATCH, seed=0)
    _within_monte_carlo_error(gaps.amortised_elbo, exact_elbo, slack=0.0)
    assert gaps.optimised_elbo.mean() < exact.mean()
    assert gaps.optimised_elbo.mean() > gaps.amortised_elbo.mean() + 1.0  # the random encoder is far from optimal


def test_chunks_and_resumed_batches_give_the_same_numbers(factor_analysis):
    """Memory: chains run in chunks of rows_per_chunk // batch_size, each from its own seed. Resuming: the batch
    that starts at example 20 gives the same numbers whether run alone (start=20) or after the first batch."""
    model, x = factor_analysis
    x = np.concatenate([x, x[::-1]])
    settings = dict(steps=STEPS, chains=CHAINS, batch_size=BATCH)
    whole = list(annealing.ais_batches(model, x, **settings))
    resumed = list(annealing.ais_batches(model, x[BATCH:], start=BATCH, **settings))
    assert [b[0] for b in whole] == [0, BATCH] and resumed[0][0] == BATCH
    np.testing.assert_allclose(whole[1][1], resumed[0][1], rtol=1e-5)
    # 32 chains in two chunks of 16 (the compiled shape of the other tests): the first chunk is the 16-chain run.
    chunked = annealing.ais_log_likelihood(model, x[:BATCH], steps=STEPS, chains=2 * CHAINS, batch_size=BATCH,
                                           rows_per_chunk=BATCH * CHAINS)
    assert chunked.samples == 2 * CHAINS and np.isfinite(chunked.per_example).all()
    exact = model.marginal().log_prob(x[:BATCH]).numpy()
    _within_monte_carlo_error(chunked.per_example, exact, slack=0.02)


def test_bad_input_is_a_one_line_error(factor_analysis):
    model, x = factor_analysis
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        evaluate.ais_log_likelihood(model, x, steps=0)
    with pytest.raises(ValueError, match="chains must be an integer >= 1"):
        evaluate.bdmc(model, chains=0)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        evaluate.ais_log_likelihood(model, bad, steps=2)
    with pytest.raises(ValueError, match="decays must be a non-negative integer"):
        annealing.optimised_elbo(model, x, decays=-1)

    class NoPrior(keras.Model):
        pass

    with pytest.raises(ValueError, match="prior"):
        evaluate.ais_log_likelihood(NoPrior(), x, steps=2)


@pytest.mark.slow  # trains a run and compiles three AIS runs: ~45 s of CPU
def test_cli_ais_writes_each_batch_and_resumes(tmp_path, capsys):
    """`tfrecog evaluate RUN --method ais`: one JSON line per finished batch; a rerun after an interruption (here:
    the last line removed) recomputes only the missing batch and gives the same summary."""
    import json

    from tfrecog import cli

    run = tmp_path / "run"
    assert cli.main(["train", "vae", "--run", str(run), "--epochs", "1", "--latent-size", "2", "--hidden", "16",
                     "--verbose", "0"]) == 0
    args = ["evaluate", str(run), "--method", "ais", "--steps", "5", "--chains", "2", "--limit", "30",
            "--batch-size", "10"]
    assert cli.main(args) == 0
    assert "AIS log p(x)" in capsys.readouterr().out
    lines = (run / "ais_T5_C2_seed0_n30.jsonl").read_text().splitlines()
    assert [json.loads(line)["start"] for line in lines] == [0, 10, 20]
    summary = json.loads((run / "ais_T5_C2_seed0_n30.json").read_text())
    (run / "ais_T5_C2_seed0_n30.jsonl").write_text("\n".join(lines[:2]) + "\n")
    assert cli.main(args) == 0
    assert (run / "ais_T5_C2_seed0_n30.jsonl").read_text().splitlines()[2] == lines[2]
    assert json.loads((run / "ais_T5_C2_seed0_n30.json").read_text()) == summary
    assert summary["num_examples"] == 30 and summary["steps"] == 5 and summary["chains"] == 2
    assert cli.main(["evaluate", str(run), "--method", "bdmc", "--steps", "5", "--chains", "2", "--limit", "10",
                     "--batch-size", "10"]) == 0
    assert "BDMC" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error: exit status 2
        cli.main(["evaluate", str(run), "--method", "ais", "--steps", "0"])
    assert exit_info.value.code == 2
    assert "steps must be an integer >= 1" in capsys.readouterr().err
    assert cli.main(["evaluate", str(run), "--method", "ais", "--steps", "2", "--transition", "gibbs"]) == 1
    assert "is for binary latents" in capsys.readouterr().err


def test_cli_transition_names_its_choices(capsys):
    from tfrecog import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "run", "--method", "ais", "--transition", "heat-bath"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'heat-bath' (choose from gibbs, metropolis)" in err.replace("'gibbs', 'metropolis'",
                                                                                       "gibbs, metropolis"), err
    assert len(err.splitlines()) == 1, err
