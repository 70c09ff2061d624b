"""tfrecog's benchmark suite (code only; what it measured is in bench/results/).

Run every benchmark as a module from the repository root, e.g. `python -m bench.run`: the root comes first on
sys.path, so the suite times this checkout's tfrecog (bench/README.md).
"""
