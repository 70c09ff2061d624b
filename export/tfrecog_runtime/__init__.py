"""tfrecog_runtime: run exported tfrecog encoders with onnxruntime and numpy only (never TensorFlow).

`load(path)` returns an `Encoder`; `encoder(x, noise=None)` returns a dict of numpy outputs named as exported.
"""

from .runtime import Encoder, InputError, load, session_options

__version__ = "0.1.0"

__all__ = ["Encoder", "InputError", "load", "session_options"]
