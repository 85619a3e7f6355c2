"""The worker's model: the `Classifier` interface (classifier.py), where weights come from
(weights.py), the two runtimes (keras_runtime.py, onnx_runtime.py), and loading one (loading.py)."""
