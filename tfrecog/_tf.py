"""Quiet, single place where TensorFlow, Keras and TFP are imported.

Setting the Keras backend and TensorFlow's log level must happen before the first import. TensorFlow's native
libraries print start-up lines (oneDNN, CUDA drivers, absl's "before InitializeLog" notice) to the process's stderr
before any log level applies, and the CUDA platform logs an error where it finds no driver. Unless the user asked for
TensorFlow's logs (TF_CPP_MIN_LOG_LEVEL=0, which `tfrecog --verbose` sets), those lines are held back while
TensorFlow loads, and shown only if the import fails.
"""

import contextlib
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _native_stderr_held_back(hold: bool):
    """Redirects file descriptor 2 into a temporary file while the block runs; the captured text is written back
    to stderr if the block raises (a failed import keeps its native diagnostics), and dropped otherwise."""
    if not hold:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (an embedded interpreter): nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _native_stderr_held_back(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() not in ("0", "")):
    import keras  # noqa: E402
    import tensorflow as tf  # noqa: E402
    import tensorflow_probability as tfp  # noqa: E402

    # Finding the devices loads the CUDA platform, which logs its own start-up errors ("failed call to cuInit"
    # without a driver); done here, so they are held back too. Logical devices stay unconfigured.
    tf.config.list_physical_devices()

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "tfrecog needs Keras 3 with the TensorFlow backend; "
        f"KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
    )

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["keras", "tf", "tfp", "tfd", "tfb"]
