"""Train a tfrecog SBN on a lent GPU, where TensorFlow is not installed, and bring the weights home. Maintainers' tool.

The `device` tool's machines have JAX but no TensorFlow, and a TensorFlow wheel is larger than what may travel
there. This script trains exactly the model `tfrecog.models.SBN(784, latent_sizes, estimator="vimco",
num_samples=K)` defines (the same Bernoulli layers, the same parameterisation, Glorot-uniform kernels and zero
biases, the same VIMCO surrogate as `tfrecog.estimators.vimco`) in JAX, then `import` writes an ordinary tfrecog run
folder from its weights, so that `tfrecog evaluate`, `scripts/publish_zoo.py` and `tfrecog train` (to train on) use
it like any other run. The card says where and how the weights were trained.

  python scripts/gpu_sbn.py pack --data-dir ../shared/data --out .gpu/bmnist.npz        # here (needs tfrecog)
  python3 scripts/gpu_sbn.py train --data .gpu/bmnist.npz --layers 200 200 200 --samples 50 \\
      --lrs 3e-4 1e-3 --seconds 500 --out $OUT [--resume DIR]                          # on the device (JAX only)
  python scripts/gpu_sbn.py import DIR RECIPE RUN_DIR                                   # here: a tfrecog run folder
  python scripts/gpu_sbn.py export RUN_DIR --out .gpu/NAME        # here: a run's best weights for `train --init`

`train` vmaps one replica per learning rate in `--lrs` (the same data order, independent samples), checks the
validation K-sample bound (K = --samples, as `select_by: iwae_bound` in tfrecog) every `--eval-every` epochs, keeps
each replica's best weights, and writes to the output folder: best.npz (the best replica's best weights), last.npz
(every replica's weights and Adam state, to resume), history.csv and meta.json.
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


# -------------------------------------------------------------------------------------------------------------- train
def train(args):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_default_matmul_precision", "highest")  # float32 dots, as on the CPU (no TF32)
    sizes = tuple(args.layers)
    samples = args.samples
    lrs = np.asarray(args.lrs, np.float32)
    replicas = len(lrs)
    sets = unpack(args.data)
    x_train, x_valid = jnp.asarray(sets["train"]), jnp.asarray(sets["valid"])
    steps = len(sets["train"]) // args.batch_size

    def glorot(key, fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return {"kernel": jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit),
                "bias": jnp.zeros(fan_out, jnp.float32)}

    def init(key):
        # tfrecog's names: q_i maps h_{i-1} -> h_i (h_0 = x); p_i maps h_{i+1} -> h_i (i < L); p_x maps h_1 -> x;
        # p_L holds the top layer's logits.
        keys = jax.random.split(key, 2 * len(sizes) + 1)
        params = {}
        below = (EVENT_SIZE, *sizes[:-1])
        for i, (fan_in, units) in enumerate(zip(below, sizes)):
            params[f"q_{i + 1}"] = glorot(keys[i], fan_in, units)
        for i in range(len(sizes) - 1):
            params[f"p_{i + 1}"] = glorot(keys[len(sizes) + i], sizes[i + 1], sizes[i])
        params["p_x"] = glorot(keys[-1], sizes[0], EVENT_SIZE)
        params[f"p_{len(sizes)}"] = {"logits": jnp.zeros(sizes[-1], jnp.float32)}
        return params

    def dense(layer, h):
        return h @ layer["kernel"] + layer["bias"]

    def bernoulli(logits, value):  # log Bernoulli(value; sigmoid(logits)), summed over units
        return jnp.sum(value * logits - jax.nn.softplus(logits), axis=-1)

    def log_weights(params, x, key, k):
        """log w_k = log p(x, h_k) - log q(h_k | x), h_k ~ q(h | x): [K, B] and log q [K, B]."""
        context = jnp.broadcast_to(x, (k, *x.shape))
        hs, log_q = [], 0.0
        for i, layer_key in enumerate(jax.random.split(key, len(sizes))):
            logits = dense(params[f"q_{i + 1}"], context)
            h = jax.lax.stop_gradient((jax.random.uniform(layer_key, logits.shape) < jax.nn.sigmoid(logits))
                                      .astype(jnp.float32))
            log_q = log_q + bernoulli(logits, h)
            hs.append(h)
            context = h
        log_p = bernoulli(dense(params["p_x"], hs[0]), x)
        for i in range(len(sizes) - 1):
            log_p = log_p + bernoulli(dense(params[f"p_{i + 1}"], hs[i + 1]), hs[i])
        log_p = log_p + bernoulli(params[f"p_{len(sizes)}"]["logits"], hs[-1])
        return log_p - log_q, log_q

    def vimco_loss(params, x, key):
        """-mean_b [L_K + sum_k sg(L_K - L_{-k}) log q(h_k | x)], L_{-k} with the geometric mean of the other
        log-weights in place of sample k (tfrecog.estimators.vimco)."""
        log_w, log_q = log_weights(params, x, key, samples)
        bound = jax.nn.logsumexp(log_w, axis=0) - math.log(samples)
        geometric = (jnp.sum(log_w, 0, keepdims=True) - log_w) / (samples - 1)
        eye = jnp.eye(samples)[:, :, None]
        table = eye * geometric[:, None, :] + (1.0 - eye) * log_w[None]
        leave_one_out = jax.nn.logsumexp(table, axis=1) - math.log(samples)
        signal = jax.lax.stop_gradient(bound[None] - leave_one_out)
        return -jnp.mean(bound + jnp.sum(signal * log_q, 0)), jnp.mean(bound)

    adam = optax.scale_by_adam()

    def update(params, opt_state, lr, batch, key):
        (_, bound), grads = jax.value_and_grad(vimco_loss, has_aux=True)(params, batch, key)
        updates, opt_state = adam.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, bound

    replicated_update = jax.vmap(update, in_axes=(0, 0, 0, None, 0))

    @partial(jax.jit, donate_argnums=(0, 1))
    def epoch(params, opt_state, key):
        order_key, step_key = jax.random.split(key)
        batches = x_train[jax.random.permutation(order_key, len(sets["train"]))[: steps * args.batch_size]]
        batches = batches.reshape(steps, args.batch_size, EVENT_SIZE)

        def body(carry, inputs):
            batch, key = inputs
            params, opt_state, bound = replicated_update(*carry, lrs, batch, jax.random.split(key, replicas))
            return (params, opt_state), bound

        (params, opt_state), bounds = jax.lax.scan(body, (params, opt_state),
                                                   (batches, jax.random.split(step_key, steps)))
        return params, opt_state, jnp.mean(bounds, axis=0)

    @jax.jit
    def validation_bound(params, key):
        """Mean K-sample bound over the validation digits, per replica."""
        chunks = x_valid.reshape(-1, 500, EVENT_SIZE)

        def one(params, key):
            def chunk(_, inputs):
                x, k = inputs
                log_w, _ = log_weights(params, x, k, samples)
                return None, jax.nn.logsumexp(log_w, axis=0) - math.log(samples)

            _, bounds = jax.lax.scan(chunk, None, (chunks, jax.random.split(key, len(chunks))))
            return jnp.mean(bounds)

        return jax.vmap(one, in_axes=(0, None))(params, key)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        resume = Path(args.resume)
        meta = json.loads((resume / "meta.json").read_text())
        with np.load(resume / "last.npz") as f:
            saved = {k: f[k] for k in f.files}
        params = unflatten(saved, "params/")
        opt_state = optax.ScaleByAdamState(count=jnp.asarray(saved["count"]), mu=unflatten(saved, "mu/"),
                                           nu=unflatten(saved, "nu/"))
        if list(meta["lrs"]) != list(args.lrs) or list(meta["layers"]) != list(sizes):
            raise SystemExit(f"--resume {resume}: trained with lrs {meta['lrs']} layers {meta['layers']}")
        with np.load(resume / "best_replicas.npz") as f:
            best_params = unflatten({k: f[k] for k in f.files}, "params/")
        best = np.asarray(meta["best_bounds"], np.float64)
        best_epoch = list(meta["best_epochs"])
        start_epoch, wall = meta["epochs"], meta["wall_seconds"]
        history = list(csv.DictReader(open(resume / "history.csv")))
        key = jax.random.PRNGKey(args.seed + 1000 * start_epoch)
    else:
        params = jax.vmap(init)(jax.random.split(jax.random.PRNGKey(args.seed), replicas))
        start_epoch, wall, history = 0, 0.0, []
        if args.init:
            # every replica starts from an earlier run's best weights (at its best epoch), Adam from zero
            source = Path(args.init)
            earlier = json.loads((source / "meta.json").read_text())
            if list(earlier["layers"]) != list(sizes):
                raise SystemExit(f"--init {source}: layers {earlier['layers']}, expected {list(sizes)}")
            with np.load(source / "best.npz") as f:
                weights = unflatten({k: f[k] for k in f.files}, "")
            params = jax.tree_util.tree_map(lambda w: jnp.broadcast_to(w, (replicas, *w.shape)), weights)
            start_epoch, wall = earlier["best_epoch"], earlier["wall_seconds"]
            history = [{**row, "replica": r, "lr": args.lrs[r]}
                       for row in csv.DictReader(open(source / "history.csv"))
                       if int(row["replica"]) == earlier["winner"] and int(row["epoch"]) <= start_epoch
                       for r in range(replicas)]
        opt_state = jax.vmap(adam.init)(params)
        best_params = jax.tree_util.tree_map(np.asarray, params)
        best, best_epoch = np.full(replicas, -np.inf), [start_epoch] * replicas
        key = jax.random.PRNGKey(args.seed + 1 + 1000 * start_epoch)
    def write(final: bool):
        """best.npz (the best replica's best weights), best_replicas.npz, history.csv and meta.json; at the end
        also last.npz (every replica's weights and Adam state). Written after each improvement (at most every 30 s)
        too, so that a command stopped at its time limit still brings back its best weights."""
        elapsed = wall + time.time() - started
        winner = int(np.argmax(best))
        flat_best = flatten(jax.tree_util.tree_map(lambda p: np.asarray(p)[winner], best_params), "")
        np.savez(out / "best.npz", **flat_best)
        np.savez(out / "best_replicas.npz", **flatten(best_params, "params/"))
        if final:
            state = {**flatten(jax.tree_util.tree_map(np.asarray, params), "params/"),
                     **flatten(jax.tree_util.tree_map(np.asarray, opt_state.mu), "mu/"),
                     **flatten(jax.tree_util.tree_map(np.asarray, opt_state.nu), "nu/"),
                     "count": np.asarray(opt_state.count)}
            np.savez(out / "last.npz", **state)
        with open(out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", "replica", "lr", "train_bound", "val_bound",
                                                   "wall_seconds"])
            writer.writeheader()
            writer.writerows(history)
        meta = {"layers": list(sizes), "samples": samples, "train_examples": len(sets["train"]),
                "batch_size": args.batch_size, "lrs": list(args.lrs),
                "epochs": epoch_number, "updates": epoch_number * steps, "wall_seconds": round(elapsed, 1),
                "best_bounds": [float(b) for b in best], "best_epochs": best_epoch, "winner": winner,
                "winner_lr": args.lrs[winner], "best_val_iwae_bound": float(best[winner]),
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
    print(f"devices {jax.devices()}; replicas lr={args.lrs}; {steps} updates per epoch", flush=True)
    while time.time() - started < args.seconds:
        key, epoch_key = jax.random.split(key)
        params, opt_state, train_bound = epoch(params, opt_state, epoch_key)
        epoch_number += 1
        if epoch_number % args.eval_every == 0:
            key, valid_key = jax.random.split(key)
            valid = np.asarray(validation_bound(params, valid_key), np.float64)
            train_bound = np.asarray(train_bound, np.float64)
            elapsed = wall + time.time() - started
            for r in range(replicas):
                history.append({"epoch": epoch_number, "replica": r, "lr": args.lrs[r],
                                "train_bound": round(float(train_bound[r]), 4), "val_bound": round(float(valid[r]), 4),
                                "wall_seconds": round(elapsed, 1)})
            improved = valid > best
            if improved.any():
                host = jax.tree_util.tree_map(np.asarray, params)
                mask = improved.copy()
                best_params = jax.tree_util.tree_map(
                    lambda b, p, m=mask: np.where(m.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), best_params, host)
                for r in np.flatnonzero(improved):
                    best[r], best_epoch[r] = valid[r], epoch_number
                if time.time() - last_write >= 30:
                    write(final=False)
                    last_write = time.time()
            print(f"epoch {epoch_number} {elapsed:.0f}s train {np.round(train_bound, 2)} val {np.round(valid, 2)} "
                  f"best {np.round(best, 2)}", flush=True)
    meta = write(final=True)
    print(json.dumps({k: meta[k] for k in ("epochs", "wall_seconds", "best_bounds", "best_epochs", "winner_lr")}))


def flatten(tree, prefix):
    flat = {}
    for name, layer in tree.items():
        for leaf, value in layer.items():
            flat[f"{prefix}{name}/{leaf}"] = value
    return flat


def unflatten(flat, prefix):
    tree = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            name, leaf = key[len(prefix):].split("/")
            tree.setdefault(name, {})[leaf] = value
    return tree


# ------------------------------------------------------------------------------------------------------------- import
def import_run(args):
    """Writes a tfrecog run folder holding the weights of best.npz (`tfrecog.training.seed_run`: config.json, one
    checkpoint with them as `last` and `best`, history.csv), from the recipe they were trained by."""
    from tfrecog import io, recipes, training

    source = Path(args.source)
    meta = json.loads((source / "meta.json").read_text())
    config = recipes.read(args.recipe)
    model_config = config["model"]
    if list(model_config["latent_sizes"]) != meta["layers"] or model_config.get("num_samples") != meta["samples"]:
        raise SystemExit(f"{args.recipe} has latent_sizes {model_config['latent_sizes']} and num_samples "
                         f"{model_config.get('num_samples')}; {source} was trained with {meta['layers']} and "
                         f"{meta['samples']}")
    config["model"]["event_size"] = EVENT_SIZE
    config["optimizer"]["config"]["learning_rate"] = meta["winner_lr"]
    config["batch_size"] = meta["batch_size"]
    with np.load(source / "best.npz") as f:
        weights = {k: f[k] for k in f.files}

    def assign(model):
        assigned = set()
        for variable in model.trainable_weights:
            path = variable.path.replace("/dense/", "/")
            if path not in weights:
                raise SystemExit(f"{source / 'best.npz'} has no {path} (has {sorted(weights)})")
            variable.assign(weights[path])
            assigned.add(path)
        if assigned != set(weights):
            raise SystemExit(f"{source / 'best.npz'}: unused arrays {sorted(set(weights) - assigned)}")
        if hasattr(model, "set_num_train_examples"):
            model.set_num_train_examples(train_examples)

    train_examples = meta.get("train_examples", 50000)  # binarized MNIST's training split
    steps = train_examples // meta["batch_size"]
    rows = [r for r in csv.DictReader(open(source / "history.csv")) if int(r["replica"]) == meta["winner"]]
    history = [{"epoch": int(r["epoch"]) - 1, "iwae_bound": r["train_bound"], "val_iwae_bound": r["val_bound"],
                "wall_seconds": r["wall_seconds"]} for r in rows if int(r["epoch"]) <= meta["best_epoch"]]
    import_command = f"python scripts/gpu_sbn.py import {args.source} {args.recipe} {args.run}"
    state = {"epoch": meta["best_epoch"], "updates": meta["best_epoch"] * steps, "wall_seconds": meta["wall_seconds"],
             "best_val_iwae_bound": meta["best_val_iwae_bound"], "best_epoch": meta["best_epoch"],
             "commits": [io.git_commit()],
             "trained_by": {"hardware": f"{meta['device']}, JAX {meta['jax']}, optax {meta['optax']} "
                                        "(scripts/gpu_sbn.py)",
                            "command": "; ".join([*meta.get("commands", [meta["command"]]), import_command]),
                            "epochs_run": meta["epochs"], "learning_rates_tried": meta["lrs"],
                            "best_val_iwae_bound_per_rate": meta["best_bounds"]}}
    training.seed_run(args.run, config, assign, state, history)
    print(f"{args.run}: best weights of epoch {meta['best_epoch']} (validation K={meta['samples']} bound "
          f"{meta['best_val_iwae_bound']:.2f}, lr {meta['winner_lr']})")


def export(args):
    """The other way: a tfrecog run folder's best weights as a folder that `train --init` starts from (best.npz,
    meta.json, history.csv), for going on with a run on a later lease."""
    from tfrecog import training

    model, config = training.load_run(args.run, "best")
    state = training.run_state(args.run)
    weights = {v.path.replace("/dense/", "/"): v.numpy() for v in model.trainable_weights}
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
    meta = {"layers": list(config["model"]["latent_sizes"]), "samples": config["model"].get("num_samples", 1),
            "batch_size": config["batch_size"], "lrs": [lr], "winner_lr": lr,
            "train_examples": int(float(model.num_train_examples.numpy())),
            "best_epoch": state.get("best_epoch") or state["epoch"],
            "epochs": state["epoch"], "wall_seconds": state["wall_seconds"], "winner": 0,
            "best_val_iwae_bound": state.get(f"best_val_{select}"), "commands": commands, "command": commands[-1]}
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
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--lrs", type=float, nargs="+", default=[3e-4])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seconds", type=float, default=500)
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
    {"pack": pack, "train": train, "import": import_run, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
