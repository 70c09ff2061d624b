"""Kingma & Welling (2014), Figures 2 and 3, reproduced at a stated budget: one definition for every setting.

  fig2: AEVB (SGVB estimator B) against wake-sleep, Nz in {3, 5, 10, 20, 200}; binarized MNIST (500 hidden units)
        and Frey faces (200 hidden units); the average variational lower bound on training and test data against
        the number of training examples seen.
  fig3: 3 latents, 100 hidden units, binarized MNIST; AEVB, wake-sleep and Monte Carlo EM with HMC
        (`tfrecog.estimators.MCEMChains`, persistent chains as in the paper); the marginal log-likelihood
        (`tfrecog.marginal.hmc_marginal_log_likelihood`, the paper's appendix D) of training and test data against
        examples seen, for 1,000 and 50,000 training points.

As the paper: weights and biases initialised from N(0, 0.01^2), Adagrad with its global step size chosen from
{0.01, 0.02, 0.1} by the training objective after the first `--select` examples (each candidate trained from the
same initialisation; the best run goes on), minibatches of M = 100, L = 1 sample, MAP weight prior N(0, I).
Each run writes one JSON under `--out` (default bench/results/aevb/) and is skipped when its JSON exists, so the
commands resume; `report` draws docs/aevb-fig2.png, docs/aevb-fig3.png and fills the tables of
docs/aevb-figures.md from the JSONs.

Usage (from the repository root):
  TFRECOG_DATA_DIR=../shared/data python scripts/aevb_figures.py fig2 --budget 300000 --frey-budget 1000000
  TFRECOG_DATA_DIR=../shared/data python scripts/aevb_figures.py fig3 --budget 200000
  python scripts/aevb_figures.py report
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import weakref
from pathlib import Path

import numpy as np

BOUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a compiled bound per model
JIT = [False]  # --jit: XLA for training and the bound
ROOT = Path(__file__).resolve().parents[1]
STEP_SIZES = (0.01, 0.02, 0.1)
BATCH = 100
FIG2_DATA = {  # dataset: (hidden units, likelihood)
    "binarized_mnist": (500, "bernoulli"),
    "frey_faces": (200, "gaussian"),
}
FIG2_LATENTS = (3, 5, 10, 20, 200)
FIG2_METHODS = {"aevb": "sgvb_b", "wake_sleep": "wake_sleep"}
FIG3_SIZES = (1000, 50000)
FIG3_METHODS = ("aevb", "wake_sleep", "mcem")
COLOURS = {"aevb": "tab:red", "wake_sleep": "tab:blue", "mcem": "tab:green"}
LABELS = {"aevb": "AEVB", "wake_sleep": "wake-sleep", "mcem": "MCEM (HMC)"}


# ----------------------------------------------------------------------------------------------------------------
# Building blocks


def checkpoints(budget: int, first: int) -> list[int]:
    """Examples seen at which a run is evaluated: `first` and then about 3 per decade up to `budget`."""
    points, value = [], float(first)
    while value < budget:
        points.append(int(round(value / BATCH)) * BATCH)
        value *= 10 ** (1 / 3)
    return sorted({*points, budget})


def subset(x, n: int):
    """n examples of x chosen by a fixed shuffle (the binarized MNIST test set is sorted by class)."""
    return x[np.sort(np.random.default_rng(0).permutation(len(x))[:n])]


def make_vae(event_size: int, latent: int, hidden: int, likelihood: str, estimator: str, seed: int):
    import tfrecog

    model = tfrecog.VAE(event_size=event_size, latent_size=latent, hidden_sizes=(hidden,), activation="tanh",
                        likelihood=likelihood, estimator=estimator, num_samples=1, weight_prior_scale=1.0,
                        kernel_initializer="paper", seed=seed)
    model.build((None, event_size))
    return model


def lower_bound(model, x, seed: int = 0) -> tuple[float, float]:
    """Mean and standard error over x of SGVB-B's single-sample bound -KL(q || p) + log p(x | z), z ~ q(z | x):
    an unbiased estimate of each example's lower bound."""
    from tfrecog._tf import tf

    fn = BOUNDS.get(model)
    if fn is None:
        def bound(xb, s):
            z, kl = model.sample_posterior_and_kl(xb, 1, s, True)
            return model.observation_log_prob(xb, z)[0] - kl

        fn = BOUNDS[model] = tf.function(bound, jit_compile=JIT[0], reduce_retracing=True)
    values = np.concatenate([fn(tf.constant(x[i:i + 500]), tf.constant([seed, i], tf.int32)).numpy()
                             for i in range(0, len(x), 500)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


class Trainer:
    """Trains one model by `method` in steps of examples seen: AEVB and wake-sleep by the fused `fit`, MCEM by
    `MCEMChains` (persistent chains: one HMC transition of 10 leapfrog steps per visit, then 5 weight updates).

    The step-size candidates share one model and its compiled training function: `restart(step_size)` puts back
    the initial weights and optimizer state and sets the learning rate, `snapshot`/`restore` keep the best."""

    def __init__(self, method: str, model, x, seed: int, jit_compile: bool = False):
        from tfrecog._tf import keras

        self.method, self.model, self.x, self.seed = method, model, x, seed
        # Without XLA by default: at these budgets (and a starved CPU) compiling took longer than training.
        model.compile(optimizer=keras.optimizers.Adagrad(STEP_SIZES[0]), steps_per_execution=50,
                      jit_compile=jit_compile)
        model.build_for_training()
        model.set_num_train_examples(len(x))
        self.initial = self.snapshot()

    def _new_chains(self):
        from tfrecog.estimators import MCEMChains, MCEMSettings

        settings = MCEMSettings(num_leapfrog_steps=10, num_burnin_steps=0, num_results=1, step_size=0.05,
                                target_accept_prob=0.9, m_steps=5)
        self.chains = MCEMChains(self.model, len(self.x), settings, seed=self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.order = np.zeros(0, np.int64)

    def snapshot(self):
        state = {"weights": self.model.get_weights(), "optimizer": [v.numpy() for v in self.model.optimizer.variables],
                 "seen": getattr(self, "seen", 0), "seconds": getattr(self, "seconds", 0.0),
                 "last": dict(getattr(self, "last", {}))}
        if self.method == "mcem" and hasattr(self, "chains"):
            state["chains"] = [v.numpy() for v in self.chains.state + self.chains.step_size]
            state["order"], state["rng"] = self.order.copy(), self.rng.bit_generator.state
        return state

    def restore(self, state):
        self.model.set_weights(state["weights"])
        for variable, value in zip(self.model.optimizer.variables, state["optimizer"]):
            variable.assign(value)
        self.seen, self.seconds, self.last = state["seen"], state["seconds"], dict(state["last"])
        if self.method == "mcem":
            self._new_chains()
            if "chains" in state:
                for variable, value in zip(self.chains.state + self.chains.step_size, state["chains"]):
                    variable.assign(value)
                self.order, self.rng.bit_generator.state = state["order"].copy(), state["rng"]

    def restart(self, step_size: float):
        self.restore(self.initial)
        self.model.optimizer.learning_rate = step_size

    def train_to(self, examples: int):
        start = time.perf_counter()
        if self.method == "mcem":
            history = []
            while self.seen < examples:
                if len(self.order) < BATCH:
                    self.order = np.concatenate([self.order, self.rng.permutation(len(self.x))])
                idx, self.order = self.order[:BATCH], self.order[BATCH:]
                history.append(self.chains.update(self.x[idx], idx, self.seen // BATCH))
                self.seen += BATCH
            if history:
                self.last = {k: float(np.mean([h[k] for h in history[-20:]])) for k in history[-1]}
        else:
            updates_per_step = max(1, min(50, math.ceil(len(self.x) / BATCH)))
            steps = math.ceil(max(0, examples - self.seen) / (BATCH * updates_per_step))
            if steps:
                history = self.model.fit(self.x, batch_size=BATCH, epochs=1, steps_per_epoch=steps, verbose=0)
                self.last = {k: float(v[-1]) for k, v in history.history.items()}
                self.seen = int(self.model.optimizer.iterations.numpy()) * BATCH
        self.seconds += time.perf_counter() - start

    def objective(self) -> float:
        """What the step size is chosen by: the training lower bound (AEVB, wake-sleep) or, for MCEM (which has no
        bound), the complete-data log-likelihood of its last 20 minibatches."""
        if self.method == "mcem":
            return self.last["complete_data"]
        return lower_bound(self.model, self.x[:2000], seed=1)[0]


def select_and_train(method, build, x, select: int, seed: int, log, jit_compile: bool = False):
    """The three Adagrad step sizes from the same initialisation for `select` examples each; returns the trainer
    holding the best (by `Trainer.objective`) and every candidate's score."""
    trainer = Trainer(method, build(), x, seed, jit_compile)
    scores, best = {}, None
    for step_size in STEP_SIZES:
        trainer.restart(step_size)
        trainer.train_to(select)
        score = trainer.objective()
        scores[step_size] = score if math.isfinite(score) else float("-inf")  # diverged
        log(f"  step size {step_size}: objective {score:.2f} after {trainer.seen} examples ({trainer.seconds:.0f} s)")
        if best is None or scores[step_size] > scores[best[0]]:
            best = (step_size, trainer.snapshot())
    trainer.restore(best[1])
    trainer.model.optimizer.learning_rate = best[0]
    return best[0], trainer, scores


def run_curve(name, method, build, x, evaluate, budget, select, seed, out: Path, log, extra: dict):
    path = out / f"{name}.json"
    if path.exists():
        log(f"{name}: done ({path})")
        return
    log(f"{name}: selecting the step size on {select} examples")
    step_size, trainer, scores = select_and_train(method, build, x, select, seed, log, JIT[0])
    points = []
    for examples in checkpoints(budget, select):
        trainer.train_to(examples)
        if points and points[-1]["examples"] == trainer.seen:
            continue  # a fused step of `fit` went past this checkpoint too
        start = time.perf_counter()
        values = evaluate(trainer.model)
        points.append({"examples": trainer.seen, "train_seconds": trainer.seconds,
                       "eval_seconds": time.perf_counter() - start, **values})
        log(f"{name}: {trainer.seen} examples, {trainer.seconds:.0f} s training: "
            + ", ".join(f"{k} {v:.2f}" for k, v in values.items() if not k.endswith("_se")))
    # Wall time per million examples from the first checkpoint on: without the step-size selection and compilation.
    first, last = points[0], points[-1]
    per_million = ((last["train_seconds"] - first["train_seconds"]) / max(1, last["examples"] - first["examples"])
                   * 1e6 if len(points) > 1 else trainer.seconds / trainer.seen * 1e6)
    result = {"name": name, "method": method, "step_size": step_size, "selection": {str(k): v for k, v in
                                                                                     scores.items()},
              "select_examples": select, "budget": budget, "train_examples": len(x), "points": points,
              "train_seconds": trainer.seconds, "seconds_per_million": per_million,
              "command": " ".join(["python scripts/aevb_figures.py", *sys.argv[1:]]), **extra}
    from tfrecog import io

    io.write_json(path, result)


# ----------------------------------------------------------------------------------------------------------------
# The figures


def fig2(args, log):
    from tfrecog import data

    for dataset, (hidden, likelihood) in FIG2_DATA.items():
        if args.datasets and dataset not in args.datasets:
            continue
        train = data.load(dataset, "train").x
        test = data.load(dataset, "test").x
        eval_train, eval_test = subset(train, args.eval_examples or 1000), subset(test, args.eval_examples or 1000)
        budget = args.frey_budget if dataset == "frey_faces" else args.budget
        for latent in args.latents or FIG2_LATENTS:
            for method, estimator in FIG2_METHODS.items():
                def build(latent=latent, estimator=estimator, hidden=hidden, likelihood=likelihood,
                          size=train.shape[1]):
                    return make_vae(size, latent, hidden, likelihood, estimator, args.seed)

                def evaluate(model, eval_train=eval_train, eval_test=eval_test):
                    (tr, tr_se), (te, te_se) = lower_bound(model, eval_train), lower_bound(model, eval_test)
                    return {"train": tr, "train_se": tr_se, "test": te, "test_se": te_se}

                run_curve(f"fig2-{dataset}-{latent}-{method}", method, build, train, evaluate, budget,
                          args.select, args.seed, args.out, log,
                          {"figure": 2, "dataset": dataset, "latent": latent, "hidden": hidden,
                           "eval_examples": len(eval_train)})


def fig3(args, log):
    from tfrecog import data
    from tfrecog.estimators import MCEMSettings
    from tfrecog.marginal import hmc_marginal_log_likelihood

    full = data.load("binarized_mnist", "train").x
    test = subset(data.load("binarized_mnist", "test").x, args.eval_examples or 100)
    settings = MCEMSettings(num_leapfrog_steps=10, num_burnin_steps=args.hmc_burnin, step_size=0.05,
                            target_accept_prob=0.9)
    for size in args.sizes or FIG3_SIZES:
        train = full[:size]
        eval_train = subset(train, args.eval_examples or 100)
        for method in FIG3_METHODS:
            estimator = FIG2_METHODS.get(method, "sgvb_b")

            def build(estimator=estimator):
                return make_vae(784, 3, 100, "bernoulli", estimator, args.seed)

            def evaluate(model, eval_train=eval_train):
                values = {}
                for split, x in (("train", eval_train), ("test", test)):
                    result = hmc_marginal_log_likelihood(model, x, num_samples=args.hmc_samples, settings=settings,
                                                         batch_size=len(x), seed=args.seed)
                    values[split], values[f"{split}_se"] = result.log_likelihood, result.stderr
                return values

            run_curve(f"fig3-n{size}-{method}", method, build, train, evaluate, args.budget, args.select, args.seed,
                      args.out, log, {"figure": 3, "dataset": "binarized_mnist", "latent": 3, "hidden": 100,
                                      "eval_examples": len(eval_train), "hmc_samples": args.hmc_samples,
                                      "hmc_burnin": args.hmc_burnin})


# ----------------------------------------------------------------------------------------------------------------
# The report: figures and tables from the JSONs


def load_runs(out: Path, figure: int) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob(f"fig{figure}-*.json"))]


def _plot(panels, shape, path, ylabel):
    """panels: (row, column, title, runs); one axis per panel of a rows x columns grid, train solid, test dashed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rows, cols = shape
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    used = set()
    for row, col, title, runs in panels:
        ax = axes[row, col]
        used.add((row, col))
        for run in runs:
            x = [p["examples"] for p in run["points"]]
            colour = COLOURS[run["method"]]
            ax.plot(x, [p["train"] for p in run["points"]], "-", color=colour, label=f"{LABELS[run['method']]} train")
            ax.plot(x, [p["test"] for p in run["points"]], "--", color=colour, label=f"{LABELS[run['method']]} test")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training examples seen", fontsize=8)
        ax.tick_params(labelsize=7)
        if col == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if (row, col) == min(used):
            ax.legend(fontsize=6)
    for row in range(rows):
        for col in range(cols):
            if (row, col) not in used:
                axes[row, col].axis("off")
    fig.tight_layout()
    from tfrecog import io

    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def table(runs: list[dict], key_columns) -> str:
    head = [name for name, _ in key_columns]
    lines = ["| " + " | ".join(head + ["method", "step size", "examples seen", "train", "test",
                                      "train s / 10^6 examples"]) + " |",
             "| " + " | ".join(["---"] * (len(head) + 6)) + " |"]
    for run in runs:
        last = run["points"][-1]
        cells = [str(get(run)) for _, get in key_columns]
        lines.append("| " + " | ".join(cells + [LABELS[run["method"]], str(run["step_size"]), f"{last['examples']:,}",
                                                f"{last['train']:.2f} ± {last['train_se']:.2f}",
                                                f"{last['test']:.2f} ± {last['test_se']:.2f}",
                                                f"{run['seconds_per_million']:.0f}"]) + " |")
    return "\n".join(lines)


def report(args, log):
    docs = ROOT / "docs"
    blocks = {}
    runs2 = load_runs(args.out, 2)
    if runs2:
        panels = []
        for row, dataset in enumerate(FIG2_DATA):
            for col, latent in enumerate(FIG2_LATENTS):
                chosen = [r for r in runs2 if r["dataset"] == dataset and r["latent"] == latent]
                if chosen:
                    panels.append((row, col, f"{dataset}, Nz = {latent}", chosen))
        _plot(panels, (len(FIG2_DATA), len(FIG2_LATENTS)), docs / "aevb-fig2.png", "lower bound per example (nats)")
        runs2.sort(key=lambda r: (r["dataset"], r["latent"], r["method"]))
        blocks["aevb-fig2"] = table(runs2, [("dataset", lambda r: r["dataset"]), ("Nz", lambda r: r["latent"])])
    runs3 = load_runs(args.out, 3)
    if runs3:
        panels = []
        for col, size in enumerate(FIG3_SIZES):
            chosen = [r for r in runs3 if r["train_examples"] == size]
            if chosen:
                panels.append((0, col, f"N_train = {size:,}, Nz = 3", chosen))
        _plot(panels, (1, len(FIG3_SIZES)), docs / "aevb-fig3.png", "marginal log-likelihood (nats)")
        runs3.sort(key=lambda r: (r["train_examples"], FIG3_METHODS.index(r["method"])))
        blocks["aevb-fig3"] = table(runs3, [("N_train", lambda r: f"{r['train_examples']:,}")])
    page = docs / "aevb-figures.md"
    text = page.read_text()
    pattern = re.compile(r"(<!-- BEGIN generated:(?P<name>aevb-fig\d)[^>]*-->\n)(.*?)"
                         r"(<!-- END generated:(?P=name) -->)", re.S)
    text = pattern.sub(lambda m: m[1] + blocks.get(m["name"], "(no runs yet)") + "\n" + m[4], text)
    from tfrecog import io

    io.write_text(page, text)
    log(f"wrote {page.relative_to(ROOT)} and the figures of {', '.join(sorted(blocks)) or 'nothing'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["fig2", "fig3", "report"])
    parser.add_argument("--budget", type=int, default=300_000, help="training examples seen per run (fig2: MNIST)")
    parser.add_argument("--frey-budget", type=int, default=1_000_000, help="fig2: training examples per Frey run")
    parser.add_argument("--select", type=int, default=10_000, help="examples per step-size candidate")
    parser.add_argument("--eval-examples", type=int, help="train and test examples per evaluation (fig2: 1000, "
                        "fig3: 100)")
    parser.add_argument("--datasets", nargs="*", help="fig2: a subset of " + ", ".join(FIG2_DATA))
    parser.add_argument("--latents", nargs="*", type=int, help="fig2: a subset of Nz")
    parser.add_argument("--sizes", nargs="*", type=int, help="fig3: a subset of the training-set sizes")
    parser.add_argument("--hmc-samples", type=int, default=50, help="fig3: L of the marginal-likelihood estimator")
    parser.add_argument("--hmc-burnin", type=int, default=100, help="fig3: its burn-in transitions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", action="store_true", help="compile training with XLA (faster for long runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "aevb")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    JIT[0] = bool(args.jit)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    {"fig2": fig2, "fig3": fig3, "report": report}[args.what](args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
