"""tfrecog-runtime is a distribution of its own (export/pyproject.toml: numpy and onnxruntime only): installed alone
into a fresh virtual environment (`pip install --no-index --no-deps --no-build-isolation ./export`; numpy and
onnxruntime come from the system site packages, nothing downloads), it runs an encoder exported by tfrecog with
TensorFlow, Keras and tfrecog made unimportable. About 10 s here.

Tolerance 3e-5 absolute: Keras and ONNX Runtime differ only in float32 summation order (tests/test_export.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import tfrecog
from tfrecog import export

REPO = Path(__file__).resolve().parents[1]

# Run inside the virtual environment: heavy packages are refused at import, so a hidden dependency fails loudly.
SCRIPT = r"""
import importlib.abc, json, sys
BLOCKED = ("tensorflow", "keras", "tfrecog", "tf2onnx", "tensorflow_probability")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked in this test: {name}")
        return None

sys.meta_path.insert(0, Block())
import importlib.metadata
import numpy as np
import tfrecog_runtime

x = np.load(sys.argv[2])
encoder = tfrecog_runtime.load(sys.argv[1])
mean = encoder(x)["mean"]
np.save(sys.argv[3], mean)
print(json.dumps({"file": tfrecog_runtime.__file__, "version": importlib.metadata.version("tfrecog-runtime"),
                  "requires": importlib.metadata.requires("tfrecog-runtime"),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


def test_runtime_installs_alone_and_runs_an_exported_encoder(tmp_path):
    model = tfrecog.models.VAE(12, 3, (8,), seed=0)
    model.build((None, 12))
    onnx_path = export.encoder(model, tmp_path / "encoder.onnx", outputs="mean")
    x = (np.random.default_rng(0).random((5, 12)) < 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    source = tmp_path / "src"
    shutil.copytree(REPO / "export", source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300,
                   env=env)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", str(source)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (tmp_path / "run.py").write_text(SCRIPT)
    done = subprocess.run([str(python), "run.py", str(onnx_path), "x.npy", "mean.npy"], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(venv), report["file"]  # the installed copy, not the checkout's
    assert sorted(report["requires"]) == ["numpy", "onnxruntime"] and report["heavy"] == []
    np.testing.assert_allclose(np.load(tmp_path / "mean.npy"), model.export_outputs(x)["mean"].numpy(), atol=3e-5,
                               rtol=0)
