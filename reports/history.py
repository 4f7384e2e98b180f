"""The run history: every run in an embedded DuckDB database, an index that can always be rebuilt from the run files.

The run files stay the source of truth: they are only ever read here, and everything in the database is derived
from them (``Result.derived``), so ``rebuild`` gives back the same answers. A run is identified by what its
environment says about its start (time, host, command, commit), so adding it again is a no-op, and adding it after
``bench --resume`` completed it replaces its results. The folders added are kept in a plain-text list beside the
database, which is what ``rebuild`` reads when the database is gone or corrupt.

DuckDB lets one process write a database file at a time; a writer that finds it locked waits and retries, so two
runs ending at the same moment both get in. A file that is not a convbench history (corrupt, or someone else's
database) is refused in one line that says how to rebuild it, and ``rebuild`` moves it aside rather than
overwrite it.

Figures from different machines are never mixed: each result carries the fingerprint of the machine it ran on
(CPU model, cores, threads, memory, and the GPU for a GPU result), and every trend is per configuration and machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import Config
from bench.record import Run, RunFileError, read_run

if TYPE_CHECKING:  # duckdb is imported when the history is opened, so commands that never touch it stay quick
    import duckdb

HISTORY_ENVIRONMENT_VARIABLE = "CONVBENCH_HISTORY"
SCHEMA = 1
_FORMAT = "convbench run history"


def config_key(config: Config) -> str:
    """How the history stores and matches a configuration: its ``Config.key()`` as JSON."""
    return json.dumps(list(config.key()))


# What Config.key() holds, as a shape: trends are keyed by it, so a database written while the key had other
# fields would silently split every trend in two; such a database asks to be rebuilt instead.
_CONFIG_KEY_FORMAT = config_key(Config(model="", framework="", device="cpu", mode="forward", batch_size=1))
# A writer that finds the database locked by another process retries for this long before giving up.
LOCK_TIMEOUT_S = 60.0
_LOCK_MESSAGE = "Could not set lock on file"
_RUN_FILE_NAME = "results.json"

_RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR PRIMARY KEY"), ("started_at", "TIMESTAMP"), ("finished_at", "TIMESTAMP"),
    ("command", "VARCHAR"), ("git_commit", "VARCHAR"), ("git_dirty", "BOOLEAN"), ("host", "VARCHAR"),
    ("cpu_model", "VARCHAR"), ("cpu_cores", "INTEGER"), ("threads", "INTEGER"), ("memory_bytes", "BIGINT"),
    ("gpu_names", "VARCHAR[]"), ("framework_versions", "VARCHAR"), ("environment", "VARCHAR"),
    ("source", "VARCHAR"), ("content_hash", "VARCHAR"), ("file_hash", "VARCHAR"), ("added_at", "TIMESTAMP"),
)
_CONFIG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "VARCHAR"), ("framework", "VARCHAR"), ("device", "VARCHAR"), ("mode", "VARCHAR"),
    ("batch_size", "INTEGER"), ("precision", "VARCHAR"), ("compile", "BOOLEAN"), ("channels_last", "BOOLEAN"),
    ("threads", "INTEGER"), ("warmup", "INTEGER"), ("iters", "INTEGER"), ("max_time_s", "DOUBLE"),
    ("repeats", "INTEGER"), ("replicas", "INTEGER"), ("nodes", "INTEGER"),
)
_MEASURED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "VARCHAR"), ("reason", "VARCHAR"), ("partial", "BOOLEAN"), ("capped", "BOOLEAN"),
    ("n", "INTEGER"), ("median_ms", "DOUBLE"), ("median_ci_low_ms", "DOUBLE"), ("median_ci_high_ms", "DOUBLE"),
    ("median_ci_level", "DOUBLE"), ("median_ci_basis", "VARCHAR"), ("processes", "INTEGER"),
    ("process_spread", "DOUBLE"), ("mean_ms", "DOUBLE"), ("std_ms", "DOUBLE"), ("min_ms", "DOUBLE"),
    ("max_ms", "DOUBLE"), ("iqr_ms", "DOUBLE"), ("p5_ms", "DOUBLE"), ("p95_ms", "DOUBLE"), ("noisy", "BOOLEAN"),
    ("global_batch", "INTEGER"), ("images_per_s", "DOUBLE"), ("ms_per_image", "DOUBLE"), ("gflops_per_s", "DOUBLE"),
    ("mfu", "DOUBLE"),
    ("first_step_ms", "DOUBLE"), ("peak_memory_bytes", "BIGINT"), ("burn_in_peak_memory_bytes", "BIGINT"),
    ("macs_per_image", "BIGINT"), ("flops_per_step", "BIGINT"), ("peak_gflops_per_s", "DOUBLE"),
    ("settings", "VARCHAR"), ("process_sample_counts", "INTEGER[]"), ("samples_ms", "DOUBLE[]"),
)
_RESULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR"), ("position", "INTEGER"), ("configuration", "VARCHAR"), ("config_key", "VARCHAR"),
    ("machine_id", "VARCHAR"), ("machine", "VARCHAR"), ("framework_version", "VARCHAR"),
    *_CONFIG_COLUMNS, *_MEASURED_COLUMNS,
)


class HistoryError(RuntimeError):
    """A history that cannot be used as asked; the message is one line that says what to do."""


class HistoryLockedError(HistoryError):
    """Another process held the database for longer than the wait allowed."""


class HistoryFileError(HistoryError):
    """A database file that is not a readable convbench history: corrupt, foreign, or of another schema."""


def default_location() -> Path:
    """``CONVBENCH_HISTORY`` if set, else ``history.duckdb`` in convbench's folder of the XDG data home
    (``~/.local/share/convbench/`` unless ``XDG_DATA_HOME`` says otherwise)."""
    chosen = os.environ.get(HISTORY_ENVIRONMENT_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "convbench" / "history.duckdb"


def sources_path(location: Path) -> Path:
    """The plain-text list of the run files and folders added, one path a line, beside the database."""
    return location.with_name(location.name + ".sources.txt")


@dataclass(frozen=True)
class Machine:
    """What a result ran on, as far as a timing depends on it: ``key`` is a stable hash of ``facts``."""

    key: str
    name: str
    facts: dict[str, Any]


def machine_of(environment: dict[str, Any], device: str) -> Machine:
    """The machine of a result on ``device``, from its run's environment.

    CPU model, cores, threads and memory (rounded to whole GiB, so a kernel's reservation does not split a
    machine in two), and for a GPU result the GPU's name: a CPU result on a GPU box is the same machine as on
    the same box without its GPU. The host name is left out: two identical cloud machines are one machine.
    """
    memory_bytes = environment.get("memory_bytes")
    gpu_name = None
    if device != "cpu":
        devices = environment.get("devices") or {}
        gpu_name = (devices.get(device) or devices.get(device.split(":")[0]) or {}).get("gpu_name")
    facts = {
        "cpu_model": environment.get("cpu_model"),
        "cpu_cores": environment.get("cpu_cores"),
        "threads": environment.get("threads"),
        "memory_gib": round(memory_bytes / 2**30) if memory_bytes else None,
        "gpu": gpu_name if device != "cpu" else None,
    }
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:10]
    host = f"{facts['cpu_model'] or 'unknown CPU'}, {facts['threads'] or '?'} threads"
    if facts["cpu_cores"] and facts["cpu_cores"] != facts["threads"]:
        host += f" of {facts['cpu_cores']} cores"
    if facts["memory_gib"] is not None:
        host += f", {facts['memory_gib']} GiB"
    name = f"{gpu_name or device + ' (GPU not recorded)'} on {host}" if device != "cpu" else host
    return Machine(key, name, facts)


@dataclass(frozen=True)
class RunRows:
    """A run flattened into the history's rows: one for the run, one per result."""

    run: dict[str, Any]
    results: list[dict[str, Any]]

    @property
    def run_id(self) -> str:
        return self.run["run_id"]


def run_id_of(environment: dict[str, Any], content_hash: str) -> str:
    """A run's identity: what its environment says about its start, which a resumed or rewritten run keeps; a run
    file without a start time is identified by its content."""
    if not environment.get("started_at"):
        return content_hash[:16]
    identity = {name: environment.get(name) for name in ("started_at", "host", "command", "git_commit", "cpu_model")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def run_rows(run: Run, file_hash: str | None = None) -> RunRows:
    """Flatten a run: its environment into the run row, each result (with every statistic ``Result.derived``
    gives, and the raw samples) into a result row. ``file_hash``: the SHA-256 of the run file's bytes, which lets
    a later import skip a file it has already read without parsing it again."""
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
    for position, (result, stored) in enumerate(zip(run.results, document["results"], strict=True)):
        config = result.config
        machine = machine_of(environment, config.device)
        row = {name: stored.get(name) for name, _ in (*_CONFIG_COLUMNS, *_MEASURED_COLUMNS)}
        row["median_ci_low_ms"], row["median_ci_high_ms"] = stored.get("median_ci_ms") or (None, None)
        row["settings"] = json.dumps(result.settings, sort_keys=True)
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
    return sorted(path.rglob(_RUN_FILE_NAME))


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


@dataclass(frozen=True)
class Filters:
    """Which trends to read. Empty tuples mean every one; ``models`` are shell-style patterns; ``machine`` matches
    a machine's name (case-insensitive substring) or the start of its key; ``configurations`` restricts to
    (config_key, machine_id) pairs."""

    models: tuple[str, ...] = ()
    frameworks: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    machine: str | None = None
    since: dt.datetime | None = None
    configurations: tuple[tuple[str, str], ...] = ()

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on the ok results joined with their runs, and its parameters."""
        clauses, parameters = ["r.status = 'ok'", "r.median_ms IS NOT NULL"], []
        for column, values, operator in (("model", self.models, "GLOB"), ("framework", self.frameworks, "="),
                                         ("mode", self.modes, "="), ("device", self.devices, "=")):
            if values:
                clauses.append("(" + " OR ".join(f"r.{column} {operator} ?" for _ in values) + ")")
                parameters.extend(values)
        if self.machine:
            clauses.append("(r.machine ILIKE ? OR r.machine_id LIKE ?)")
            parameters.extend([f"%{self.machine}%", f"{self.machine}%"])
        if self.since is not None:
            clauses.append("u.started_at >= ?")
            parameters.append(self.since)
        if self.configurations:
            clauses.append("(" + " OR ".join("(r.config_key = ? AND r.machine_id = ?)"
                                              for _ in self.configurations) + ")")
            parameters.extend(value for pair in self.configurations for value in pair)
        return " AND ".join(clauses), parameters


@dataclass(frozen=True)
class Trend:
    """One configuration on one machine over time (ok results only): what ``history show`` lists."""

    configuration: str
    config_key: str
    machine: str
    machine_id: str
    runs: int
    first_run: dt.datetime
    latest_run: dt.datetime
    latest_ms: float
    best_ms: float
    worst_ms: float
    latest_images_per_s: float
    best_images_per_s: float

    def to_dict(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["first_run"], values["latest_run"] = iso_utc(self.first_run), iso_utc(self.latest_run)
        return values


@dataclass(frozen=True)
class Point:
    """One run's result in a trend: its time, its median with the interval, and the run it came from."""

    started_at: dt.datetime
    median_ms: float
    median_ci_low_ms: float | None
    median_ci_high_ms: float | None
    images_per_s: float
    run_id: str
    git_commit: str | None
    git_dirty: bool | None


@dataclass(frozen=True)
class Series:
    """The points of one configuration on one machine, oldest first; ``runs`` counts them all, also where only
    the latest were read."""

    configuration: str
    config_key: str
    machine: str
    machine_id: str
    model: str
    runs: int
    points: list[Point]


def iso_utc(moment: dt.datetime) -> str:
    """A naive UTC time from the database as ISO 8601 with its offset."""
    return moment.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")


class History:
    """The history database at ``location`` (a file, created when the first run is added)."""

    def __init__(self, location: str | Path | None = None, *, lock_timeout_s: float = LOCK_TIMEOUT_S,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.location = Path(location).expanduser() if location is not None else default_location()
        self.lock_timeout_s = lock_timeout_s
        # Told once, with the reason, when a writer or reader first has to wait for another process's lock.
        self.on_wait = on_wait
        self._told_of_wait = False

    @property
    def exists(self) -> bool:
        return self.location.exists()

    # Adding runs ---------------------------------------------------------------------------------------------

    def add_paths(self, paths: Sequence[str | Path]) -> AddOutcome:
        """Add run files, or folders searched for them (``results.json``); a run already there is added once.

        Every path given is remembered in the sources list, so ``rebuild`` can find its runs again. Run files
        that cannot be read are skipped and named in the outcome; the run files themselves are only read.
        """
        outcome = AddOutcome()
        # Remembered first: a run the database cannot take now (corrupt, locked too long) is found by ``rebuild``.
        self._remember([path for path in paths if Path(path).exists()])
        rows = self._read_paths(paths, outcome, self._known_file_hashes())
        if rows:
            with self._connection(write=True) as connection:
                self._insert(connection, rows, outcome)
        return outcome

    def add(self, runs: Iterable[Run | RunRows]) -> AddOutcome:
        """Add runs already read (or already flattened by ``run_rows``); nothing is remembered for ``rebuild``."""
        outcome = AddOutcome()
        rows = [entry if isinstance(entry, RunRows) else run_rows(entry) for entry in runs]
        with self._connection(write=True) as connection:
            self._insert(connection, rows, outcome)
        return outcome

    def rebuild(self, paths: Sequence[str | Path] | None = None) -> AddOutcome:
        """Recreate the database from run files: ``paths``, or by default every path in the sources list.

        A database file that is not a readable convbench history is moved aside (``<name>.unreadable-<time>``),
        never deleted: it may be someone else's. With ``paths``, the sources list becomes those paths.
        """
        recorded = self.sources()
        chosen = [Path(path) for path in paths] if paths else recorded
        if not chosen:
            raise HistoryError(f"no run folders are recorded in {sources_path(self.location)}; name them: "
                               "python cli.py history rebuild RUN_FOLDER...")
        outcome = AddOutcome()
        rows = self._read_paths(chosen, outcome)
        try:
            with self._connection(write=True, rebuilding=True) as connection:
                self._insert(connection, rows, outcome)
        except HistoryFileError:
            outcome.moved_aside = self._move_aside()
            with self._connection(write=True, rebuilding=True) as connection:
                self._insert(connection, rows, outcome)
        if paths:
            self._write_sources([path for path in chosen if path.exists()])
        return outcome

    def sources(self) -> list[Path]:
        """The run files and folders added so far, as the sources list beside the database holds them."""
        listed = sources_path(self.location)
        if not listed.exists():
            return []
        return [Path(line) for line in dict.fromkeys(line.strip() for line in listed.read_text().splitlines())
                if line]

    def _known_file_hashes(self) -> set[str]:
        """The hashes of the run files already added, so an import of a folder of a thousand runs reads only what
        is new (parsing a run and deriving its statistics costs some 20 ms)."""
        if not self.exists:
            return set()
        with self._connection(write=False) as connection:
            return {row[0] for row in connection.execute(
                "SELECT file_hash FROM runs WHERE file_hash IS NOT NULL").fetchall()}

    def _read_paths(self, paths: Sequence[str | Path], outcome: AddOutcome,
                    known_file_hashes: Collection[str] = ()) -> list[RunRows]:
        """Read every run file the paths name (before the database is locked: reading is the slow part); a file
        whose bytes were added before counts as unchanged without being parsed."""
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

    def _insert(self, connection: duckdb.DuckDBPyConnection, rows: Sequence[RunRows], outcome: AddOutcome) -> None:
        """Add, replace or keep each run (inside the connection's transaction): a run whose content changed, as a
        resumed run's does, is replaced."""
        import pandas as pd

        latest: dict[str, RunRows] = {}
        for entry in rows:  # one run met twice (a copied folder): the later file wins, as two imports would do
            latest[entry.run_id] = entry
        known = dict(connection.execute("SELECT run_id, content_hash FROM runs").fetchall())
        incoming, replaced = [], []
        for run_id, entry in latest.items():
            if known.get(run_id) == entry.run["content_hash"]:
                outcome.unchanged += 1
                continue
            incoming.append(entry)
            if run_id in known:
                replaced.append(run_id)
                outcome.updated += 1
            else:
                outcome.added += 1
        if not incoming:
            return
        run_frame = pd.DataFrame([entry.run for entry in incoming], columns=[name for name, _ in _RUN_COLUMNS])
        result_frame = pd.DataFrame([row for entry in incoming for row in entry.results],
                                    columns=[name for name, _ in _RESULT_COLUMNS])
        for run_id in replaced:
            connection.execute("DELETE FROM results WHERE run_id = ?", [run_id])
            connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
        for table, frame, columns in (("runs", run_frame, _RUN_COLUMNS), ("results", result_frame, _RESULT_COLUMNS)):
            if frame.empty:
                continue
            # DuckDB reads the pandas frame in place; the casts give list and NULL-only columns their types.
            connection.register("incoming", frame)
            casts = ", ".join(f"CAST({name} AS {kind.split()[0]})" for name, kind in columns)
            connection.execute(f"INSERT INTO {table} SELECT {casts} FROM incoming")
            connection.unregister("incoming")

    def _remember(self, paths: Iterable[str | Path]) -> None:
        """Add paths to the sources list, a path inside one already listed left out, since ``rebuild`` searches
        listed folders whole. One appending write, which two processes cannot interleave (a line they both add
        is read once)."""
        listed = self.sources()
        known = set(listed)
        additions = []
        for path in (Path(path).resolve() for path in paths):
            if path in known or any(parent in known for parent in path.parents):
                continue
            known.add(path)
            additions.append(path)
        if additions:
            self.location.parent.mkdir(parents=True, exist_ok=True)
            with sources_path(self.location).open("a") as stream:
                stream.write("".join(f"{path}\n" for path in additions))

    def _write_sources(self, paths: Sequence[Path]) -> None:
        text = "".join(f"{path}\n" for path in dict.fromkeys(path.resolve() for path in paths))
        sources_path(self.location).write_text(text)

    def _move_aside(self) -> Path:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        target = self.location.with_name(f"{self.location.name}.unreadable-{stamp}")
        os.replace(self.location, target)
        wal = self.location.with_name(self.location.name + ".wal")
        if wal.exists():  # the log belongs to the file moved; left here it would be replayed into the new one
            os.replace(wal, target.with_name(target.name + ".wal"))
        return target

    # Reading --------------------------------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """Runs and results held (0, 0 without a database)."""
        if not self.exists:
            return 0, 0
        with self._connection(write=False) as connection:
            runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
            results = connection.execute("SELECT count(*) FROM results").fetchone()[0]
        return int(runs), int(results)

    def trends(self, filters: Filters = Filters()) -> list[Trend]:
        """Per configuration and machine: runs, first and latest run, and the latest, best and worst median."""
        if not self.exists:
            return []
        condition, parameters = filters.where()
        query = f"""
            SELECT any_value(r.configuration), r.config_key, any_value(r.machine), r.machine_id, count(*),
                   min(u.started_at), max(u.started_at), arg_max(r.median_ms, (u.started_at, r.run_id)),
                   min(r.median_ms), max(r.median_ms), arg_max(r.images_per_s, (u.started_at, r.run_id)),
                   max(r.images_per_s)
            FROM results r JOIN runs u USING (run_id)
            WHERE {condition}
            GROUP BY r.config_key, r.machine_id
            ORDER BY {", ".join(f"any_value(r.{name})" for name in _ORDER_COLUMNS)}, any_value(r.machine)
        """
        with self._connection(write=False) as connection:
            rows = connection.execute(query, parameters).fetchall()
        return [Trend(*row) for row in rows]

    def series(self, filters: Filters = Filters(), last: int | None = None) -> list[Series]:
        """The points of each configuration on each machine, oldest first; ``last`` keeps only the latest ones."""
        if not self.exists:
            return []
        condition, parameters = filters.where()
        recency = f"WHERE recency <= {int(last)}" if last is not None else ""
        query = f"""
            SELECT configuration, config_key, machine, machine_id, model, runs, started_at, median_ms,
                   median_ci_low_ms, median_ci_high_ms, images_per_s, run_id, git_commit, git_dirty
            FROM (
                SELECT r.*, u.started_at, u.git_commit, u.git_dirty,
                       row_number() OVER (PARTITION BY r.config_key, r.machine_id
                                          ORDER BY u.started_at DESC, r.run_id DESC, r.position DESC) AS recency,
                       count(*) OVER (PARTITION BY r.config_key, r.machine_id) AS runs
                FROM results r JOIN runs u USING (run_id)
                WHERE {condition}
            ) {recency}
            ORDER BY {", ".join(_ORDER_COLUMNS)}, machine, config_key, machine_id, started_at, run_id, position
        """
        with self._connection(write=False) as connection:
            rows = connection.execute(query, parameters).fetchall()
        series: dict[tuple[str, str], Series] = {}
        for configuration, config_key, machine, machine_id, model, runs, *point in rows:
            entry = series.get((config_key, machine_id))
            if entry is None:
                entry = series[(config_key, machine_id)] = Series(configuration, config_key, machine, machine_id,
                                                                  model, runs, [])
            entry.points.append(Point(*point))
        return list(series.values())

    # The connection --------------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self, *, write: bool, rebuilding: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to a file checked to be a convbench history of this schema; a writer's is one transaction,
        committed at the end of the block (rolled back on any error), in which an empty file gets the tables and
        ``rebuilding`` recreates them. Every DuckDB failure but a lock becomes ``HistoryFileError``."""
        import duckdb

        if write:
            self.location.parent.mkdir(parents=True, exist_ok=True)
            # Writers insert through pandas frames (_insert); its second of import happens before the file is
            # locked, not while other processes wait on the lock.
            import pandas  # noqa: F401
        connection = self._connect(write)
        try:
            if write:
                connection.begin()
            self._check_schema(connection, create=write, recreate=rebuilding)
            yield connection
            if write:
                connection.commit()
        except duckdb.Error as error:
            raise self._file_error(error) from None
        finally:
            connection.close()  # an open transaction is rolled back

    def _connect(self, write: bool) -> duckdb.DuckDBPyConnection:
        """Connect, waiting while another process holds the file's lock (DuckDB allows one writer process, and no
        reader beside it), with growing, jittered pauses so that two waiters do not retry in step."""
        import duckdb

        deadline = time.monotonic() + self.lock_timeout_s
        pause = 0.02
        # No extension is used; never let a query go looking for one on the network.
        config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        while True:
            try:
                return duckdb.connect(str(self.location), read_only=not write, config=config)
            except duckdb.IOException as error:
                if _LOCK_MESSAGE not in str(error):
                    raise self._file_error(error) from None
                holder = _lock_holder(str(error))
                if time.monotonic() >= deadline:
                    raise HistoryLockedError(
                        f"history: {self.location} stayed locked by another process{holder} for "
                        f"{self.lock_timeout_s:g} s; try again when it has finished") from None
                if not self._told_of_wait and self.on_wait is not None:
                    self.on_wait(f"history: {self.location} is locked by another process{holder}; waiting up to "
                                 f"{self.lock_timeout_s:g} s")
                    self._told_of_wait = True
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 0.5)
            except duckdb.Error as error:
                raise self._file_error(error) from None

    def _check_schema(self, connection: duckdb.DuckDBPyConnection, *, create: bool, recreate: bool) -> None:
        tables = {row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        if "convbench_history" not in tables:
            if tables:
                raise HistoryFileError(self._foreign(f"it holds other tables: {', '.join(sorted(tables))}"))
            if not create:
                raise HistoryFileError(self._foreign("it holds no tables"))
            self._create_tables(connection)
            return
        stored = dict(connection.execute("SELECT key, value FROM convbench_history").fetchall())
        if stored.get("format") != _FORMAT:
            raise HistoryFileError(self._foreign(f"its format is {stored.get('format')!r}"))
        if recreate:
            for table in ("results", "runs", "convbench_history"):
                connection.execute(f"DROP TABLE {table}")
            self._create_tables(connection)
        elif stored.get("schema") != str(SCHEMA):
            raise HistoryFileError(self._outdated(f"schema {stored.get('schema')}; this version reads schema "
                                                  f"{SCHEMA}"))
        elif stored.get("config_key_format") != _CONFIG_KEY_FORMAT:
            raise HistoryFileError(self._outdated("its configurations are keyed by other fields"))

    @staticmethod
    def _create_tables(connection: duckdb.DuckDBPyConnection) -> None:
        connection.execute("CREATE TABLE convbench_history (key VARCHAR PRIMARY KEY, value VARCHAR)")
        connection.execute("INSERT INTO convbench_history VALUES ('format', ?), ('schema', ?), "
                           "('config_key_format', ?)", [_FORMAT, str(SCHEMA), _CONFIG_KEY_FORMAT])
        connection.execute(f"CREATE TABLE runs ({', '.join(f'{name} {kind}' for name, kind in _RUN_COLUMNS)})")
        connection.execute(f"CREATE TABLE results ({', '.join(f'{name} {kind}' for name, kind in _RESULT_COLUMNS)}, "
                           "PRIMARY KEY (run_id, position))")

    def _foreign(self, detail: str) -> str:
        return (f"history: {self.location} is not a convbench history database ({detail}); "
                "`python cli.py history rebuild` recreates it from the run files")

    def _outdated(self, detail: str) -> str:
        return (f"history: {self.location} was written by another version of convbench ({detail}); "
                "`python cli.py history rebuild` recreates it from the run files")

    def _file_error(self, error: Exception) -> HistoryFileError:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return HistoryFileError(self._foreign(detail.replace(f' "{self.location}"', "")))


# Configurations are listed in the order people scan them: model, framework, device, mode, batch size, the rest.
_ORDER_COLUMNS = ("model", "framework", "device", "mode", "batch_size", "precision", "compile", "channels_last",
                  "threads", "replicas", "nodes")


def _lock_holder(message: str) -> str:
    """' (PID n)' from DuckDB's lock message, which names the process holding the lock; empty if it does not."""
    marker = "(PID "
    if marker not in message:
        return ""
    return " " + message[message.index(marker):].split(")")[0] + ")"
