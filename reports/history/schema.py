"""The history's tables: columns and SQL types taken from the record's types, and the marks a database carries."""

from __future__ import annotations

import hashlib
import json
import types
import typing
from dataclasses import fields
from typing import Any

from bench.config import Config
from bench.record import Derived, Result

# Bumped when what the tables mean changes; a change of the columns themselves (a field added to Config, Result or
# Derived) is caught by their fingerprint, below. Either way a database of another version asks to be rebuilt.
SCHEMA = 2
FORMAT = "convbench run history"


def config_key(config: Config) -> str:
    """How the history stores and matches a configuration: its ``Config.key()`` as JSON."""
    return json.dumps(list(config.key()))


# What Config.key() holds, as a shape: trends are keyed by it, so a database written while the key had other
# fields would silently split every trend in two; such a database asks to be rebuilt instead.
CONFIG_KEY_FORMAT = config_key(Config(model="", framework="", device="cpu", mode="forward", batch_size=1))

_SQL_TYPES: dict[Any, str] = {
    int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN", str: "VARCHAR",
    tuple[float, ...]: "DOUBLE[]", tuple[int, ...]: "BIGINT[]",
}


def sql_type(python_type: Any) -> str:
    """The DuckDB type of a field of ``python_type``: ``X | None`` as X, a dict as VARCHAR holding JSON."""
    if isinstance(python_type, types.UnionType) or typing.get_origin(python_type) is typing.Union:
        present = [argument for argument in typing.get_args(python_type) if argument is not type(None)]
        if len(present) == 1:
            return sql_type(present[0])
    if python_type is dict or typing.get_origin(python_type) is dict:
        return "VARCHAR"
    if python_type in _SQL_TYPES:
        return _SQL_TYPES[python_type]
    # A new field of a type with no column type stops every history command at import, not a run's rows later.
    raise TypeError(f"the history has no column type for {python_type!r}; add one to reports/history/schema.py")


def cell(value: Any) -> Any:
    """A field's value as its column takes it: a dict as JSON text, a sequence as a list."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, tuple):
        return list(value)
    return value


def _is_nested_sequence(python_type: Any) -> bool:
    return typing.get_origin(python_type) is tuple and any(
        typing.get_origin(argument) is tuple for argument in typing.get_args(python_type))


def _result_fields() -> dict[str, Any]:
    """The fields of ``Result`` the history stores, with their types.

    Sequences of sequences (``rank_samples_ms``: every rank's own samples) are left out: the history indexes runs
    for trends across them, and what a trend reads of them is derived already (``Derived``'s rank medians), while
    the rank-by-rank samples multiply the stored samples by the rank count for no query here. They stay in the run
    file, which the history is only an index of.
    """
    hints = typing.get_type_hints(Result)
    return {item.name: hints[item.name] for item in fields(Result)
            if item.name != "config" and not _is_nested_sequence(hints[item.name])}


# A run's environment, which no one type describes: the run row's columns are listed here.
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR PRIMARY KEY"), ("started_at", "TIMESTAMP"), ("finished_at", "TIMESTAMP"),
    ("command", "VARCHAR"), ("git_commit", "VARCHAR"), ("git_dirty", "BOOLEAN"), ("host", "VARCHAR"),
    ("cpu_model", "VARCHAR"), ("cpu_cores", "INTEGER"), ("threads", "INTEGER"), ("memory_bytes", "BIGINT"),
    ("gpu_names", "VARCHAR[]"), ("framework_versions", "VARCHAR"), ("environment", "VARCHAR"),
    ("source", "VARCHAR"), ("content_hash", "VARCHAR"), ("file_hash", "VARCHAR"), ("added_at", "TIMESTAMP"),
)
_CONFIG_HINTS = typing.get_type_hints(Config)
CONFIG_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (item.name, sql_type(_CONFIG_HINTS[item.name])) for item in fields(Config))
MEASURED_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (name, sql_type(python_type)) for name, python_type in {**_result_fields(), **Derived.column_types()}.items())
# Where a result sits and what it is keyed by, then every value of Config.to_dict(), the Result and its Derived.
RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR"), ("position", "INTEGER"), ("configuration", "VARCHAR"), ("config_key", "VARCHAR"),
    ("machine_id", "VARCHAR"), ("machine", "VARCHAR"), ("framework_version", "VARCHAR"),
    *CONFIG_COLUMNS, *MEASURED_COLUMNS,
)
# What a database's columns were, kept in it: a field added since makes it ask to be rebuilt, with no edit here.
COLUMNS_FINGERPRINT = hashlib.sha256(json.dumps([RUN_COLUMNS, RESULT_COLUMNS]).encode()).hexdigest()[:16]
