"""The model registry: names to specs, and lazily imported per-framework builders."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from zoo._spec import ModelSpec


@dataclass(frozen=True)
class Framework:
    """A deep-learning framework the zoo writes models in.

    ``package`` is the module whose presence means the framework is installed (found without importing it),
    ``distribution`` the pip distribution that carries its version. Each registered model names a builder for it,
    found by default in the module ``model_module`` of the model's family folder
    (``zoo/models/<family>/<model_module>.py``); ``counts`` ("module:function") counts a built model's trainable
    parameters, kept statistics and forward MACs per image, as the framework itself sees them. Which engines run
    its definitions is ``bench.engines``' table.
    """

    name: str
    title: str
    package: str
    distribution: str
    model_module: str
    counts: str
    aliases: tuple[str, ...] = ()


# The one table of frameworks: everything that branches on a framework reads it.
_FRAMEWORK_TABLE: dict[str, Framework] = {
    framework.name: framework
    for framework in (
        Framework("torch", "PyTorch", package="torch", distribution="torch", model_module="torch_model",
                  counts="zoo.torch_common:model_counts", aliases=("pytorch",)),
        Framework("tf", "TensorFlow", package="tensorflow", distribution="tensorflow", model_module="keras_model",
                  counts="zoo.keras_common:model_counts", aliases=("tensorflow", "keras")),
    )
}
FRAMEWORKS: tuple[str, ...] = tuple(_FRAMEWORK_TABLE)
_FRAMEWORK_ALIASES = {spelling: framework.name for framework in _FRAMEWORK_TABLE.values()
                      for spelling in (framework.name, *framework.aliases)}


class UnknownNameError(ValueError):
    """A model or framework name that the registry does not know; the message names the known ones."""

    def __init__(self, what: str, name: str, known: list[str]) -> None:
        self.what, self.name, self.known = what, name, known
        close = difflib.get_close_matches(name, known, n=1)
        self.suggestion = close[0] if close else None
        hint = f" Did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown {what} {name!r}. Known: {', '.join(known)}.{hint}")


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    builders: dict[str, str]  # framework -> "module:function", imported only when that framework is built


_REGISTRY: dict[str, _Entry] = {}


def register_model(spec: ModelSpec, family: str | None = None, **builders: str) -> ModelSpec:
    """Add a model with one builder per framework, named as ``"module:function"`` so nothing is imported now.

    A model folder calls ``register_model(SPEC, family=__name__)``: each framework's builder is then the function
    named after the model (``alexnet-2012`` -> ``alexnet_2012``) in the folder's module for that framework
    (``torch_model``, ``keras_model``). Builders can also be named one by one,
    ``register_model(spec, torch="pkg.mod:fn", tf="pkg.other:fn")``. Every framework of the table needs a builder,
    so a model can never be missing from one framework's benchmark.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    if family is not None:
        function = spec.name.replace("-", "_")
        builders = {name: f"{family}.{framework.model_module}:{function}" for name, framework in
                    _FRAMEWORK_TABLE.items()} | builders
    if set(builders) != set(FRAMEWORKS):
        raise ValueError(f"model {spec.name!r} needs one builder per framework ({', '.join(FRAMEWORKS)}). "
                         f"Received: {', '.join(sorted(builders)) or 'none'}")
    _REGISTRY[spec.name] = _Entry(spec, dict(builders))
    return spec


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` filters with shell wildcards (``alexnet*``)."""
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def resolve_models(patterns: list[str]) -> list[str]:
    """Expand names, wildcards and ``all`` into model names, in the order given, without repeats."""
    resolved: list[str] = []
    for pattern in patterns:
        if pattern == "all":
            matches = list_models()
        elif any(ch in pattern for ch in "*?["):
            matches = list_models(pattern)
            if not matches:
                raise UnknownNameError("model pattern", pattern, list_models())
        else:
            matches = [get_spec(pattern).name]
        resolved.extend(name for name in matches if name not in resolved)
    return resolved


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; raises ``UnknownNameError`` (a ``ValueError``) for an unknown name."""
    try:
        return _REGISTRY[name].spec
    except KeyError:
        raise UnknownNameError("model", name, list_models()) from None


def resolve_framework(framework: str) -> str:
    """Canonical framework name (``"torch"``, ``"tf"``) for any accepted spelling."""
    try:
        return _FRAMEWORK_ALIASES[framework.strip().lower()]
    except KeyError:
        raise UnknownNameError("framework", framework, sorted(_FRAMEWORK_ALIASES)) from None


def get_framework(framework: str) -> Framework:
    """The table entry of a framework, by any accepted spelling."""
    return _FRAMEWORK_TABLE[resolve_framework(framework)]


def installed_frameworks() -> list[str]:
    """Canonical names of the frameworks whose package is installed, found without importing them."""
    return [name for name, framework in _FRAMEWORK_TABLE.items() if importlib.util.find_spec(framework.package)]


def framework_version(framework: str) -> str | None:
    """The installed version of a framework's distribution, read without importing it; None if absent."""
    try:
        return metadata.version(get_framework(framework).distribution)
    except metadata.PackageNotFoundError:
        return None


def build(name: str, framework: str, **options: Any) -> Any:
    """Build model ``name`` in ``framework`` with random weights.

    Returns a ``torch.nn.Module`` for torch and a ``keras.Model`` for tf. Only that framework is imported.
    """
    spec = get_spec(name)
    framework = resolve_framework(framework)
    module_name, function_name = _REGISTRY[spec.name].builders[framework].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    return builder(**options)
