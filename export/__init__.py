"""tfrecog_runtime: run exported tfrecog encoders with onnxruntime and numpy only (never TensorFlow)."""
