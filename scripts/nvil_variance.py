"""How much NVIL's variance reduction reduces the variance of the recognition-network gradient of a trained SBN.

On one minibatch of test digits, draws R independent single-sample NVIL estimates of the gradient of the ELBO with
respect to the recognition parameters phi,

    g_r = sum_i A_i(x, h_r) grad_phi log q(h_r,i | h_r,i-1),   h_r ~ q(h | x),   r = 1..R

under cumulative settings of the techniques (plain REINFORCE: A_i = l(x, h), the whole-model signal; then local
learning signals; then centring by the running mean c together with the input-dependent baseline C(x), which were
trained together, c tracking the mean of l_i - C_i(x); then variance normalisation), and reports

    trace variance  V = sum_j Var_r[g_rj]

and its ratio to plain REINFORCE on the same batch with the same seeds. Variance normalisation divides layer i's
estimate by the constant max(1, sqrt(v_i)); its row therefore mixes variance reduction with a change of scale (the
step size), which is what the technique is for. The model's parameters, its baseline network and
running statistics are used as trained; nothing is updated.

Usage:
  TFRECOG_DATA_DIR=../shared/data python scripts/nvil_variance.py sbn-bmnist-200-200-200 --repeats 200 \
      --out docs/nvil_variance.json
"""

from __future__ import annotations

import sys  # noqa: I001
from pathlib import Path

# This checkout's tfrecog and zoo/, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import shlex

import numpy as np

SETTINGS = [
    ("plain REINFORCE (signal l(x, h) of the whole model)",
     dict(centering=False, input_dependent_baseline=False, variance_normalization=False, local_signals=False)),
    ("+ local learning signals", dict(centering=False, input_dependent_baseline=False, variance_normalization=False,
                                      local_signals=True)),
    ("+ centring: running mean c and input-dependent baseline C(x)",
     dict(centering=True, input_dependent_baseline=True, variance_normalization=False, local_signals=True)),
    ("+ variance normalisation (all of NVIL)",
     dict(centering=True, input_dependent_baseline=True, variance_normalization=True, local_signals=True)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name or run folder of an NVIL-trained SBN/fDARN")
    parser.add_argument("--repeats", type=int, default=200, help="R, independent single-sample estimates")
    parser.add_argument("--batch", type=int, default=100, help="test examples in the minibatch")
    parser.add_argument("--data-dir")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    from tfrecog import data as data_lib
    from tfrecog import io, loader
    from tfrecog._tf import tf
    from tfrecog.estimators import nvil

    model, config = loader.load(args.model)  # a run folder or a zoo name
    test = data_lib.load(config["dataset"], config.get("test_split", "test"), data_dir=args.data_dir,
                         binarize=config.get("binarize"))
    rows = np.sort(np.random.default_rng(0).permutation(len(test.x))[: args.batch])
    x = tf.constant(test.x[rows], tf.float32)
    state = model.nvil_state()
    variables = model.recognition_variables

    results = []
    for label, flags in SETTINGS:
        @tf.function(jit_compile=True)
        def estimate(seed, flags=flags):
            with tf.GradientTape() as tape:
                losses, _, _ = nvil(model, x, seed, state, baseline=model.baseline_network, num_samples=1,
                                    decay=model.signal_decay, **flags)
            return tf.concat([tf.reshape(-g, [-1]) for g in tape.gradient(losses["recognition"], variables)], 0)

        estimates = np.stack([estimate(tf.constant([r, 29])).numpy() for r in range(args.repeats)]).astype(np.float64)
        trace = float(estimates.var(axis=0, ddof=1).sum())
        results.append({"setting": label, "flags": flags, "trace_variance": trace})
    plain = results[0]
    print(f"{args.model}: recognition-gradient variance on {args.batch} test examples, R={args.repeats}")
    print("| setting | trace variance | / plain REINFORCE |")
    print("| --- | --- | --- |")
    for r in results:
        r["trace_ratio"] = r["trace_variance"] / plain["trace_variance"]
        print(f"| {r['setting']} | {r['trace_variance']:.4g} | {r['trace_ratio']:.2e} |")
    if args.out:
        command = "TFRECOG_DATA_DIR=../shared/data python scripts/nvil_variance.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        io.write_json(args.out, {"command": command, "model": args.model, "batch": args.batch,
                                 "repeats": args.repeats, "results": results})


if __name__ == "__main__":
    main()
