"""Installs `tfrecog` (the library, with the zoo's cards and recipes; the weights are fetched on first use, see
`tfrecog.zoo.weights_path`) and `tfrecog_runtime` (from export/; also a distribution of its own,
`pip install ./export`)."""

import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _source_module(name: str):
    """tfrecog/<name>.py of this source tree, loaded by path (io.py and version.py import only the standard library)."""
    spec = importlib.util.spec_from_file_location(f"_tfrecog_setup_{name}", HERE / "tfrecog" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithCommit(build_py):
    """Records the source tree's git commit in the installed package (tfrecog/_commit.txt), so run folders and zoo
    cards made with an installed copy name the code that made them; and the source tree's zoo/ folder
    (tfrecog/_zoo_source.txt), the default source of the zoo's weights while that folder exists (offline installs
    from a checkout keep working; a wheel used elsewhere sets TFRECOG_ZOO_URL)."""

    def run(self):
        super().run()
        commit, dirty = _source_module("io").git_state()
        if commit is not None:
            target = Path(self.build_lib) / "tfrecog" / "_commit.txt"
            target.write_text(commit + (" (with uncommitted changes)" if dirty else "") + "\n")
        if (HERE / "zoo" / "weights").is_dir():
            (Path(self.build_lib) / "tfrecog" / "_zoo_source.txt").write_text(str(HERE / "zoo") + "\n")


setup(
    name="tfrecog",
    version=_source_module("version").__version__,
    description="Recognition models (amortised variational inference) for deep directed latent-variable models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tfrecog", "tfrecog.*"]) + ["tfrecog._zoo", "tfrecog_runtime"],
    package_dir={"tfrecog._zoo": "zoo", "tfrecog_runtime": "export/tfrecog_runtime"},
    # The cards and recipes only: weights are downloaded, verified and cached on first use (tfrecog.zoo).
    package_data={"tfrecog._zoo": ["*.json", "recipes/*.json"]},
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
