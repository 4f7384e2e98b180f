"""The run history: every run in an embedded DuckDB database, an index that can always be rebuilt from the run files.

The run files stay the source of truth: they are only ever read here, and everything in the database is derived
from them (``Result.derived``), so ``rebuild`` gives back the same answers. A run is identified by what its
environment says about its start (time, host, command, commit), so adding it again is a no-op, and adding it after
``bench --resume`` completed it replaces its results. The folders added are kept in a plain-text list beside the
database, which is what ``rebuild`` reads when the database is gone or corrupt.

DuckDB lets one process write a database file at a time, and no process read it beside a writer; so every
convbench process that opens the file, to read or write, first takes a file lock beside it (``<name>.lock``), and a
process that finds it held waits its turn, so two runs ending at the same moment both get in. A file that is not a
convbench history (corrupt, or someone else's database) is refused in one line that says how to rebuild it, and
``rebuild`` moves it aside rather than overwrite it.

Figures from different machines are never mixed: each result carries the fingerprint of the machine it ran on
(CPU model, cores, threads, memory, and the GPU for a GPU result), and every trend is per configuration and machine.

One concern a module: ``schema`` (the columns, from the record's types), ``machine``, ``ingest`` (run files into
rows), ``queries`` (trends and series), ``storage`` (the file, its lock, adding and rebuilding), and on top of them
``trend`` (the slowdown check) and ``views`` (what a person reads), which are imported by name, not from here:
they use ``reports.compare``, which uses ``machine``.
"""

from reports.history.ingest import AddOutcome, RunRows, find_run_files, naive_utc, run_id_of, run_rows
from reports.history.machine import Machine, machine_of
from reports.history.queries import Filters, Point, Series, Trend, iso_utc
from reports.history.schema import SCHEMA, config_key
from reports.history.storage import (
    HISTORY_ENVIRONMENT_VARIABLE,
    LOCK_TIMEOUT_S,
    History,
    HistoryError,
    HistoryFileError,
    HistoryLockedError,
    default_location,
    sources_path,
)

__all__ = [
    "HISTORY_ENVIRONMENT_VARIABLE", "LOCK_TIMEOUT_S", "SCHEMA", "AddOutcome", "Filters", "History", "HistoryError",
    "HistoryFileError", "HistoryLockedError", "Machine", "Point", "RunRows", "Series", "Trend", "config_key",
    "default_location", "find_run_files", "iso_utc", "machine_of", "naive_utc", "run_id_of", "run_rows",
    "sources_path",
]
