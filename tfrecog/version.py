"""The version of tfrecog (read by `tfrecog.__version__`, exported artifacts' metadata and setup.py)."""

__version__ = "0.1.0"
