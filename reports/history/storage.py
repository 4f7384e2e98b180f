"""The history's database file: where it lives, its lock, its tables, and adding, replacing and rebuilding runs."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import EnvironmentProblem
from bench.record import Run
from reports.history.ingest import AddOutcome, RunRows, read_paths, run_rows
from reports.history.queries import Filters, Series, Trend, read_series, read_trends
from reports.history.schema import (
    COLUMNS_FINGERPRINT,
    CONFIG_KEY_FORMAT,
    FORMAT,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
)

if TYPE_CHECKING:  # duckdb and filelock are imported when the history is opened, so other commands stay quick
    import duckdb
    from filelock import FileLock

HISTORY_ENVIRONMENT_VARIABLE = "CONVBENCH_HISTORY"
# A process that finds the history locked by another waits this long before giving up.
LOCK_TIMEOUT_S = 60.0
# DuckDB's own words when another process has the file open: with convbench's lock held, that is another program.
_DUCKDB_LOCK_MESSAGE = "Could not set lock on file"
_EVERY_TREND = Filters()


class HistoryError(EnvironmentProblem):
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


def lock_path(location: Path) -> Path:
    """The file whose lock a convbench process holds while it has the database (or its sources list) open."""
    return location.with_name(location.name + ".lock")


class History:
    """The history database at ``location`` (a file, created when the first run is added)."""

    def __init__(self, location: str | Path | None = None, *, lock_timeout_s: float = LOCK_TIMEOUT_S,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.location = Path(location).expanduser() if location is not None else default_location()
        self.lock_timeout_s = lock_timeout_s
        # Told once, with the reason, when a writer or reader first has to wait for another process's lock.
        self.on_wait = on_wait
        self._told_of_wait = False
        self._lock: FileLock | None = None

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
        # Remembered first: a run the database cannot take now (a corrupt file) is found by ``rebuild``.
        self._remember([path for path in paths if Path(path).exists()])
        rows = read_paths(paths, outcome, self._known_file_hashes())
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
        rows = read_paths(chosen, outcome)
        # One hold of the lock from the first look at the file to the sources list, so no other process opens
        # the file while it is moved aside and recreated.
        with self._locked(inserting=True):
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
        """The hashes of the run files already added, so an import of a large folder parses only what is new
        (parsing a run and deriving its statistics is what adding costs)."""
        if not self.exists:
            return set()
        with self._connection(write=False) as connection:
            return {row[0] for row in connection.execute(
                "SELECT file_hash FROM runs WHERE file_hash IS NOT NULL").fetchall()}

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
        run_frame = pd.DataFrame([entry.run for entry in incoming], columns=[name for name, _ in RUN_COLUMNS])
        result_frame = pd.DataFrame([row for entry in incoming for row in entry.results],
                                    columns=[name for name, _ in RESULT_COLUMNS])
        for run_id in replaced:
            connection.execute("DELETE FROM results WHERE run_id = ?", [run_id])
            connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
        for table, frame, columns in (("runs", run_frame, RUN_COLUMNS), ("results", result_frame, RESULT_COLUMNS)):
            if frame.empty:
                continue
            # DuckDB reads the pandas frame in place; the casts give list and NULL-only columns their types.
            connection.register("incoming", frame)
            casts = ", ".join(f"CAST({name} AS {kind.split()[0]})" for name, kind in columns)
            connection.execute(f"INSERT INTO {table} SELECT {casts} FROM incoming")
            connection.unregister("incoming")

    def _remember(self, paths: Iterable[str | Path]) -> None:
        """Add paths to the sources list, a path inside one already listed left out, since ``rebuild`` searches
        listed folders whole. Read and appended under the lock, so two processes never both add a path; appended,
        never rewritten, so a write cut short loses no path listed before."""
        resolved = [Path(path).resolve() for path in paths]
        if not resolved:
            return
        with self._locked():
            known = set(self.sources())
            additions = []
            for path in resolved:
                if path in known or any(parent in known for parent in path.parents):
                    continue
                known.add(path)
                additions.append(path)
            if additions:
                with sources_path(self.location).open("a") as stream:
                    stream.write("".join(f"{path}\n" for path in additions))

    def _write_sources(self, paths: Sequence[Path]) -> None:
        """Replace the sources list (``rebuild`` from paths, which holds the lock)."""
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

    def trends(self, filters: Filters = _EVERY_TREND) -> list[Trend]:
        """Per configuration and machine: runs, first and latest run, and the latest, best and worst median."""
        if not self.exists:
            return []
        with self._connection(write=False) as connection:
            return read_trends(connection, filters)

    def series(self, filters: Filters = _EVERY_TREND, last: int | None = None) -> list[Series]:
        """The points of each configuration on each machine, oldest first; ``last`` keeps only the latest ones."""
        if not self.exists:
            return []
        with self._connection(write=False) as connection:
            return read_series(connection, filters, last)

    # The lock and the connection -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, *, inserting: bool = False) -> Iterator[None]:
        """Hold the file lock beside the database, which every convbench process takes to open it: DuckDB lets one
        process write a file and no reader in beside it, and a process that is refused gets an error, not a turn.
        The lock is this History's own and counts its holds, so a hold inside another is free."""
        self.location.parent.mkdir(parents=True, exist_ok=True)
        if inserting:
            # Inserts go through pandas frames (_insert), whose slow import is spent before the lock is taken, not
            # while other processes wait on it.
            import pandas  # noqa: F401
        if self._lock is None:
            from filelock import FileLock

            self._lock = FileLock(lock_path(self.location))
        held = self._acquire(self._lock)
        try:
            yield
        finally:
            if held:
                self._lock.release()

    def _acquire(self, lock: FileLock) -> bool:
        """Take the lock, saying once that it waits when another process holds it; False when the lock file cannot
        be made. A folder this process may not write (someone's history shared read-only) is then read as before
        the lock existed: DuckDB's own lock still refuses a reader beside a writer, and nothing is written there."""
        from filelock import Timeout

        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                if not self._told_of_wait and self.on_wait is not None:
                    self.on_wait(f"history: {self.location} is locked by another process; waiting up to "
                                 f"{self.lock_timeout_s:g} s")
                    self._told_of_wait = True
                lock.acquire(timeout=self.lock_timeout_s)
        except Timeout:  # before OSError, which it is
            raise HistoryLockedError(f"history: {self.location} stayed locked by another process for "
                                     f"{self.lock_timeout_s:g} s; try again when it has finished") from None
        except OSError:
            return False
        return True

    @contextmanager
    def _connection(self, *, write: bool, rebuilding: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, under the lock, to a file checked to be a convbench history of this schema; a writer's is
        one transaction, committed at the end of the block (rolled back on any error), in which an empty file gets
        the tables and ``rebuilding`` recreates them. Every DuckDB failure but a lock becomes ``HistoryFileError``."""
        import duckdb

        with self._locked(inserting=write):
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
                connection.close()  # an open transaction is rolled back; closed before the lock is let go

    def _connect(self, write: bool) -> duckdb.DuckDBPyConnection:
        import duckdb

        # No extension is used; never let a query go looking for one on the network.
        config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        try:
            return duckdb.connect(str(self.location), read_only=not write, config=config)
        except duckdb.Error as error:
            if _DUCKDB_LOCK_MESSAGE in str(error):
                raise HistoryLockedError(
                    f"history: {self.location} is held open by another program{_lock_holder(str(error))}, not "
                    "convbench; try again when it has closed the file") from None
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
        if stored.get("format") != FORMAT:
            raise HistoryFileError(self._foreign(f"its format is {stored.get('format')!r}"))
        if recreate:
            for table in ("results", "runs", "convbench_history"):
                connection.execute(f"DROP TABLE {table}")
            self._create_tables(connection)
        elif stored.get("schema") != str(SCHEMA):
            raise HistoryFileError(self._outdated(f"schema {stored.get('schema')}; this version reads schema "
                                                  f"{SCHEMA}"))
        elif stored.get("config_key_format") != CONFIG_KEY_FORMAT:
            raise HistoryFileError(self._outdated("its configurations are keyed by other fields"))
        elif stored.get("columns") != COLUMNS_FINGERPRINT:
            raise HistoryFileError(self._outdated("its columns are not this version's: a field was added or "
                                                  "changed since"))

    @staticmethod
    def _create_tables(connection: duckdb.DuckDBPyConnection) -> None:
        connection.execute("CREATE TABLE convbench_history (key VARCHAR PRIMARY KEY, value VARCHAR)")
        connection.execute("INSERT INTO convbench_history VALUES ('format', ?), ('schema', ?), "
                           "('config_key_format', ?), ('columns', ?)",
                           [FORMAT, str(SCHEMA), CONFIG_KEY_FORMAT, COLUMNS_FINGERPRINT])
        connection.execute(f"CREATE TABLE runs ({', '.join(f'{name} {kind}' for name, kind in RUN_COLUMNS)})")
        connection.execute(f"CREATE TABLE results ({', '.join(f'{name} {kind}' for name, kind in RESULT_COLUMNS)}, "
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


def _lock_holder(message: str) -> str:
    """' (PID n)' from DuckDB's lock message, which names the process holding the file; empty if it does not."""
    marker = "(PID "
    if marker not in message:
        return ""
    return " " + message[message.index(marker):].split(")")[0] + ")"
