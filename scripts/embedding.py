"""The paper's 2-D embedding figure: posterior means of the test set coloured by label (Rezende et al. Figure 3b).

For a model with 2 latent dimensions the means are plotted as they are; otherwise their top two principal
components. Usage: TFRECOG_DATA_DIR=../shared/data python scripts/embedding.py NAME_OR_RUN OUT.png
"""

import sys  # noqa: I001
from pathlib import Path

# This checkout's tfrecog and zoo/, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tfrecog import data, loader, plots

name, out = sys.argv[1], sys.argv[2]
model, recipe = loader.load(name)  # a run folder or a zoo name
test = data.load(recipe["dataset"], recipe.get("test_split", "test"), binarize=recipe.get("binarize"))
means = model(test.x)  # posterior means E[z | x] (a list with one entry per latent layer for layered models)
if isinstance(means, (list, tuple)):
    means = np.concatenate([np.asarray(m) for m in means], axis=-1)
means = np.asarray(means)
points, axis_labels = plots.embed_2d(means)
plots.embedding(points, test.y, out, title=f"{Path(name).name}: test posterior means E[z|x]", axis_labels=axis_labels)
print(f"wrote {out}")
