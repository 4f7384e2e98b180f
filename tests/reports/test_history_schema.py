"""The history's columns come from the record's types: every field of Config, Result and Derived has a column of
its type, a row fills every column, and what a result holds comes back from a real database unchanged."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import duckdb
import pytest
from synthetic import ENVIRONMENT, samples

import cli
from bench.config import Config
from bench.record import Derived, Result, Run
from reports.history import SCHEMA, History, run_rows
from reports.history.schema import RESULT_COLUMNS, cell, sql_type

# Where a result sits and what it is keyed by: the only result columns no record type declares.
PLACE_COLUMNS = ["run_id", "position", "configuration", "config_key", "machine_id", "machine", "framework_version"]
# Every rank's own samples: in the run file, and as Derived's rank medians in the history (schema.py says why).
LEFT_OUT = {"config", "rank_samples_ms"}


def data_parallel_result() -> Result:
    config = Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=4, replicas=2,
                    iters=20)
    return Result(config=config, status="ok", samples_ms=samples(5.0, n=20), process_sample_counts=(10, 10),
                  rank_samples_ms=(samples(4.8, n=20, seed=1), samples(5.0, n=20, seed=2)),
                  no_sync_samples_ms=samples(4.0, n=20, seed=3), allreduce_bytes=4_000_000,
                  allreduce_samples_ms=samples(0.5, n=20, seed=4), flops_per_step=10**12, peak_gflops_per_s=500.0,
                  settings={"tf32": False, "threads": 2})


def test_the_result_columns_are_the_fields_of_config_result_and_derived():
    names = [name for name, _ in RESULT_COLUMNS]
    expected = [*PLACE_COLUMNS, *(item.name for item in fields(Config)),
                *(item.name for item in fields(Result) if item.name not in LEFT_OUT), *Derived(n=0).columns()]
    assert names == expected
    assert len(set(names)) == len(names)
    assert set(run_rows(Run(environment=ENVIRONMENT, results=[data_parallel_result()])).results[0]) == set(names)


@pytest.mark.parametrize(("python_type", "expected"), [
    (int, "BIGINT"), (float, "DOUBLE"), (bool, "BOOLEAN"), (str, "VARCHAR"), (int | None, "BIGINT"),
    (float | None, "DOUBLE"), (tuple[float, ...], "DOUBLE[]"), (tuple[int, ...], "BIGINT[]"),
    (dict[str, Any], "VARCHAR"),
])
def test_each_python_type_has_its_column_type(python_type, expected):
    assert sql_type(python_type) == expected


def test_a_field_of_a_type_without_a_column_type_is_refused():
    with pytest.raises(TypeError, match="no column type for"):
        sql_type(complex)


def test_what_a_result_holds_comes_back_from_the_database(tmp_path):
    location = tmp_path / "history.duckdb"
    result = data_parallel_result()
    History(location).add([Run(environment=ENVIRONMENT, results=[result])])
    with duckdb.connect(str(location), read_only=True) as connection:
        cursor = connection.execute("SELECT * FROM results")
        row = dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))
    values = {**result.config.to_dict(), **{item.name: getattr(result, item.name) for item in fields(Result)},
              **result.derived.columns()}
    assert {name: row[name] for name in values if name in row} == {
        name: cell(value) for name, value in values.items() if name in row}
    assert json.loads(row["settings"]) == {"tf32": False, "threads": 2}
    assert row["rank_median_p50_ms"] is not None and row["allreduce_bus_gb_per_s"] is not None
    assert row["median_ci_low_ms"] < row["median_ms"] < row["median_ci_high_ms"]


def test_a_database_of_another_schema_asks_to_be_rebuilt(capsys, tmp_path):
    location = tmp_path / "history.duckdb"
    History(location).add([Run(environment=ENVIRONMENT, results=[data_parallel_result()])])
    with duckdb.connect(str(location)) as connection:  # as written before the columns took their types
        connection.execute("UPDATE convbench_history SET value = '1' WHERE key = 'schema'")
    assert cli.main(["history", "show", "--history", str(location)]) == 3
    assert capsys.readouterr().err == (
        f"error: history: {location} was written by another version of convbench (schema 1; this version reads "
        f"schema {SCHEMA}); `python cli.py history rebuild` recreates it from the run files\n")


def test_a_database_written_before_a_field_was_added_asks_to_be_rebuilt(capsys, tmp_path):
    location = tmp_path / "history.duckdb"
    History(location).add([Run(environment=ENVIRONMENT, results=[data_parallel_result()])])
    with duckdb.connect(str(location)) as connection:  # as if Config, Result or Derived had gained a field since
        connection.execute("UPDATE convbench_history SET value = 'older' WHERE key = 'columns'")
    assert cli.main(["history", "show", "--history", str(location)]) == 3
    assert "its columns are not this version's: a field was added or changed since" in capsys.readouterr().err
