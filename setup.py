"""Installs `tfrecog` (the library, with the zoo's cards and weights) and `tfrecog_runtime` (the export/ folder)."""

import subprocess
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildWithCommit(build_py):
    """Records the source tree's git commit in the installed package (tfrecog/_commit.txt), so run folders and zoo
    cards made with an installed copy name the code that made them."""

    def run(self):
        super().run()
        try:
            here = Path(__file__).resolve().parent
            out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=here, capture_output=True,
                                 text=True, timeout=10)
            lines = out.stdout.split()
            if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == here:
                dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                       capture_output=True, text=True, timeout=10).stdout.strip()
                target = Path(self.build_lib) / "tfrecog" / "_commit.txt"
                target.write_text(lines[1] + (" (with uncommitted changes)" if dirty else "") + "\n")
        except (OSError, subprocess.SubprocessError):
            pass

setup(
    name="tfrecog",
    version="0.1.0",
    description="Recognition models (amortised variational inference) for deep directed latent-variable models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tfrecog", "tfrecog.*"]) + ["tfrecog._zoo", "tfrecog_runtime"],
    package_dir={"tfrecog._zoo": "zoo", "tfrecog_runtime": "export"},
    package_data={"tfrecog._zoo": ["*.json", "weights/*.weights.h5"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-probability[tf]>=0.25",
        "keras>=3.10",
        "tensorflow-datasets",
        "tensorboard",
        "onnx",
        "tf2onnx",
        "onnxruntime",
        "matplotlib",
        "mlxtend",
        "scipy",
        "numpy",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest>=8", "scikit-learn", "hypothesis>=6"],
        "runtime": ["onnxruntime", "numpy"],
        "bench": ["torch==2.13.0", "jax", "jaxlib", "optax"],
    },
    entry_points={"console_scripts": ["tfrecog=tfrecog.cli:main"]},
    cmdclass={"build_py": BuildWithCommit},
)
