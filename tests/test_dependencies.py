"""Every third-party module the project imports is declared in pyproject.toml, so a fresh install has it.

An environment that lived through earlier installs keeps packages a fresh one no longer brings (typer 0.29
stopped depending on click while ``cli.py`` still imported it); only a check of the declarations catches that.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from bench.engines import ENGINES

try:
    import tomllib
except ImportError:  # Python 3.10: the dev extra brings tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Top-level packages: the patterns of setuptools' package discovery ("zoo*" takes zoo and zoo.models.*).
PACKAGES = sorted(pattern.rstrip("*") for pattern in SETUPTOOLS["packages"]["find"]["include"])
OWN = set(PACKAGES) | set(SETUPTOOLS["py-modules"]) | {"conftest", "synthetic"}


def _distribution(requirement: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*groups: str) -> set[str]:
    """Distributions of the runtime dependencies and of the named optional groups, with the groups a group names
    of this project itself (``convbench[all]``)."""
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    pending, seen = list(groups), set()
    while pending:
        group = pending.pop()
        if group in seen:
            continue
        seen.add(group)
        for requirement in project["optional-dependencies"][group]:
            if _distribution(requirement) == _normalise(project["name"]):
                pending += re.search(r"\[(.*)\]", requirement).group(1).split(",")
            else:
                requirements.append(requirement)
    return {_distribution(requirement) for requirement in requirements}


def _imported_top_level(paths: list[Path]) -> dict[str, Path]:
    """Top-level module name -> the first file importing it (relative imports excluded)."""
    found: dict[str, Path] = {}
    for path in paths:
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], file.relative_to(REPO) if file.is_relative_to(REPO) else file)
    return found


def _undeclared(paths: list[Path], declared: set[str]) -> list[str]:
    providers = metadata.packages_distributions()
    problems = []
    for module, file in sorted(_imported_top_level(paths).items()):
        if module in sys.stdlib_module_names or module in OWN or module == "__future__":
            continue
        # A module nobody installed here (tomli on 3.11) is named after its distribution.
        distributions = {_normalise(name) for name in providers.get(module, [module])}
        if not distributions & declared:
            problems.append(f"{module} (imported by {file}; provided by {', '.join(sorted(distributions))})")
    return problems


def _package_paths() -> list[Path]:
    return [REPO / name for name in PACKAGES] + [
        REPO / f"{name}.py" for name in sorted(SETUPTOOLS["py-modules"])]


def test_package_imports_are_runtime_dependencies_or_engine_extras():
    # The cuda extra only adds TensorFlow's GPU libraries, which no module imports by name. An engine's runtime
    # (jax, onnxruntime, openvino) comes with its extra; the test below holds each engine's module to its own.
    assert _undeclared(_package_paths(), _declared("all")) == []


def test_each_engine_installed_by_an_extra_has_its_imports_in_that_extra():
    for engine in ENGINES.values():
        extra = re.fullmatch(r"pip install -e '\.\[(\w+)\]'", engine.install)
        if extra is None:
            continue
        module = REPO / (engine.backend.split(":")[0].replace(".", "/") + ".py")
        assert _undeclared([module], _declared(extra.group(1))) == [], engine.name
        # Its packages, as the table lists them, are what that extra installs.
        providers = metadata.packages_distributions()
        for package in engine.packages:
            assert {_normalise(name) for name in providers.get(package, [package])} & _declared(extra.group(1)), (
                engine.name, package)
    assert _declared("all") >= _declared("jax") | _declared("onnx") | _declared("openvino")


def test_test_imports_are_declared_for_the_dev_install():
    assert _undeclared([REPO / "tests"], _declared("dev")) == []


def test_the_check_catches_an_undeclared_import(tmp_path):
    module = tmp_path / "uses_click.py"
    module.write_text("import click\nimport json\nfrom zoo import build\nimport pytest\n")
    assert _undeclared([module], _declared()) == [f"click (imported by {module}; provided by click)",
                                                 f"pytest (imported by {module}; provided by pytest)"]
    assert _undeclared([module], _declared("dev")) == [f"click (imported by {module}; provided by click)"]
