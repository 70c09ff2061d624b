"""Peak RSS of one importance-sampled evaluation in a fresh process (so no other framework's memory is counted).

  python -m bench.memory_probe {tfrecog,torch,jax} {vae,sbn} K NUM_TEST_POINTS

Prints one JSON line: RSS before the evaluation (framework imported, model built), peak RSS during it (compilation
included) and their difference.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see run.py
from .common import binary_data, measure_peak_rss  # noqa: E402


def main(argv):
    framework, model_name, samples, num_examples = argv[0], argv[1], int(argv[2]), int(argv[3])
    x = binary_data(num_examples, seed=1)

    def prepare():
        if framework == "tfrecog":
            from . import tfrecog_bench as module
        elif framework == "torch":
            from . import ref_torch as module
        elif framework == "jax":
            from . import ref_jax as module
        else:
            raise SystemExit(f"framework must be tfrecog, torch or jax; got {framework!r}")
        return module.memory_work(model_name, samples, x)

    result = measure_peak_rss(prepare)
    result.update(framework=framework, model=model_name, samples=samples, num_examples=num_examples)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
