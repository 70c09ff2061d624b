"""Installs `tfrecog` (the library, with the zoo's cards and weights) and `tfrecog_runtime` (the export/ folder)."""

from setuptools import find_packages, setup

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
        "test": ["pytest>=8", "scikit-learn"],
        "runtime": ["onnxruntime", "numpy"],
        "bench": ["torch==2.13.0", "jax", "jaxlib", "optax"],
    },
    entry_points={"console_scripts": ["tfrecog=tfrecog.cli:main"]},
)
