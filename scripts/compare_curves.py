"""Plots validation ELBO per epoch of several run folders on one figure.

Usage: python scripts/compare_curves.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]
"""

import sys
from pathlib import Path

import numpy as np

from tfrecog import plots

out, pairs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
plt = plots._plt()
fig, ax = plt.subplots(figsize=(6.5, 4))
for label, run in pairs:
    history = plots.read_history(Path(run) / "history.csv")
    epochs = np.asarray(history["epoch"]) + 1
    (line,) = ax.plot(epochs, history["val_elbo"], label=label)
    ax.plot(epochs, history["elbo"], alpha=0.4, linestyle="--", color=line.get_color())
ax.set_xlabel("epoch (500 updates of minibatch 100)")
ax.set_ylabel("ELBO per digit (nats); dashed: training")
ax.set_ylim(-160, -85)
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="lower right")
plots._save(fig, out)
print(f"wrote {out}")
