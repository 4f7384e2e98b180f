"""The zoo's model families, one folder each: ``<family>/__init__.py`` holds the specs and registers them,
``torch_model.py`` and ``keras_model.py`` the two definitions.

Importing this package imports every family folder found here, which registers its models; a spec names no
framework, so nothing imports torch or TensorFlow until a model is built.
"""

import importlib
import pkgutil

for _family in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
    if _family.ispkg:
        importlib.import_module(f"{__name__}.{_family.name}")
