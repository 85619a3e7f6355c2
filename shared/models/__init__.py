"""Models as plugins: what a model declares (spec.py), the built-in ones (builtin.py), manifests
in a directory (manifest.py), and the catalogue that finds them all (catalogue.py).

A team ships its model as a Python package with an entry point in the `asyncinfer.models` group
that names a `ModelSpec` (or a function returning one or a list of them), or as a manifest file
in a directory of ASYNCINFER_MODEL_DIRS. Nothing here imports TensorFlow: the gateway reads specs
only; the worker calls `spec.build` (workers/model/loading.py)."""

from shared.models.spec import InputSpec, ModelRef, ModelSpec

__all__ = ["InputSpec", "ModelRef", "ModelSpec"]
