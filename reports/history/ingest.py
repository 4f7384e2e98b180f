"""Reading run files into the history's rows: one row per run, one per result, and which files are new."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.record import RUN_FILE_NAME, Run, RunFileError, read_run
from reports.history.machine import machine_of
from reports.history.schema import CONFIG_COLUMNS, MEASURED_COLUMNS, cell, config_key

# Every column a result's own values fill (the rest say where it sits and what it is keyed by).
_VALUE_COLUMNS = tuple(name for name, _ in (*CONFIG_COLUMNS, *MEASURED_COLUMNS))


@dataclass(frozen=True)
class RunRows:
    """A run flattened into the history's rows: one for the run, one per result."""

    run: dict[str, Any]
    results: list[dict[str, Any]]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]


@dataclass
class AddOutcome:
    """What adding runs did: counts of runs, and the inputs that could not be used, each with why."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable run files
    missing: list[str] = field(default_factory=list)  # paths that do not exist
    empty: list[str] = field(default_factory=list)  # folders holding no run file
    moved_aside: Path | None = None  # rebuild: where an unreadable database file went


def run_id_of(environment: dict[str, Any], content_hash: str) -> str:
    """A run's identity: what its environment says about its start, which a resumed or rewritten run keeps; a run
    file without a start time is identified by its content."""
    if not environment.get("started_at"):
        return content_hash[:16]
    identity = {name: environment.get(name) for name in ("started_at", "host", "command", "git_commit", "cpu_model")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def run_rows(run: Run, file_hash: str | None = None) -> RunRows:
    """Flatten a run: its environment into the run row, each result (its configuration, its fields with the raw
    samples, and every figure ``Result.derived`` gives) into a result row. ``file_hash``: the SHA-256 of the run
    file's bytes, which lets a later import skip a file it has already read without parsing it again."""
    document = run.to_dict()
    content_hash = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    environment = run.environment
    run_id = run_id_of(environment, content_hash)
    frameworks = environment.get("frameworks") or {}
    started_at = naive_utc(environment.get("started_at"))
    if started_at is None and run.path is not None:
        # A run file that states no start time: its file's time is the best guess, and it is only read.
        started_at = dt.datetime.fromtimestamp(Path(run.path).stat().st_mtime, dt.timezone.utc).replace(tzinfo=None)
    run_row = {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": naive_utc(environment.get("finished_at")),
        "command": environment.get("command"),
        "git_commit": environment.get("git_commit"),
        "git_dirty": environment.get("git_dirty"),
        "host": environment.get("host"),
        "cpu_model": environment.get("cpu_model"),
        "cpu_cores": environment.get("cpu_cores"),
        "threads": environment.get("threads"),
        "memory_bytes": environment.get("memory_bytes"),
        "gpu_names": sorted({facts.get("gpu_name") for facts in (environment.get("devices") or {}).values()
                             if facts.get("gpu_name")}),
        "framework_versions": json.dumps({name: (facts or {}).get("version") for name, facts in frameworks.items()},
                                         sort_keys=True),
        "environment": json.dumps(environment, sort_keys=True),
        "source": str(Path(run.path).resolve()) if run.path is not None else None,
        "content_hash": content_hash,
        "file_hash": file_hash,
        "added_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    }
    result_rows = []
    for position, result in enumerate(run.results):
        config = result.config
        machine = machine_of(environment, config.device)
        values = {**config.to_dict(),
                  **{item.name: getattr(result, item.name) for item in fields(result) if item.name != "config"},
                  **result.derived.columns()}
        row = {name: cell(values[name]) for name in _VALUE_COLUMNS}
        configuration = config.label() + (f" {config.threads} threads" if config.threads is not None else "")
        row.update(run_id=run_id, position=position, configuration=configuration,
                   config_key=config_key(config), machine_id=machine.key, machine=machine.name,
                   framework_version=(frameworks.get(config.framework) or {}).get("version"))
        result_rows.append(row)
    return RunRows(run_row, result_rows)


def naive_utc(text: str | None) -> dt.datetime | None:
    """An ISO time as a naive UTC datetime (the database stores UTC); None for a missing or unreadable one."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def find_run_files(path: Path) -> list[Path]:
    """The run files a path names: itself when it is a file, else every ``results.json`` beneath it, sorted."""
    if path.is_file():
        return [path]
    return sorted(path.rglob(RUN_FILE_NAME))


def read_paths(paths: Sequence[str | Path], outcome: AddOutcome,
               known_file_hashes: Collection[str] = ()) -> list[RunRows]:
    """Read every run file the paths name (before the database is locked: reading is the slow part); a file whose
    bytes were added before counts as unchanged without being parsed. What cannot be used goes in ``outcome``."""
    rows: list[RunRows] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            outcome.missing.append(str(path))
            continue
        files = find_run_files(path)
        if not files:
            outcome.empty.append(str(path))
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            try:
                file_hash = hashlib.sha256(file.read_bytes()).hexdigest()
            except OSError:
                file_hash = None  # read_run says what is wrong with the file
            if file_hash is not None and file_hash in known_file_hashes:
                outcome.unchanged += 1
                continue
            try:
                rows.append(run_rows(read_run(file), file_hash))
            except RunFileError as error:
                outcome.skipped.append((str(file), str(error)))
    return rows
