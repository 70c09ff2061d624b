"""The time of one VIMCO update (K = 50, SBN 200-200-200, minibatch 100, as in Mnih & Rezende 2016) through
tfrecog's fused `fit`, against the same update written the way JAX users write it, timed in one interleaved run.

Usage: python -m bench.vimco_speed [--samples 50] [--examples 1000] [--windows 3] [--window-seconds 20]
Writes bench/vimco_speed.json and prints one line per candidate (seconds per update, median [min-max]).
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial

from .common import BATCH_SIZE, EVENT_SIZE, LEARNING_RATE, REPO, SBN_LAYERS, Candidate, binary_data, interleaved
from .common import machine_info as describe_machine


def tfrecog_candidate(x, samples: int):
    """`SBN(estimator='vimco', num_samples=K)`, `compile()` (XLA, fused steps), one unit = `fit(x, epochs=1)`."""
    from tfrecog._tf import keras
    from tfrecog.models import SBN

    model = SBN(EVENT_SIZE, SBN_LAYERS, estimator="vimco", num_samples=samples, seed=0)
    steps = len(x) // BATCH_SIZE
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), steps_per_execution=steps)

    def run(epochs):
        model.fit(x, batch_size=BATCH_SIZE, epochs=int(epochs), verbose=0, shuffle=True)

    return Candidate("tfrecog", run, len(x), f"SBN(estimator='vimco', num_samples={samples}).fit, "
                     f"jit_compile=True, steps_per_execution={steps}")


def jax_candidate(x_numpy, samples: int):
    """VIMCO in the JAX reference style (bench/ref_jax.py): pytree parameters, a pure surrogate loss, optax Adam,
    one `jax.jit` epoch that `lax.scan`s the updates over its minibatches; the first recognition layer computed once
    per example rather than once per sample."""
    import jax
    import jax.numpy as jnp
    import optax

    from .ref_jax import bernoulli_log_prob, dense, sbn_init, sbn_log_joint_terms

    def sample_posterior(params, x, key):
        """h ~ q(h | x), K samples per example; the first layer's logits are computed once per example and shared
        by its K samples (x is the same for all of them), as tfrecog does."""
        context, h, log_q = x, [], []
        for i, (layer, k) in enumerate(zip(params["recognition"], jax.random.split(key, len(params["recognition"])))):
            logits = dense(layer, context)
            if i == 0:
                logits = jnp.broadcast_to(logits, (samples, *logits.shape))
            sample = jax.lax.stop_gradient((jax.random.uniform(k, logits.shape) < jax.nn.sigmoid(logits))
                                           .astype(jnp.float32))
            h.append(sample)
            log_q.append(bernoulli_log_prob(logits, sample))
            context = sample
        return h, log_q

    def vimco_loss(params, x, key):
        h, log_q = sample_posterior(params, x, key)
        log_q = sum(log_q)  # [K, B]
        log_w = sum(sbn_log_joint_terms(params, x, h)) - log_q
        bound = jax.nn.logsumexp(log_w, axis=0) - math.log(samples)
        # leave-one-out bounds with the geometric mean of the others in place of sample k
        geometric = (jnp.sum(log_w, 0, keepdims=True) - log_w) / (samples - 1)
        eye = jnp.eye(samples)[:, :, None]
        table = eye * geometric[:, None, :] + (1 - eye) * log_w[None]
        loo = jax.nn.logsumexp(table, axis=1) - math.log(samples)
        signal = jax.lax.stop_gradient(bound[None] - loo)
        return -jnp.mean(bound + jnp.sum(signal * log_q, 0))

    params = sbn_init(jax.random.PRNGKey(0))
    params.pop("baseline")  # VIMCO has no baseline network
    optimizer = optax.adam(LEARNING_RATE)
    num_examples = len(x_numpy)
    steps = num_examples // BATCH_SIZE

    def update(carry, inputs):
        params, opt_state = carry
        batch, key = inputs
        loss, grads = jax.value_and_grad(vimco_loss)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @partial(jax.jit, donate_argnums=(0, 1))
    def epoch(params, opt_state, x, key):
        order_key, step_key = jax.random.split(key)
        batches = x[jax.random.permutation(order_key, num_examples)[: steps * BATCH_SIZE]]
        batches = batches.reshape(steps, BATCH_SIZE, EVENT_SIZE)
        (params, opt_state), losses = jax.lax.scan(update, (params, opt_state),
                                                   (batches, jax.random.split(step_key, steps)))
        return params, opt_state, jnp.mean(losses)

    state = {"params": params, "opt": optimizer.init(params), "key": jax.random.PRNGKey(1)}
    x = jnp.asarray(x_numpy)

    def run(epochs):
        for _ in range(int(epochs)):
            state["key"], key = jax.random.split(state["key"])
            state["params"], state["opt"], loss = epoch(state["params"], state["opt"], x, key)
        loss.block_until_ready()

    return Candidate("jax.jit", run, num_examples, "jax.jit(epoch) with lax.scan over minibatches, optax.adam")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--examples", type=int, default=1000, help="examples per timed unit (one epoch)")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(REPO / "bench" / "vimco_speed.json"))
    args = parser.parse_args()
    x = binary_data(args.examples)
    started = time.time()
    machine = describe_machine()
    candidates = [tfrecog_candidate(x, args.samples), jax_candidate(x, args.samples)]
    timings, failed = interleaved(candidates, args.windows, args.window_seconds)
    result = {
        "command": "python -m bench.vimco_speed " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "workload": f"VIMCO update, SBN 784-{'-'.join(map(str, SBN_LAYERS))}, K={args.samples}, minibatch "
                    f"{BATCH_SIZE}, Adam({LEARNING_RATE}); random binary data (13% on)",
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "examples_per_second": timings,
        # per update = minibatch / (examples/s): the fastest window gives the shortest time
        "seconds_per_update": {name: {"median": BATCH_SIZE / row["median"], "min": BATCH_SIZE / row["max"],
                                      "max": BATCH_SIZE / row["min"]} for name, row in timings.items()},
        "failed": {name: fail.error for name, fail in failed.items()},
        "notes": {c.name: c.note for c in candidates},
    }
    from tfrecog.io import write_json

    write_json(args.out, result)
    reference = result["seconds_per_update"].get("jax.jit", {}).get("median")
    for name, row in result["seconds_per_update"].items():
        ratio = f"  ({reference / row['median']:.2f}x jax.jit's speed)" if reference else ""
        print(f"VIMCO K={args.samples} update, {name}: {row['median'] * 1e3:.0f} ms "
              f"[{row['min'] * 1e3:.0f}-{row['max'] * 1e3:.0f}]{ratio}")
    for name, error in result["failed"].items():
        print(f"{name}: FAILED {error}")


if __name__ == "__main__":
    main()
