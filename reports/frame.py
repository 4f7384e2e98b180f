"""One tidy pandas row per configuration, from one or several run files, and the writers behind ``export``."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import Config
from bench.record import Result, Run, read_run
from reports._files import ensure_folder

EXPORT_FORMATS: tuple[str, ...] = ("csv", "json", "parquet")
# pandas' own preference order when its parquet engine is "auto".
PARQUET_ENGINES: tuple[str, ...] = ("pyarrow", "fastparquet")
# pandas writes 10 decimals by default; samples are never stored rounded, so write all a double holds.
_JSON_DIGITS = 15
# Only its column names are used: they give a run without results the same columns as any other.
_PLACEHOLDER = Result(config=Config(model="", framework="", device="", mode="forward", batch_size=1), status="skipped")


class ExportError(RuntimeError):
    """A frame that cannot be written in the format asked for."""


def load(path_or_paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read run files (or run folders) into one row per configuration.

    Columns: the configuration's fields, ``status`` and ``reason``, every figure of ``Result.derived`` (the
    confidence interval split into ``median_ci_low_ms`` and ``median_ci_high_ms``), what was measured besides the
    samples, and ``samples_ms`` as a list per row. Given a list of paths, a leading ``run`` column holds the
    path of the run file each row came from. Raises ``bench.record.RunFileError`` for an unreadable file.
    """
    if isinstance(path_or_paths, (str, Path)):
        return runs_frame([read_run(path_or_paths)], with_run_column=False)
    return runs_frame([read_run(path) for path in path_or_paths])


def runs_frame(runs: Sequence[Run], with_run_column: bool = True) -> pd.DataFrame:
    """The frame of runs already read; see ``load``."""
    rows = []
    for run in runs:
        for result in run.results:
            row = result_row(result)
            rows.append({"run": str(run.path) if run.path else None, **row} if with_run_column else row)
    if rows:
        return pd.DataFrame(rows)
    columns = list(result_row(_PLACEHOLDER))
    return pd.DataFrame(columns=["run", *columns] if with_run_column else columns)


def result_row(result: Result) -> dict[str, Any]:
    """One configuration as a flat dict, in the frame's column order: the configuration's fields, status, reason and
    partial, every derived figure, then what was measured, the raw sample lists last. The columns follow the types
    of ``Config``, ``Result`` and ``Derived``, so a field added to any of them is a column with no edit here."""
    row: dict[str, Any] = {**result.config.to_dict(), **{name: getattr(result, name) for name in _LEADING},
                           **result.derived.columns()}
    measured = [name for name in _RESULT_FIELDS if name not in _LEADING]
    for name in sorted(measured, key=lambda name: name in _SAMPLE_LISTS):  # the long lists last
        row[name] = _cell(getattr(result, name))
    return row


_LEADING = ("status", "reason", "partial")
_RESULT_FIELDS = tuple(f.name for f in fields(Result) if f.name != "config")
_SAMPLE_LISTS = frozenset(name for name in _RESULT_FIELDS if name.endswith("samples_ms")
                          or name == "process_sample_counts")


def _cell(value: Any) -> Any:
    """A stored value as a frame holds it: settings as JSON text, sample tuples as lists."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, tuple):
        return [_cell(item) for item in value]
    return value


def frame_text(frame: pd.DataFrame, export_format: str) -> str:
    """The frame as csv (samples as JSON text in their cell) or as a JSON list of records."""
    if export_format == "csv":
        return frame.assign(samples_ms=frame["samples_ms"].map(json.dumps)).to_csv(index=False)
    if export_format == "json":
        return frame.to_json(orient="records", indent=1, double_precision=_JSON_DIGITS) + "\n"
    raise ExportError(f"{export_format!r} is not a text format; choose csv or json")


def write_frame(frame: pd.DataFrame, out_path: str | Path, export_format: str) -> Path:
    """Write the frame as csv, json or parquet, creating the folder; parquet needs pyarrow or fastparquet."""
    if export_format not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    engine = _parquet_engine() if export_format == "parquet" else None
    out_path = Path(out_path)
    ensure_folder(out_path.parent)
    if engine is not None:
        frame.to_parquet(out_path, engine=engine, index=False)
    else:
        out_path.write_text(frame_text(frame, export_format))
    return out_path


def _parquet_engine() -> str:
    for name in PARQUET_ENGINES:
        if importlib.util.find_spec(name) is not None:
            return name
    raise ExportError("parquet export needs pyarrow or fastparquet: pip install pyarrow")
