"""The model zoo: classic CNNs in PyTorch and TensorFlow behind one registry.

A model is one folder under ``zoo/models/`` (its spec, its torch definition, its Keras definition); importing
this package registers every folder found there and imports neither framework; ``build`` imports only the one
asked for.
"""

from zoo._registry import (
    FRAMEWORKS,
    Framework,
    UnknownNameError,
    build,
    framework_version,
    get_framework,
    get_spec,
    installed_frameworks,
    list_models,
    register_model,
    resolve_framework,
    resolve_models,
)
from zoo._spec import IMAGES, LayerSpec, LayerTableBuilder, ModelSpec

__all__ = [
    "FRAMEWORKS",
    "IMAGES",
    "Framework",
    "LayerSpec",
    "LayerTableBuilder",
    "ModelSpec",
    "UnknownNameError",
    "build",
    "framework_version",
    "get_framework",
    "get_spec",
    "installed_frameworks",
    "list_models",
    "register_model",
    "resolve_framework",
    "resolve_models",
]

# Last, so that a model folder can import the names above from ``zoo`` while it registers.
from zoo import models as _models  # noqa: E402, F401, I001  (registers every model folder)
