"""What the history answers: the filters a question takes, and the trends and series read with SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.config import key_fields
from bench.errors import UsageError

if TYPE_CHECKING:  # the caller holds the connection; duckdb is imported when the history is opened
    import duckdb

# Configurations are listed in the order people scan them, which is the order Config declares its key fields in.
_ORDER_COLUMNS = key_fields()


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

    @classmethod
    def parse(cls, models: Sequence[str] | None = None, frameworks: str | None = None, modes: str | None = None,
              devices: str | None = None, machine: str | None = None, since: str | None = None) -> Filters:
        """The filters of the command line's options (comma lists; None: every one), each checked as ``bench``
        checks them (``bench.errors.UsageError`` for one that names nothing)."""
        from bench import plan
        from bench.modes import MODES
        from reports.history.ingest import naive_utc

        since_time = naive_utc(since) if since is not None else None
        if since is not None and since_time is None:
            raise UsageError(f"--since takes a date or time such as 2026-03-01 or 2026-03-01T12:00. Received: "
                             f"{since!r}")
        return cls(models=tuple(plan.name_patterns(models)),
                   frameworks=tuple(plan.engines(frameworks)) if frameworks is not None else (),
                   modes=tuple(plan.choices(modes, "mode", list(MODES))) if modes is not None else (),
                   devices=tuple(plan.devices(devices)) if devices is not None else (),
                   machine=machine, since=since_time)

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


def read_trends(connection: duckdb.DuckDBPyConnection, filters: Filters) -> list[Trend]:
    """Per configuration and machine: runs, first and latest run, and the latest, best and worst median."""
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
    return [Trend(*row) for row in connection.execute(query, parameters).fetchall()]


def read_series(connection: duckdb.DuckDBPyConnection, filters: Filters, last: int | None = None) -> list[Series]:
    """The points of each configuration on each machine, oldest first; ``last`` keeps only the latest ones."""
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
    series: dict[tuple[str, str], Series] = {}
    for configuration, config_key, machine, machine_id, model, runs, *point in (
            connection.execute(query, parameters).fetchall()):
        entry = series.get((config_key, machine_id))
        if entry is None:
            entry = series[(config_key, machine_id)] = Series(configuration, config_key, machine, machine_id, model,
                                                              runs, [])
        entry.points.append(Point(*point))
    return list(series.values())
