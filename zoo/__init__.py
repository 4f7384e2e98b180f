"""The model zoo: classic CNNs in PyTorch and TensorFlow behind one registry.

Importing this package imports neither framework; ``build`` imports only the one asked for.
"""

from zoo import specs as _specs  # noqa: F401  (registers the models)
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
from zoo._spec import LayerSpec, LayerTableBuilder, ModelSpec

__all__ = [
    "FRAMEWORKS",
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
