"""`tfrecog.zoo.verify(name, metrics=True)`: a re-estimate of each card's check that can fail.

The check is the mean importance-sampled log p-hat(x) over every s-th test example (s = N // 1000), K=100, seed 0,
with its Monte-Carlo variance; verify draws it again with seed 1 and passes iff |new - card| <= 4 sd, sd the
Monte-Carlo standard deviation of the difference (sqrt of the sum of both variances). See `zoo.verify`.
"""

import json
import re
import shutil

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog import zoo

NAMES = zoo.list()


@pytest.mark.parametrize("name", NAMES)
def test_verify_metrics_reestimates_the_card_check(name, data_dir):
    report = zoo.verify(name, metrics=True, data_dir=data_dir)  # raises ZooError on a mismatch
    assert report.splitlines()[-1].endswith(" ok"), report
    check = zoo.info(name)["metrics"]["check"]
    assert check["samples"] == zoo.CHECK_SAMPLES and check["seed"] == 0 and check["mc_variance"] > 0
    assert "refresh_checks.py" in check["command"] or "publish_zoo.py" in check["command"]


def test_check_subset_spans_the_split():
    stride, indices = zoo.check_indices(10_000)
    assert stride == 10 and len(indices) == 1000 and indices[-1] == 9990
    assert zoo.check_indices(200) == (1, pytest.approx(np.arange(200)))
    stride, indices = zoo.check_indices(7487)
    assert stride == 7 and indices[-1] >= 7487 - 7


def test_split_variance_matches_the_spread_across_seeds():
    """The Monte-Carlo variance of the mean that verify's tolerance rests on, against the seed-to-seed spread of
    the mean itself (10 seeds; the sample standard deviation of 10 values is within a factor [0.5, 1.6] of the truth
    with probability > 0.99 for normal values)."""
    model = lg.model()
    lg.set_exact_posterior(model, mean_shift=0.8, log_scale_shift=-0.3)  # too narrow: heavy-tailed weights
    x = lg.data(300, seed=4)
    runs = [zoo.check_estimate(model, x, samples=10, seed=seed) for seed in range(10)]
    spread = np.std([r[0].mean() for r in runs], ddof=1)
    estimated = np.mean([np.sqrt(r[1].sum()) / len(x) for r in runs])
    assert 0.5 < spread / estimated < 1.6, (spread, estimated)


@pytest.fixture
def private_card(tmp_path, monkeypatch):
    name = "vae-frey"
    card = zoo.info(name)
    (tmp_path / "weights").mkdir()
    shutil.copy(zoo.weights_path(card), tmp_path / "weights" / card["weights"]["file"])
    monkeypatch.setattr(zoo, "zoo_dir", lambda: tmp_path)
    return name, card, tmp_path / f"{name}.json"


def test_a_card_off_by_five_monte_carlo_sd_fails(private_card, data_dir):
    """The re-estimate (seed 1) is deterministic, so a card moved to 5 Monte-Carlo sd of the difference away from it
    must fail and one 3 sd away must pass: the window is the stated z = 4 sd, not wider and not narrower."""
    name, card, path = private_card
    check = card["metrics"]["check"]
    path.write_text(json.dumps(card))
    report = zoo.verify(name, metrics=True, data_dir=data_dir)
    found = re.search(r": (-?[\d.]+) vs card .*Monte-Carlo sd ([\d.]+)", report)
    new, sd = float(found.group(1)), float(found.group(2))  # sd = sqrt(v_card + v_new): v_card is kept below
    for sign in (1, -1):
        for distance, fails in ((5.0, True), (3.0, False)):
            value = new - sign * distance * sd
            altered = {**card, "metrics": {**card["metrics"], "check": {**check, "value": value}}}
            path.write_text(json.dumps(altered))
            if fails:
                with pytest.raises(zoo.ZooError, match="MISMATCH"):
                    zoo.verify(name, metrics=True, data_dir=data_dir)
            else:
                assert zoo.verify(name, metrics=True, data_dir=data_dir).endswith("ok")
