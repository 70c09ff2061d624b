"""Train a tfrecog SBN or fDARN on a lent GPU, where TensorFlow is not installed, and bring the weights home.
Maintainers' tool.

The `device` tool's machines have JAX but no TensorFlow, and a TensorFlow wheel is larger than what may travel
there. This script trains exactly the model `tfrecog.models.SBN(784, latent_sizes, ...)` defines (the same Bernoulli
layers, masked autoregressive layers of fDARN and of an autoregressive posterior, parameterisation, Glorot-uniform
kernels and zero biases) with the same estimator as tfrecog's (`vimco` with K samples, `nvil` with every technique:
local signals, running centring and variance normalisation, the 100-unit tanh baseline network on its own Adam; or
`wake_sleep`), in JAX; `import` then writes an ordinary tfrecog run folder from its weights (NVIL's running statistics
included), so that `tfrecog evaluate`, `scripts/publish_zoo.py` and `tfrecog train` (to train on) use it like any
other run, and the card says where and how the weights were trained. tests/test_progress.py checks the densities
against tfrecog's term by term (where JAX is installed) and the weight names both ways.

  python scripts/gpu_sbn.py pack --data-dir ../shared/data --out .gpu/bmnist.npz        # here (needs tfrecog)
  python3 scripts/gpu_sbn.py train --data .gpu/bmnist.npz --layers 200 200 200 --samples 50 \\
      --lrs 3e-4 1e-3 --seconds 500 --out $OUT [--resume DIR | --init DIR]               # on the device (JAX only)
  python3 scripts/gpu_sbn.py train --estimator nvil --layers 200 --autoregressive-prior \\
      --autoregressive-visible --lrs 3e-4 1e-3 --seconds 500 --out $OUT                  # fDARN 200 with NVIL
  python scripts/gpu_sbn.py import DIR RECIPE RUN_DIR                                   # here: a tfrecog run folder
  python scripts/gpu_sbn.py export RUN_DIR --out .gpu/NAME        # here: a run's best weights for `train --init`

`train` vmaps one replica per learning rate in `--lrs` (the same data order, independent samples), checks the
validation value tfrecog selects by (the K-sample bound for VIMCO, `select_by: iwae_bound`; the single-sample ELBO
for NVIL) every `--eval-every` epochs, keeps each replica's best weights, and writes to the output folder: best.npz
(the best replica's best weights), best_replicas.npz, last.npz (every replica's weights and Adam state, to
`--resume`), history.csv and meta.json. `--init DIR` starts every replica from DIR's best.npz with Adam afresh.
`--epochs N` stops at epoch N (a budget equal to a twin's, as Table 2's comparisons need), or earlier at the time
limit.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from functools import partial
from pathlib import Path

import numpy as np

EVENT_SIZE = 784


# --------------------------------------------------------------------------------------------------------------- pack
def pack(args):
    from tfrecog import data

    arrays = {}
    for split in ("train", "valid"):
        x = data.load("binarized_mnist", split, data_dir=args.data_dir).x
        arrays[split] = np.packbits(np.asarray(x, np.uint8), axis=1)
        arrays[f"{split}_count"] = np.array(len(x))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: train {int(arrays['train_count'])}, valid {int(arrays['valid_count'])} digits")


def unpack(path):
    with np.load(path) as f:
        return {split: np.unpackbits(f[split], axis=1)[:, :EVENT_SIZE].astype(np.float32)
                for split in ("train", "valid")}


# -------------------------------------------------------------------------------------------------------------- model
class Spec(dict):
    """What is trained: layers (bottom first), fDARN's autoregressive prior/visible, an autoregressive posterior,
    the estimator ('vimco', 'nvil' or 'wake_sleep'), K samples per update and NVIL's settings (tfrecog's SBN
    defaults)."""


def spec_from(args) -> Spec:
    return Spec(layers=list(args.layers), estimator=args.estimator, samples=args.samples,
                autoregressive_prior=args.autoregressive_prior, autoregressive_visible=args.autoregressive_visible,
                autoregressive_posterior=args.autoregressive_posterior, baseline_hidden=100, signal_decay=0.8)


def make_model(spec: Spec):
    """The SBN of tfrecog.models.SBN as pure JAX functions of a parameter tree named like tfrecog's variables
    (`q_l`, `p_l`, `p_x`, `baseline/dense_0`, ...; `kernel`, `context_kernel`, `bias`, `logits`)."""
    import jax
    import jax.numpy as jnp

    sizes = spec["layers"]
    L = len(sizes)
    masks = {n: jnp.asarray(np.triu(np.ones((n, n), np.float32), 1)) for n in {*sizes, EVENT_SIZE}}

    def glorot(key, shape):
        limit = math.sqrt(6.0 / (shape[0] + shape[1]))
        return jax.random.uniform(key, shape, jnp.float32, -limit, limit)

    def layer_init(key, units, context, masked):
        """Dense: kernel [context, units]; masked (tfrecog's MaskedDense): kernel [units, units] used under the
        strictly upper-triangular mask, context_kernel [context, units] when there is a context."""
        k1, k2 = jax.random.split(key)
        if not masked:
            return {"kernel": glorot(k1, (context, units)), "bias": jnp.zeros(units)}
        layer = {"kernel": glorot(k1, (units, units)), "bias": jnp.zeros(units)}
        if context:
            layer["context_kernel"] = glorot(k2, (context, units))
        return layer

    def init(key):
        keys = iter(jax.random.split(key, 2 * L + 4))
        params = {}
        below = [EVENT_SIZE, *sizes[:-1]]
        for i in range(L):
            params[f"q_{i + 1}"] = layer_init(next(keys), sizes[i], below[i], spec["autoregressive_posterior"])
        for i in range(L - 1):
            params[f"p_{i + 1}"] = layer_init(next(keys), sizes[i], sizes[i + 1], spec["autoregressive_prior"])
        params[f"p_{L}"] = (layer_init(next(keys), sizes[-1], 0, True) if spec["autoregressive_prior"]
                            else {"logits": jnp.zeros(sizes[-1])})
        params["p_x"] = layer_init(next(keys), EVENT_SIZE, sizes[0], spec["autoregressive_visible"])
        if spec["estimator"] == "nvil":
            hidden = spec["baseline_hidden"]
            params["baseline"] = {"dense_0": layer_init(next(keys), hidden, EVENT_SIZE, False),
                                  "dense_1": layer_init(next(keys), L, hidden, False)}
        return params

    def bernoulli(logits, value):
        """log Bernoulli(value; sigmoid(logits)) summed over the last axis."""
        return jnp.sum(value * logits - jax.nn.softplus(logits), axis=-1)

    def context_part(layer, context):
        """The logits' part that does not depend on the layer's own units: c W + b (or the top's logits)."""
        if "logits" in layer:
            return layer["logits"]
        if "context_kernel" in layer:
            return context @ layer["context_kernel"] + layer["bias"]
        if context is None:  # a masked top layer: bias only
            return layer["bias"]
        return context @ layer["kernel"] + layer["bias"]

    def logits_of(layer, masked, h, context):
        """a = h (W * M) + c V + b for a masked layer (a_j sees h_<j), c W + b for a dense one."""
        base = context_part(layer, context)
        if masked:
            n = h.shape[-1]
            return h @ (layer["kernel"] * masks[n]) + base
        return base

    def sample_layer(layer, masked, context, key, shape):
        """h ~ q(h | c) (no gradient through h) and its log-probability."""
        u = jax.random.uniform(key, shape)
        if not masked:
            logits = jnp.broadcast_to(context_part(layer, context), shape)
            h = jax.lax.stop_gradient((u < jax.nn.sigmoid(logits)).astype(jnp.float32))
            return h, bernoulli(logits, h)
        kernel = layer["kernel"] * masks[shape[-1]]
        start = jnp.broadcast_to(jax.lax.stop_gradient(context_part(layer, context)), shape)

        def step(carry, j):
            h, running = carry
            h_j = (u[..., j] < jax.nn.sigmoid(running[..., j])).astype(jnp.float32)
            return (h.at[..., j].set(h_j), running + h_j[..., None] * jax.lax.stop_gradient(kernel[j])), None

        (h, _), _ = jax.lax.scan(step, (jnp.zeros(shape), start), jnp.arange(shape[-1]))
        h = jax.lax.stop_gradient(h)
        return h, bernoulli(logits_of(layer, True, h, context), h)

    def sample_posterior(params, x, key, k):
        """h_1..h_L ~ q, [K, B, size_l] each, and [log q(h_l | h_{l-1})] each [K, B]; the first layer's context
        term is computed once per example and shared by the K samples."""
        hs, terms, context = [], [], x
        for i, layer_key in enumerate(jax.random.split(key, L)):
            h, term = sample_layer(params[f"q_{i + 1}"], spec["autoregressive_posterior"], context, layer_key,
                                   (k, x.shape[0], sizes[i]))
            hs.append(h)
            terms.append(term)
            context = h
        return hs, terms

    def log_joint_terms(params, x, hs):
        """[log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)], each [K, B]."""
        terms = [bernoulli(logits_of(params["p_x"], spec["autoregressive_visible"], x, hs[0]), x)]
        for i in range(L - 1):
            terms.append(bernoulli(logits_of(params[f"p_{i + 1}"], spec["autoregressive_prior"], hs[i], hs[i + 1]),
                                   hs[i]))
        terms.append(bernoulli(logits_of(params[f"p_{L}"], spec["autoregressive_prior"], hs[-1], None), hs[-1]))
        return terms

    def recognition_terms(params, x, hs):
        """[log q(h_l | h_{l-1})] for given h (as tfrecog's `recognition_log_prob_terms`)."""
        contexts = [x, *hs[:-1]]
        return [bernoulli(logits_of(params[f"q_{i + 1}"], spec["autoregressive_posterior"], hs[i], contexts[i]),
                          hs[i]) for i in range(L)]

    def log_weights(params, x, key, k):
        hs, q_terms = sample_posterior(params, x, key, k)
        log_q = sum(q_terms)
        return sum(log_joint_terms(params, x, hs)) - log_q, log_q

    def vimco_loss(params, stats, x, key):
        """-mean_b [L_K + sum_k sg(L_K - L_{-k}) log q(h_k | x)], L_{-k} with the geometric mean of the other
        log-weights in place of sample k (tfrecog.estimators.vimco). Returns (loss, (mean L_K, stats))."""
        k = spec["samples"]
        log_w, log_q = log_weights(params, x, key, k)
        bound = jax.nn.logsumexp(log_w, axis=0) - math.log(k)
        geometric = (jnp.sum(log_w, 0, keepdims=True) - log_w) / (k - 1)
        eye = jnp.eye(k)[:, :, None]
        table = eye * geometric[:, None, :] + (1.0 - eye) * log_w[None]
        leave_one_out = jax.nn.logsumexp(table, axis=1) - math.log(k)
        signal = jax.lax.stop_gradient(bound[None] - leave_one_out)
        return -jnp.mean(bound + jnp.sum(signal * log_q, 0)), (jnp.mean(bound), stats)

    def nvil_loss(params, stats, x, key):
        """NVIL (tfrecog.estimators.nvil with every technique on): local signals l_i, input-dependent baseline
        C(x), running mean c and variance v (decay alpha) from before this minibatch;
          loss = -mean log p(x, h) - mean sum_i sg((l_i - C_i - c_i) / max(1, sqrt v_i)) log q_i
                 + mean sum_i (l_i - c_i - C_i)^2.
        Returns (loss, (single-sample ELBO, new stats))."""
        hs, q_terms = sample_posterior(params, x, key, spec["samples"])
        p = jnp.stack(log_joint_terms(params, x, hs))  # [L + 1, K, B]
        q = jnp.stack(q_terms)  # [L, K, B]
        signals = jax.lax.stop_gradient(jnp.cumsum(p[::-1], 0)[::-1][:L] - jnp.cumsum(q[::-1], 0)[::-1])
        b = params["baseline"]
        baseline = (jnp.tanh(x @ b["dense_0"]["kernel"] + b["dense_0"]["bias"]) @ b["dense_1"]["kernel"]
                    + b["dense_1"]["bias"]).T[:, None, :]  # [L, 1, B]
        mean, variance = stats[0][:, None, None], stats[1][:, None, None]
        residual = signals - jax.lax.stop_gradient(baseline)
        advantage = jax.lax.stop_gradient((residual - mean) / jnp.maximum(1.0, jnp.sqrt(variance)))
        loss = (-jnp.mean(jnp.sum(p, 0)) - jnp.mean(jnp.sum(advantage * q, 0))
                + jnp.mean(jnp.sum(jnp.square(signals - mean - baseline), 0)))
        batch_mean = jnp.mean(residual, axis=(1, 2))
        batch_variance = jnp.maximum(jnp.mean(jnp.square(residual), axis=(1, 2)) - jnp.square(batch_mean), 0.0)
        decay = spec["signal_decay"]
        new_stats = (decay * stats[0] + (1 - decay) * batch_mean, decay * stats[1] + (1 - decay) * batch_variance)
        elbo = jnp.mean(jnp.sum(p, 0) - jnp.sum(q, 0))
        return loss, (elbo, new_stats)

    def sample_joint(params, key, n):
        """(x, [h_1..h_L]) ~ p(x, h), ancestrally from the top (autoregressive layers unit by unit), [n, ...]."""
        keys = jax.random.split(key, L + 1)
        h, _ = sample_layer(params[f"p_{L}"], spec["autoregressive_prior"], None, keys[L - 1], (n, sizes[-1]))
        hs = [h]
        for i in range(L - 2, -1, -1):
            h, _ = sample_layer(params[f"p_{i + 1}"], spec["autoregressive_prior"], hs[0], keys[i], (n, sizes[i]))
            hs.insert(0, h)
        x, _ = sample_layer(params["p_x"], spec["autoregressive_visible"], hs[0], keys[L], (n, EVENT_SIZE))
        return x, hs

    def wake_sleep_loss(params, stats, x, key):
        """-(mean log p(x, h) + mean log q(h' | x')), h ~ q(h | x), (x', h') ~ p (tfrecog.estimators.wake_sleep):
        the wake term trains the generative model, the sleep term the recognition model. Returns (loss, (the
        single-sample ELBO, stats))."""
        wake_key, sleep_key = jax.random.split(key)
        hs, q_terms = sample_posterior(params, x, wake_key, 1)
        log_joint = sum(log_joint_terms(params, x, hs))
        dream_x, dream_h = jax.lax.stop_gradient(sample_joint(params, sleep_key, x.shape[0]))
        sleep = jnp.mean(sum(recognition_terms(params, dream_x, dream_h)))
        elbo = jnp.mean(log_joint - jax.lax.stop_gradient(sum(q_terms)))
        return -(jnp.mean(log_joint) + sleep), (elbo, stats)

    def validation_score(params, x, key):
        """What tfrecog's `select_by` reads: the K-sample bound for VIMCO, the single-sample ELBO for NVIL; [B]."""
        k = spec["samples"] if spec["estimator"] == "vimco" else 1
        log_w, _ = log_weights(params, x, key, k)
        return jax.nn.logsumexp(log_w, axis=0) - math.log(k)

    loss = {"vimco": vimco_loss, "nvil": nvil_loss, "wake_sleep": wake_sleep_loss}[spec["estimator"]]
    return {"init": init, "loss": loss, "validation_score": validation_score, "sample_posterior": sample_posterior,
            "log_joint_terms": log_joint_terms, "recognition_terms": recognition_terms, "sample_joint": sample_joint}


# -------------------------------------------------------------------------------------------------------------- train
def train(args):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_default_matmul_precision", "highest")  # float32 dots, as on the CPU (no TF32)
    spec = spec_from(args)
    if spec["estimator"] == "vimco" and spec["samples"] < 2:
        raise SystemExit("--estimator vimco needs --samples >= 2")
    model = make_model(spec)
    sizes = tuple(spec["layers"])
    lrs = np.asarray(args.lrs, np.float32)
    replicas = len(lrs)
    sets = unpack(args.data)
    x_train, x_valid = jnp.asarray(sets["train"]), jnp.asarray(sets["valid"])
    steps = len(sets["train"]) // args.batch_size
    select_by = "iwae_bound" if spec["estimator"] == "vimco" else "elbo"
    adam = optax.scale_by_adam()

    def split(params):
        """(theta and phi, psi): the model optimizer's and the baseline optimizer's variables."""
        rest = {k: v for k, v in params.items() if k != "baseline"}
        return rest, params.get("baseline", {})

    def update(params, opt_state, stats, lr, batch, key):
        (_, (score, stats)), grads = jax.value_and_grad(model["loss"], has_aux=True)(params, stats, batch, key)
        model_grads, baseline_grads = split(grads)
        model_params, baseline_params = split(params)
        model_updates, model_state = adam.update(model_grads, opt_state[0], model_params)
        baseline_updates, baseline_state = adam.update(baseline_grads, opt_state[1], baseline_params)
        params = jax.tree_util.tree_map(lambda p, u: p - lr * u, model_params, model_updates)
        if baseline_params:
            params["baseline"] = jax.tree_util.tree_map(lambda p, u: p - args.baseline_lr * u, baseline_params,
                                                        baseline_updates)
        return params, (model_state, baseline_state), stats, score

    replicated_update = jax.vmap(update, in_axes=(0, 0, 0, 0, None, 0))

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def epoch(params, opt_state, stats, key):
        order_key, step_key = jax.random.split(key)
        batches = x_train[jax.random.permutation(order_key, len(sets["train"]))[: steps * args.batch_size]]
        batches = batches.reshape(steps, args.batch_size, EVENT_SIZE)

        def body(carry, inputs):
            batch, key = inputs
            params, opt_state, stats, score = replicated_update(*carry, lrs, batch, jax.random.split(key, replicas))
            return (params, opt_state, stats), score

        (params, opt_state, stats), scores = jax.lax.scan(body, (params, opt_state, stats),
                                                          (batches, jax.random.split(step_key, steps)))
        return params, opt_state, stats, jnp.mean(scores, axis=0)

    @jax.jit
    def validation(params, key):
        """Mean validation score (K-sample bound or ELBO) per replica."""
        chunks = x_valid.reshape(-1, 500, EVENT_SIZE)

        def one(params, key):
            def chunk(_, inputs):
                x, k = inputs
                return None, model["validation_score"](params, x, k)

            _, scores = jax.lax.scan(chunk, None, (chunks, jax.random.split(key, len(chunks))))
            return jnp.mean(scores)

        return jax.vmap(one, in_axes=(0, None))(params, key)

    def init_opt(params):
        model_params, baseline_params = split(params)
        return adam.init(model_params), adam.init(baseline_params)

    zero_stats = (jnp.zeros((replicas, len(sizes))), jnp.zeros((replicas, len(sizes))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        resume = Path(args.resume)
        meta = json.loads((resume / "meta.json").read_text())
        if list(meta["lrs"]) != list(args.lrs) or meta.get("spec", {}) != dict(spec):
            raise SystemExit(f"--resume {resume}: trained with lrs {meta['lrs']} and {meta.get('spec')}")
        with np.load(resume / "last.npz") as f:
            saved = {k: f[k] for k in f.files}
        params = unflatten(saved, "params/")
        opt_state = tuple(optax.ScaleByAdamState(count=jnp.asarray(saved[f"{part}count"]),
                                                 mu=unflatten(saved, f"{part}mu/"), nu=unflatten(saved, f"{part}nu/"))
                          for part in ("model_", "baseline_"))
        stats = (jnp.asarray(saved["stats/signal_mean"]), jnp.asarray(saved["stats/signal_variance"]))
        with np.load(resume / "best_replicas.npz") as f:
            best_params = unflatten({k: f[k] for k in f.files}, "params/")
        best = np.asarray(meta["best_values"], np.float64)
        best_epoch = list(meta["best_epochs"])
        start_epoch, wall = meta["epochs"], meta["wall_seconds"]
        history = list(csv.DictReader(open(resume / "history.csv")))
        key = jax.random.PRNGKey(args.seed + 1000 * start_epoch)
    else:
        params = jax.vmap(model["init"])(jax.random.split(jax.random.PRNGKey(args.seed), replicas))
        stats = zero_stats
        start_epoch, wall, history = 0, 0.0, []
        if args.init:
            # every replica starts from an earlier run's best weights (at its best epoch), Adam from zero
            source = Path(args.init)
            earlier = json.loads((source / "meta.json").read_text())
            if earlier.get("spec", {}).get("layers", earlier.get("layers")) != list(sizes):
                raise SystemExit(f"--init {source}: another model ({earlier.get('spec')})")
            with np.load(source / "best.npz") as f:
                weights = unflatten({k: f[k] for k in f.files}, "")
            initial = {k: v for k, v in weights.items() if k != "stats"}
            if "baseline" in params and "baseline" not in initial:
                initial["baseline"] = jax.tree_util.tree_map(lambda v: v[0], params["baseline"])
            params = jax.tree_util.tree_map(lambda w: jnp.broadcast_to(w, (replicas, *w.shape)), initial)
            if "stats" in weights:
                stats = tuple(jnp.broadcast_to(weights["stats"][n], (replicas, len(sizes)))
                              for n in ("signal_mean", "signal_variance"))
            start_epoch, wall = earlier["best_epoch"], earlier["wall_seconds"]
            history = [{**row, "replica": r, "lr": args.lrs[r]}
                       for row in csv.DictReader(open(source / "history.csv"))
                       if int(row["replica"]) == earlier["winner"] and int(row["epoch"]) <= start_epoch
                       for r in range(replicas)]
        opt_state = jax.vmap(init_opt)(params)
        best_params = jax.tree_util.tree_map(np.asarray, params)
        best_stats = jax.tree_util.tree_map(np.asarray, stats)
        best, best_epoch = np.full(replicas, -np.inf), [start_epoch] * replicas
        key = jax.random.PRNGKey(args.seed + 1 + 1000 * start_epoch)
    if args.resume:
        best_stats = (np.asarray(saved["best_stats/signal_mean"]), np.asarray(saved["best_stats/signal_variance"]))

    def write(final: bool):
        """best.npz (the best replica's best weights and NVIL statistics), best_replicas.npz, history.csv and
        meta.json; at the end also last.npz (every replica's weights, statistics and Adam state). Written after
        each improvement (at most every 30 s) too, so that a command stopped at its time limit still brings back
        its best weights."""
        elapsed = wall + time.time() - started
        winner = int(np.argmax(best))
        flat_best = flatten(jax.tree_util.tree_map(lambda p: np.asarray(p)[winner], best_params), "")
        flat_best.update({"stats/signal_mean": best_stats[0][winner], "stats/signal_variance": best_stats[1][winner]})
        np.savez(out / "best.npz", **flat_best)
        np.savez(out / "best_replicas.npz", **flatten(best_params, "params/"))
        if final:
            state = {**flatten(jax.tree_util.tree_map(np.asarray, params), "params/"),
                     "stats/signal_mean": np.asarray(stats[0]), "stats/signal_variance": np.asarray(stats[1]),
                     "best_stats/signal_mean": best_stats[0], "best_stats/signal_variance": best_stats[1]}
            for part, adam_state in zip(("model_", "baseline_"), opt_state):
                state.update(flatten(jax.tree_util.tree_map(np.asarray, adam_state.mu), f"{part}mu/"))
                state.update(flatten(jax.tree_util.tree_map(np.asarray, adam_state.nu), f"{part}nu/"))
                state[f"{part}count"] = np.asarray(adam_state.count)
            np.savez(out / "last.npz", **state)
        with open(out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "replica", "lr", "train_bound", "val_bound",
                                                   "wall_seconds"])
            writer.writeheader()
            writer.writerows(history)
        meta = {"spec": dict(spec), "layers": list(sizes), "samples": spec["samples"],
                "estimator": spec["estimator"], "select_by": select_by, "train_examples": len(sets["train"]),
                "batch_size": args.batch_size, "lrs": list(args.lrs), "baseline_lr": args.baseline_lr,
                "epochs": epoch_number, "updates": epoch_number * steps, "wall_seconds": round(elapsed, 1),
                "best_values": [float(b) for b in best], "best_epochs": best_epoch, "winner": winner,
                "winner_lr": args.lrs[winner], "best_value": float(best[winner]),
                "best_epoch": best_epoch[winner], "device": str(jax.devices()[0].device_kind),
                "jax": jax.__version__, "optax": optax.__version__, "seed": args.seed, "init": args.init,
                "command": command, "commands": [*earlier_commands, command], "final": final}
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        return meta

    command = "python3 scripts/gpu_sbn.py train " + " ".join(args.argv)
    earlier_commands = []
    if args.init or args.resume:
        earlier = json.loads((Path(args.init or args.resume) / "meta.json").read_text())
        earlier_commands = earlier.get("commands", [earlier["command"]])
    started = time.time()
    last_write = started
    epoch_number = start_epoch
    print(f"devices {jax.devices()}; {dict(spec)}; replicas lr={args.lrs}; {steps} updates per epoch", flush=True)
    def finished():
        return time.time() - started >= args.seconds or (args.epochs is not None and epoch_number >= args.epochs)

    while not finished():
        key, epoch_key = jax.random.split(key)
        params, opt_state, stats, train_score = epoch(params, opt_state, stats, epoch_key)
        epoch_number += 1
        if epoch_number % args.eval_every == 0 or finished():  # and the last epoch
            key, valid_key = jax.random.split(key)
            valid = np.asarray(validation(params, valid_key), np.float64)
            train_score = np.asarray(train_score, np.float64)
            elapsed = wall + time.time() - started
            for r in range(replicas):
                history.append({"epoch": epoch_number, "replica": r, "lr": args.lrs[r],
                                "train_bound": round(float(train_score[r]), 4), "val_bound": round(float(valid[r]), 4),
                                "wall_seconds": round(elapsed, 1)})
            improved = valid > best
            if improved.any():
                mask = improved.copy()

                def keep(b, p, m=mask):
                    p = np.asarray(p)
                    return np.where(m.reshape((-1,) + (1,) * (p.ndim - 1)), p, b)

                best_params = jax.tree_util.tree_map(keep, best_params, params)
                best_stats = tuple(keep(b, p) for b, p in zip(best_stats, stats))
                for r in np.flatnonzero(improved):
                    best[r], best_epoch[r] = valid[r], epoch_number
                if time.time() - last_write >= 30:
                    write(final=False)
                    last_write = time.time()
            print(f"epoch {epoch_number} {elapsed:.0f}s train {np.round(train_score, 2)} val {np.round(valid, 2)} "
                  f"best {np.round(best, 2)}", flush=True)
    meta = write(final=True)
    print(json.dumps({k: meta[k] for k in ("epochs", "wall_seconds", "best_values", "best_epochs", "winner_lr")}))


def flatten(tree, prefix):
    """{"q_1": {"kernel": a}} -> {prefix + "q_1/kernel": a}, at any depth."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def unflatten(flat, prefix):
    """The inverse of `flatten` for the keys that start with `prefix`."""
    tree = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            *path, leaf = key[len(prefix):].split("/")
            node = tree
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = value
    return tree


# ------------------------------------------------------------------------------------------------------------- import
MODEL_KEYS = ("latent_sizes", "estimator", "num_samples", "autoregressive_prior", "autoregressive_visible",
              "autoregressive_posterior")


def _recipe_spec(model_config: dict) -> dict:
    """The recipe's model in the terms of `Spec` (tfrecog's SBN defaults where the recipe is silent)."""
    return {"layers": list(model_config["latent_sizes"]), "estimator": model_config.get("estimator", "nvil"),
            "samples": model_config.get("num_samples", 1),
            **{k: bool(model_config.get(k, False)) for k in MODEL_KEYS[3:]}}


def _variable_key(variable) -> str:
    """tfrecog's variable path -> this script's parameter name: `q_1/dense/kernel` -> `q_1/kernel`,
    `p_x/masked/context_kernel` -> `p_x/context_kernel`; NVIL's running statistics -> `stats/signal_mean`."""
    if not variable.trainable:
        return f"stats/{variable.name}"
    return variable.path.replace("/dense/", "/").replace("/masked/", "/")


def import_run(args):
    """Writes a tfrecog run folder holding the weights of best.npz (`tfrecog.training.seed_run`: config.json, one
    checkpoint with them as `last` and `best`, history.csv), from the recipe they were trained by."""
    from tfrecog import io, recipes, training

    source = Path(args.source)
    meta = json.loads((source / "meta.json").read_text())
    config = recipes.read(args.recipe)
    trained = meta.get("spec", {"layers": meta["layers"], "estimator": "vimco", "samples": meta["samples"],
                                **{k: False for k in MODEL_KEYS[3:]}})
    wanted = _recipe_spec(config["model"])
    names = {"layers": "latent_sizes", "samples": "num_samples"}  # the recipe's words
    differ = [f"model.{names.get(k, k)}: {wanted[k]} in the recipe, {trained.get(k)} trained"
              for k in wanted if trained.get(k) != wanted[k]]
    if differ:
        raise SystemExit(f"{args.recipe} is not the model of {source}: {'; '.join(differ)}")
    config["model"]["event_size"] = EVENT_SIZE
    config["optimizer"]["config"]["learning_rate"] = meta["winner_lr"]
    if meta.get("baseline_lr") is not None and "baseline_optimizer" in config:
        config["baseline_optimizer"]["config"]["learning_rate"] = meta["baseline_lr"]
    config["batch_size"] = meta["batch_size"]
    select_by = meta.get("select_by", "iwae_bound")
    if config.get("select_by", "elbo") != select_by:
        raise SystemExit(f"{args.recipe} selects by {config.get('select_by', 'elbo')}; {source} by {select_by}")
    with np.load(source / "best.npz") as f:
        weights = {k: f[k] for k in f.files}
    train_examples = meta.get("train_examples", 50000)  # binarized MNIST's training split

    def assign(model):
        assigned = set()
        for variable in model.weights:
            key = _variable_key(variable)
            if key in weights:
                variable.assign(np.reshape(weights[key], variable.shape))
                assigned.add(key)
            elif variable.trainable:
                raise SystemExit(f"{source / 'best.npz'} has no {key} (has {sorted(weights)})")
        if set(weights) - assigned:
            raise SystemExit(f"{source / 'best.npz'}: unused arrays {sorted(set(weights) - assigned)}")
        if hasattr(model, "set_num_train_examples"):
            model.set_num_train_examples(train_examples)

    steps = train_examples // meta["batch_size"]
    rows = [r for r in csv.DictReader(open(source / "history.csv")) if int(r["replica"]) == meta["winner"]]
    history = [{"epoch": int(r["epoch"]) - 1, select_by: r["train_bound"], f"val_{select_by}": r["val_bound"],
                "wall_seconds": r["wall_seconds"]} for r in rows if int(r["epoch"]) <= meta["best_epoch"]]
    import_command = f"python scripts/gpu_sbn.py import {args.source} {args.recipe} {args.run}"
    best_value = meta.get("best_value", meta.get("best_val_iwae_bound"))
    state = {"epoch": meta["best_epoch"], "updates": meta["best_epoch"] * steps, "wall_seconds": meta["wall_seconds"],
             f"best_val_{select_by}": best_value, "best_epoch": meta["best_epoch"],
             "commits": [io.git_commit()],
             "trained_by": {"hardware": f"{meta['device']}, JAX {meta['jax']}, optax {meta['optax']} "
                                        "(scripts/gpu_sbn.py)",
                            "command": "; ".join([*meta.get("commands", [meta["command"]]), import_command]),
                            "epochs_run": meta["epochs"], "learning_rates_tried": meta["lrs"],
                            f"best_val_{select_by}_per_rate": meta.get("best_values", meta.get("best_bounds"))}}
    training.seed_run(args.run, config, assign, state, history)
    print(f"{args.run}: best weights of epoch {meta['best_epoch']} (validation {select_by} {best_value:.2f}, "
          f"lr {meta['winner_lr']})")


def export(args):
    """The other way: a tfrecog run folder's best weights as a folder that `train --init` starts from (best.npz,
    meta.json, history.csv), for going on with a run on a later lease."""
    from tfrecog import training

    model, config = training.load_run(args.run, "best")
    state = training.run_state(args.run)
    weights = {_variable_key(v): v.numpy() for v in model.weights
               if v.trainable or v.name in ("signal_mean", "signal_variance")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "best.npz", **weights)
    rows = list(csv.DictReader(open(Path(args.run) / "history.csv")))
    select = config.get("select_by", "elbo")
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "replica", "lr", "train_bound", "val_bound", "wall_seconds"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"epoch": int(float(row["epoch"])) + 1, "replica": 0,
                             "lr": config["optimizer"]["config"]["learning_rate"], "train_bound": row.get(select),
                             "val_bound": row.get(f"val_{select}"), "wall_seconds": row.get("wall_seconds", "")})
    trained_by = state.get("trained_by", {})
    commands = trained_by.get("command", f"tfrecog train --run {args.run}").split("; ")
    lr = config["optimizer"]["config"]["learning_rate"]
    meta = {"spec": {**_recipe_spec(config["model"]), "baseline_hidden": 100, "signal_decay": 0.8},
            "layers": list(config["model"]["latent_sizes"]), "samples": config["model"].get("num_samples", 1),
            "select_by": select, "baseline_lr": (config.get("baseline_optimizer") or {}).get("config", {}).get(
                "learning_rate"),
            "batch_size": config["batch_size"], "lrs": [lr], "winner_lr": lr,
            "train_examples": int(float(model.num_train_examples.numpy())),
            "best_epoch": state.get("best_epoch") or state["epoch"],
            "epochs": state["epoch"], "wall_seconds": state["wall_seconds"], "winner": 0,
            "best_value": state.get(f"best_val_{select}"), "commands": commands, "command": commands[-1]}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{out}: weights of epoch {meta['best_epoch']} from {args.run}")


def main(argv=None):
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", default=".gpu/bmnist.npz")
    p = sub.add_parser("train")
    p.add_argument("--data", default=".gpu/bmnist.npz")
    p.add_argument("--layers", type=int, nargs="+", default=[200, 200, 200])
    p.add_argument("--estimator", choices=["vimco", "nvil", "wake_sleep"], default="vimco")
    p.add_argument("--samples", type=int, help="K samples per update (default: 50 for VIMCO, 1 for NVIL)")
    p.add_argument("--autoregressive-prior", action="store_true", help="fDARN: within every latent layer of p")
    p.add_argument("--autoregressive-visible", action="store_true", help="fDARN: within the visible layer")
    p.add_argument("--autoregressive-posterior", action="store_true", help="within every layer of q")
    p.add_argument("--baseline-lr", type=float, default=3e-3, help="NVIL's baseline network's Adam rate")
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-4])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seconds", type=float, default=500)
    p.add_argument("--epochs", type=int, help="stop at this epoch (counted from the start of --init's or --resume's "
                   "run), for a budget equal to a twin's; the time limit still holds")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", help="a folder written by train: go on from its last.npz (same --lrs)")
    p.add_argument("--init", help="a folder written by train: start every replica from its best.npz")
    p = sub.add_parser("import")
    p.add_argument("source")
    p.add_argument("recipe")
    p.add_argument("run")
    p = sub.add_parser("export")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.argv = argv[1:]
    if args.command == "train" and args.samples is None:
        args.samples = 50 if args.estimator == "vimco" else 1
    {"pack": pack, "train": train, "import": import_run, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
