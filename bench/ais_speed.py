"""AIS throughput (chain-steps per second: examples x chains x temperatures / seconds) of tfrecog's batched,
XLA-compiled AIS against a straightforward tfp.mcmc loop that anneals one example at a time, in one run.

    python bench/ais_speed.py --model vae-bmnist --steps 100 --chains 8 --examples 100 --loop-examples 2

Writes bench/ais_speed.json. Both sides use the same model, schedule, HMC (10 leapfrog steps) and step-size
adaptation; the loop compiles one temperature's transition as a tf.function (graph mode, as a user of tfp.mcmc
would write it) and calls it T times per example. Compilation is timed apart (a warm-up run on other examples).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfrecog import annealing, io, training, zoo  # noqa: E402
from tfrecog._tf import tf, tfp  # noqa: E402


def loop_ais(model, x, steps, chains, seed=0, leapfrog_steps=10, step_size=0.2, rate=0.05):
    """AIS for one example [1, D]: a Python loop over temperatures, one tfp.mcmc HMC step each (tf.function)."""
    betas = annealing.sigmoid_schedule(steps).astype(np.float32)

    @tf.function
    def transition(z, beta_prev, beta, step, seed):
        def target(z):
            return model.prior().log_prob(z) + beta * model.observation_log_prob(x, z)

        log_lik = model.observation_log_prob(x, z)
        increment = (beta - beta_prev) * log_lik
        kernel = tfp.mcmc.SimpleStepSizeAdaptation(
            tfp.mcmc.HamiltonianMonteCarlo(target, step_size=step, num_leapfrog_steps=leapfrog_steps),
            num_adaptation_steps=2**30, target_accept_prob=0.65, adaptation_rate=rate)
        z, results = kernel.one_step(z, kernel.bootstrap_results(z), seed=seed)
        return z, increment, results.new_step_size

    z = model.prior().sample([chains, 1], seed=tf.constant([seed, 0]))
    log_w = tf.zeros([chains, 1])
    step = tf.constant(step_size)
    for t in range(1, steps + 1):
        z, increment, step = transition(z, betas[t - 1], betas[t], step, tf.constant([seed, t]))
        log_w += increment
    return log_w


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vae-bmnist")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--loop-examples", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "ais_speed.json"))
    args = parser.parse_args(argv)
    card = zoo.info(args.model)
    model = zoo.load(args.model, compile=False)
    x = training.evaluation_data(card["recipe"], data_dir=args.data_dir)
    warm, timed = x[: args.examples], x[args.examples : 2 * args.examples]
    settings = dict(steps=args.steps, chains=args.chains, batch_size=args.examples)

    t0 = time.perf_counter()
    annealing.ais_log_likelihood(model, warm, **settings)
    batched_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = annealing.ais_log_likelihood(model, timed, **settings)
    batched_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    loop_ais(model, tf.constant(warm[:1]), args.steps, args.chains)
    loop_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop_values = []
    for i in range(args.loop_examples):
        log_w = loop_ais(model, tf.constant(timed[i : i + 1]), args.steps, args.chains, seed=i).numpy()[:, 0]
        loop_values.append(float(np.log(np.mean(np.exp(log_w - log_w.max()))) + log_w.max()))
    loop_seconds = time.perf_counter() - t0

    batched_rate = args.examples * args.chains * args.steps / batched_seconds
    loop_rate = args.loop_examples * args.chains * args.steps / loop_seconds
    result = {
        "model": args.model,
        "steps": args.steps,
        "chains": args.chains,
        "leapfrog_steps": 10,
        "batched": {"examples": args.examples, "seconds": round(batched_seconds, 2),
                    "compile_and_first_run_seconds": round(batched_compile, 2),
                    "chain_steps_per_second": round(batched_rate, 1),
                    "log_likelihood_first_examples": batched.per_example[: args.loop_examples].tolist()},
        "loop_one_example_at_a_time": {"examples": args.loop_examples, "seconds": round(loop_seconds, 2),
                                       "first_example_with_tracing_seconds": round(loop_first, 2),
                                       "chain_steps_per_second": round(loop_rate, 1),
                                       "log_likelihood": loop_values},
        "speedup": round(batched_rate / loop_rate, 1),
        "command": "python bench/ais_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min": round(os.getloadavg()[0], 1)},
    }
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
