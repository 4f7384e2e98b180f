"""Runs to compare, from the files they were saved in: this project's run files, or pytest-benchmark's.

pytest-benchmark saves a session's benchmarks in one JSON file; saved with ``--benchmark-save-data``, each benchmark
keeps every round's time. A benchmark whose ``extra_info`` names a configuration (fields of ``bench.config.Config``:
at least model, framework, device, mode and batch_size, as ``tests/benchmarks/test_steps.py`` records them) becomes
a result whose samples are those rounds. The files of one side (a folder of them: pytest-benchmark's storage, one
pytest process per file) become that many processes of each configuration, so ``compare`` tests their process
medians and allows for their spread, as it does for ``bench --repeats``: a fixed threshold on one process a side
calls a rerun of the same code a regression whenever two processes land apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from bench.config import Config
from bench.record import RUN_FILE_NAME, Result, Run, RunFileError, read_run

# The fields a benchmark's extra_info must name for its configuration to be known.
REQUIRED_FIELDS = ("model", "framework", "device", "mode", "batch_size")
_SAVE_DATA_HINT = "save the benchmarks with --benchmark-save-data"


def read_any_run(path: str | Path) -> Run:
    """A run folder or run file, or pytest-benchmark files: one saved JSON file, or a folder of them (each file one
    process of every configuration it holds). ``RunFileError`` says what is wrong with any of them."""
    path = Path(path)
    if path.is_dir() and not (path / RUN_FILE_NAME).exists():
        files = sorted(path.rglob("*.json"))
        documents = [(file, _document(file)) for file in files]
        saved = [(file, document) for file, document in documents if is_pytest_benchmark(document)]
        if saved:
            return pytest_benchmark_run(saved, path)
    elif path.is_file() and path.name != RUN_FILE_NAME:
        document = _document(path)
        if is_pytest_benchmark(document):
            return pytest_benchmark_run([(path, document)], path)
    return read_run(path)


def is_pytest_benchmark(document: Any) -> bool:
    return isinstance(document, dict) and "benchmarks" in document and "machine_info" in document


def _document(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # not one of pytest-benchmark's files: read_run says what it is, if it is asked to read it


def pytest_benchmark_run(saved: list[tuple[Path, dict]], path: Path) -> Run:
    """One run from pytest-benchmark documents, oldest first: every configuration with each file's rounds as one
    process's samples (in ms)."""
    saved = sorted(saved, key=lambda entry: str(entry[1].get("datetime", "")))
    processes: dict[Config, list[tuple[float, ...]]] = {}
    versions: dict[str, str] = {}
    for file, document in saved:
        for benchmark in document["benchmarks"]:
            config = _config(benchmark, file)
            data = (benchmark.get("stats") or {}).get("data")
            if not data:
                raise RunFileError(f"{file}: benchmark {benchmark.get('name')!r} was saved without its rounds' times; "
                                   f"{_SAVE_DATA_HINT}")
            processes.setdefault(config, []).append(tuple(float(seconds) * 1e3 for seconds in data))
            if version := (benchmark.get("extra_info") or {}).get("framework_version"):
                versions[config.framework] = str(version)
    results = []
    for config, per_process in processes.items():
        samples = tuple(sample for process in per_process for sample in process)
        counts = tuple(len(process) for process in per_process)
        results.append(Result(config=dataclasses.replace(config, repeats=len(per_process)), status="ok",
                              samples_ms=samples, process_sample_counts=counts if len(counts) > 1 else (),
                              settings={"timer": "pytest-benchmark"}))
    return Run(environment=_environment(saved, versions), results=results, path=path)


def _config(benchmark: dict, file: Path) -> Config:
    extra = benchmark.get("extra_info") or {}
    missing = [name for name in REQUIRED_FIELDS if name not in extra]
    if missing:
        raise RunFileError(f"{file}: benchmark {benchmark.get('name')!r} does not name its configuration in "
                           f"extra_info (missing {', '.join(missing)}); tests/benchmarks/test_steps.py shows how")
    known = {field.name for field in dataclasses.fields(Config)}
    try:
        return Config(**{name: value for name, value in extra.items() if name in known},
                      iters=len((benchmark.get("stats") or {}).get("data") or ()) or 1)
    except (TypeError, ValueError) as error:
        raise RunFileError(f"{file}: benchmark {benchmark.get('name')!r} names no valid configuration: {error}") \
            from None


def _environment(saved: list[tuple[Path, dict]], versions: dict[str, str]) -> dict[str, Any]:
    """What the files say about where they were measured, in a run file's terms (the first file's machine)."""
    _, first = saved[0]
    machine, commit = first.get("machine_info") or {}, first.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    started = first.get("datetime")
    return {
        "started_at": started and dt.datetime.fromisoformat(started).isoformat(timespec="seconds"),
        "host": machine.get("node"),
        "python": machine.get("python_version"),
        "cpu_model": cpu.get("brand_raw"),
        "cpu_cores": cpu.get("count"),
        "git_commit": commit.get("id"),
        "git_dirty": commit.get("dirty"),
        "command": f"pytest-benchmark ({len(saved)} saved file{'s' if len(saved) != 1 else ''})",
        "frameworks": {name: {"version": version} for name, version in versions.items()},
        "devices": {},
    }
