"""The run history on a real DuckDB file: import, idempotency, rebuild, machines kept apart, the lock between two
processes, corrupt and foreign files, unreadable run files, the trend chart and the report's section."""

from __future__ import annotations

import datetime as dt
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import filelock
import pytest
from synthetic import ENVIRONMENT, samples

import cli
from bench.config import Config
from bench.record import Result, Run, read_run, write_run
from reports.history import Filters, History, HistoryLockedError, machine_of, sources_path
from reports.history.storage import lock_path

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OTHER_MACHINE = {**ENVIRONMENT, "cpu_model": "Other CPU 100", "memory_bytes": 64 * 2**30}
# Another process holding the history's lock as a convbench process does, until a line arrives on its stdin.
HOLD_LOCK = ("import sys\nfrom filelock import FileLock\nlock = FileLock(sys.argv[1])\nlock.acquire()\n"
             "print('holding', flush=True)\nsys.stdin.readline()")


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def result(model: str = "lenet", batch_size: int = 1, median_ms: float = 2.0, seed: int = 0,
           status: str = "ok") -> Result:
    config = Config(model=model, framework="torch", device="cpu", mode="forward", batch_size=batch_size, iters=30)
    if status != "ok":
        return Result(config=config, status=status, reason="stopped")
    return Result(config=config, status="ok", samples_ms=samples(median_ms, n=30, seed=seed))


def write_synthetic(folder: Path, day: int, results: list[Result], environment: dict = ENVIRONMENT) -> Path:
    """A run folder whose run started ``day`` days after 2026-01-01, on the machine ``environment`` describes."""
    started = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day)
    environment = {**environment, "started_at": started.isoformat(), "git_commit": f"{day:040x}", "git_dirty": False,
                   "command": f"cli.py bench lenet --out run{day}"}
    write_run(folder / "results.json", Run(environment=environment, results=results))
    return folder


@pytest.fixture
def three_runs(tmp_path) -> Path:
    """Three runs of two configurations in tmp_path/runs, one of them with a configuration that failed."""
    runs = tmp_path / "runs"
    for day in range(3):
        write_synthetic(runs / f"run{day}", day, [result(batch_size=1, median_ms=2.0 + 0.1 * day, seed=day),
                                                 result(batch_size=8, median_ms=9.0 - 0.2 * day, seed=10 + day),
                                                 result(batch_size=32, status="failed")])
    return runs


@pytest.fixture
def location(tmp_path) -> Path:
    return tmp_path / "history" / "history.duckdb"


def test_import_lists_each_configuration_with_its_medians(capsys, three_runs, location):
    code, out, err = run_cli(capsys, "history", "import", str(three_runs), "--history", str(location))
    assert code == 0, err
    assert "3 run(s) added, 0 updated, 0 already there; it holds 3 runs, 9 results" in out
    code, out, err = run_cli(capsys, "history", "show", "--json", "--history", str(location))
    assert code == 0, err
    trends = json.loads(out)["trends"]
    expected = {1: [Result(config=result().config, status="ok", samples_ms=samples(2.0 + 0.1 * day, n=30, seed=day))
                    for day in range(3)],
                8: [Result(config=result(batch_size=8).config, status="ok",
                           samples_ms=samples(9.0 - 0.2 * day, n=30, seed=10 + day)) for day in range(3)]}
    assert [trend["configuration"] for trend in trends] == ["lenet torch cpu forward b1 fp32",
                                                           "lenet torch cpu forward b8 fp32"]
    for trend, batch_size in zip(trends, (1, 8), strict=True):
        medians = [entry.derived.median_ms for entry in expected[batch_size]]
        assert trend["runs"] == 3  # the failed configuration has no median and no trend
        assert trend["latest_ms"] == medians[-1] and trend["best_ms"] == min(medians)
        assert trend["worst_ms"] == max(medians)
        assert trend["machine"] == "Test CPU 9000, 2 threads, 8 GiB"
        assert trend["latest_run"] == "2026-01-03T00:00:00+00:00"
    code, out, err = run_cli(capsys, "history", "show", "--history", str(location))
    assert code == 0 and "Test CPU 9000, 2 threads, 8 GiB" in out and "b8" in out


def test_a_run_is_added_once_and_a_completed_run_replaces_its_results(three_runs, location):
    history = History(location)
    assert history.add_paths([three_runs]).added == 3
    again = history.add_paths([three_runs, three_runs / "run0", three_runs / "run1" / "results.json"])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert history.counts() == (3, 9)
    # bench --resume keeps the run's environment (its start) and completes the failed configuration.
    document = json.loads((three_runs / "run2" / "results.json").read_text())
    resumed = [result(batch_size=1, median_ms=2.2, seed=2), result(batch_size=8, median_ms=8.6, seed=12),
               result(batch_size=32, median_ms=30.0, seed=5)]
    write_run(three_runs / "run2" / "results.json", Run(environment=document["environment"], results=resumed))
    outcome = history.add_paths([three_runs])
    assert (outcome.added, outcome.updated, outcome.unchanged) == (0, 1, 2)
    assert history.counts() == (3, 9)
    assert [trend.runs for trend in history.trends()] == [3, 3, 1]


def test_rebuild_after_deleting_the_database_gives_the_same_answers(capsys, three_runs, tmp_path, location):
    more = tmp_path / "more"
    write_synthetic(more / "run9", 9, [result(batch_size=1, median_ms=2.5, seed=9)])
    assert run_cli(capsys, "history", "import", str(three_runs), str(more), "--history", str(location))[0] == 0
    answers = [run_cli(capsys, "history", command, "--json", "--history", str(location))[1]
               for command in ("show", "check")]
    assert sources_path(location).read_text().splitlines() == [str(three_runs.resolve()), str(more.resolve())]
    location.unlink()
    code, out, err = run_cli(capsys, "history", "rebuild", "--history", str(location))
    assert code == 0, err
    assert "4 run(s) added" in out and "it holds 4 runs, 10 results" in out
    assert [run_cli(capsys, "history", command, "--json", "--history", str(location))[1]
            for command in ("show", "check")] == answers
    # A run folder inside one already listed adds nothing to the list: rebuild searches listed folders whole.
    write_synthetic(three_runs / "run5", 5, [result(seed=5)])
    History(location).add_paths([three_runs / "run5"])
    assert sources_path(location).read_text().splitlines() == [str(three_runs.resolve()), str(more.resolve())]


def test_rebuild_from_paths_replaces_the_sources_and_names_what_is_gone(capsys, three_runs, tmp_path, location):
    elsewhere = tmp_path / "elsewhere"
    write_synthetic(elsewhere / "run7", 7, [result(seed=7)])
    assert run_cli(capsys, "history", "import", str(three_runs), str(elsewhere), "--history", str(location))[0] == 0
    code, out, err = run_cli(capsys, "history", "rebuild", str(three_runs), "--history", str(location))
    assert code == 0 and "it holds 3 runs, 9 results" in out
    assert History(location).sources() == [three_runs.resolve()]
    (three_runs / "run0" / "results.json").unlink()
    (three_runs / "run0").rmdir()
    code, out, err = run_cli(capsys, "history", "rebuild", "--history", str(location))
    assert code == 0 and "it holds 2 runs, 6 results" in out
    assert run_cli(capsys, "history", "rebuild", "--history", str(tmp_path / "new.duckdb"))[0] == 3


def test_machines_are_never_mixed(capsys, tmp_path, location):
    runs = tmp_path / "runs"
    # Ten runs on a fast machine, then ten of the same configuration on a machine twice as slow: mixed into one
    # series this would be a slowdown; kept apart, neither machine changed.
    for day in range(10):
        write_synthetic(runs / f"fast{day}", day, [result(median_ms=2.0, seed=day)])
        write_synthetic(runs / f"slow{day}", 10 + day, [result(median_ms=4.0, seed=day)], OTHER_MACHINE)
    History(location).add_paths([runs])
    trends = History(location).trends()
    assert [(trend.machine, trend.runs) for trend in trends] == [
        ("Other CPU 100, 2 threads, 64 GiB", 10), ("Test CPU 9000, 2 threads, 8 GiB", 10)]
    assert trends[0].best_ms > 3.5 and trends[1].worst_ms < 2.5
    code, out, err = run_cli(capsys, "history", "check", "--json", "--history", str(location))
    assert [check["verdict"] for check in json.loads(out)["checks"]] == ["no change", "no change"]
    code, out, err = run_cli(capsys, "history", "check", "--machine", "other cpu", "--json", "--history",
                             str(location))
    assert [check["machine"] for check in json.loads(out)["checks"]] == ["Other CPU 100, 2 threads, 64 GiB"]


def test_a_gpu_result_carries_the_gpu_and_a_cpu_result_of_the_same_run_does_not():
    environment = {**ENVIRONMENT, "devices": {"cuda": {"gpu_name": "NVIDIA H200"}}}
    cpu, gpu = machine_of(environment, "cpu"), machine_of(environment, "cuda")
    assert cpu == machine_of(ENVIRONMENT, "cpu")  # the GPU a run also used does not split the CPU's trend
    assert gpu.name == "NVIDIA H200 on Test CPU 9000, 2 threads, 8 GiB" and gpu.key != cpu.key
    assert machine_of({**environment, "memory_bytes": 8 * 2**30 - 5 * 2**20}, "cpu").key == cpu.key


def hold_lock(location: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path(location))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "holding\n"
    return holder


def test_two_processes_adding_at_the_same_moment_both_get_in(tmp_path, location):
    for name, day in (("a", 1), ("b", 2)):
        write_synthetic(tmp_path / name, day, [result(seed=day)])
    History(location).add([Run(environment={**ENVIRONMENT, "started_at": "2025-12-31T00:00:00+00:00"},
                               results=[result()])])
    # Another process holds the lock until both adders have said they are waiting, then lets go: both wait, then
    # meet each other at the lock.
    holder = hold_lock(location)
    try:
        adders = [subprocess.Popen([sys.executable, "cli.py", "history", "import", str(tmp_path / name),
                                    "--history", str(location)], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
                  for name in ("a", "b")]
        lines: queue.Queue[str] = queue.Queue()
        for adder in adders:
            threading.Thread(target=lambda stream=adder.stderr: lines.put(stream.readline()), daemon=True).start()
        waiting = [lines.get(timeout=60) for _ in adders]
        holder.communicate("\n", timeout=60)
    finally:
        holder.kill()
    outputs = [adder.communicate(timeout=60) for adder in adders]
    assert [adder.returncode for adder in adders] == [0, 0], outputs
    assert waiting == [f"history: {location} is locked by another process; waiting up to 60 s\n"] * 2
    assert all(err == "" for _, err in outputs)  # the waiting line was the only one
    assert History(location).counts() == (3, 3)


def test_a_lock_held_too_long_is_one_clear_line(tmp_path, location):
    History(location).add([Run(environment=ENVIRONMENT, results=[result()])])
    write_synthetic(tmp_path / "run", 1, [result(seed=1)])
    holder = hold_lock(location)
    try:
        waits: list[str] = []
        with pytest.raises(HistoryLockedError) as raised:
            History(location, lock_timeout_s=0.5, on_wait=waits.append).add_paths([tmp_path / "run"])
    finally:
        holder.kill()
        holder.wait()
    assert str(raised.value) == (f"history: {location} stayed locked by another process for 0.5 s; try again when "
                                 "it has finished")
    assert waits == [f"history: {location} is locked by another process; waiting up to 0.5 s"]
    assert History(location).add_paths([tmp_path / "run"]).added == 1  # once it is free, the run gets in


def test_a_database_another_program_holds_open_is_one_clear_line(capsys, tmp_path, location):
    History(location).add([Run(environment=ENVIRONMENT, results=[result()])])
    write_synthetic(tmp_path / "run", 1, [result(seed=1)])
    # Not convbench: a plain DuckDB connection, which takes DuckDB's own lock on the file and not convbench's.
    hold = ("import sys, duckdb\nconnection = duckdb.connect(sys.argv[1])\nprint('holding', flush=True)\n"
            "sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(location)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        for args in (["import", str(tmp_path / "run")], ["show"]):  # a writer and a reader
            code, out, err = run_cli(capsys, "history", *args, "--history", str(location))
            assert code == 3
            assert one_error_line(err) == (f"error: history: {location} is held open by another program (PID "
                                           f"{holder.pid}), not convbench; try again when it has closed the file")
    finally:
        holder.kill()
        holder.wait()
    assert History(location).add_paths([tmp_path / "run"]).added == 1


def test_a_history_where_no_lock_file_can_be_made_is_still_read(monkeypatch, three_runs, location):
    """A history shared in a folder this user may not write: read as before the lock, under DuckDB's own lock."""
    History(location).add_paths([three_runs])

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(lock_path(location)))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    assert [trend.runs for trend in History(location).trends()] == [3, 3]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "foreign"])
def test_a_corrupt_or_foreign_database_is_one_line_and_rebuild_restores_it(capsys, three_runs, location, damage):
    assert run_cli(capsys, "history", "import", str(three_runs), "--history", str(location))[0] == 0
    answer = run_cli(capsys, "history", "show", "--json", "--history", str(location))[1]
    if damage == "garbage":
        location.write_bytes(b"not a database " * 1000)
    elif damage == "truncated":
        location.write_bytes(location.read_bytes()[:5000])
    elif damage == "empty":
        location.write_bytes(b"")
    else:
        location.unlink()
        with duckdb.connect(str(location)) as connection:
            connection.execute("CREATE TABLE invoices (id INTEGER)")
    damaged = location.read_bytes()
    for command in ("show", "check", "import"):
        args = ["history", command, *([str(three_runs)] if command == "import" else []), "--history", str(location)]
        code, out, err = run_cli(capsys, *args)
        assert code == 3
        line = one_error_line(err)
        assert f"history: {location} is not a convbench history database (" in line
        assert line.endswith("`python cli.py history rebuild` recreates it from the run files")
    if damage == "foreign":
        assert "it holds other tables: invoices" in line
    code, out, err = run_cli(capsys, "history", "rebuild", "--history", str(location))
    assert code == 0 and "3 run(s) added" in out
    assert err.startswith("the unreadable database file was moved to ")
    moved = Path(err.strip().split(" moved to ")[1])
    assert moved.read_bytes() == damaged  # moved aside, never deleted: it may be someone's database
    assert run_cli(capsys, "history", "show", "--json", "--history", str(location))[1] == answer


def test_an_unreadable_run_file_is_skipped_and_named(capsys, three_runs, location):
    broken = three_runs / "run1" / "results.json"
    broken.write_text(broken.read_text()[:200])
    code, out, err = run_cli(capsys, "history", "import", str(three_runs), "--history", str(location))
    assert code == 3
    assert "2 run(s) added" in out
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"skipped {broken}: {broken} is truncated"), err
    code, out, err = run_cli(capsys, "history", "import", str(three_runs / "nowhere"), "--history", str(location))
    assert code == 3 and err.strip() == f"no such file or folder: {three_runs / 'nowhere'}"


def test_nothing_here_changes_a_run_file(capsys, three_runs, location, tmp_path):
    files = sorted(three_runs.rglob("results.json"))
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files}
    for args in (["import", str(three_runs)], ["rebuild"], ["show", "--plot", str(tmp_path / "trend.png")],
                 ["check"]):
        assert run_cli(capsys, "history", *args, "--history", str(location))[0] == 0
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in files} == before


def test_show_plot_writes_the_trend_chart(capsys, three_runs, location, tmp_path):
    History(location).add_paths([three_runs])
    chart = tmp_path / "charts" / "trend.png"
    code, out, err = run_cli(capsys, "history", "show", "lenet", "--plot", str(chart), "--history", str(location))
    assert code == 0 and f"wrote {chart}" in out
    assert chart.read_bytes()[:8] == PNG_SIGNATURE and chart.stat().st_size > 10_000


def test_report_with_history_adds_the_trend_of_the_runs_configurations(capsys, three_runs, location, monkeypatch):
    monkeypatch.setenv("CONVBENCH_HISTORY", str(location))
    History().add_paths([three_runs])
    latest = three_runs / "run2"
    code, out, err = run_cli(capsys, "report", str(latest), "--history")
    assert code == 0, err
    report = (latest / "report.md").read_text()
    section = report[report.index("## History"):]
    assert f"From the run history `{location}`" in section and "### lenet" in section
    assert "| lenet torch cpu forward b8 fp32 | Test CPU 9000, 2 threads, 8 GiB |      3 |" in section
    assert "not enough history" in section
    assert (latest / "report-lenet-history.png").read_bytes()[:8] == PNG_SIGNATURE


def test_an_empty_history_says_so(capsys, location):
    for command in ("show", "check"):
        code, out, err = run_cli(capsys, "history", command, "--history", str(location))
        assert code == 0 and out.startswith(f"history: nothing recorded in {location} yet")
    assert not location.exists()  # reading never creates the database
    assert History(location).trends(Filters(models=("lenet",))) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("show", "--since", "yesterday"), "--since takes a date or time such as 2026-03-01"),
        (("show", "--mode", "backward"), "unknown mode 'backward'; accepted: forward, forward-backward, train"),
        (("show", "--framework", "mxnet"), "mxnet"),
        (("show", "--device", "tpu"), "unknown device 'tpu'; accepted: cpu, cuda, cuda:N"),
        (("show", "--plot", "trend.jpg"), "--plot writes a PNG image"),
        (("check", "--metric", "speed"), "unknown --metric 'speed'; accepted: time, throughput"),
        (("check", "--threshold", "5"), "--threshold must be a percentage or a fraction below 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, location, args, needle):
    code, out, err = run_cli(capsys, "history", *args, "--history", str(location))
    assert code == 2
    assert needle in one_error_line(err)


@pytest.mark.torch
def test_bench_adds_its_run_to_the_history(tmp_path, location):
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "cli.py", "bench", "lenet", "--frameworks", "torch", "--modes", "forward", "--iters", "2",
         "--warmup", "1", "--batch-size", "1", "--no-peak", "--out", str(out), "--json", "--history", str(location)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    json.loads(completed.stdout)  # the history adds nothing to stdout
    history = History(location)
    (trend,) = history.trends()
    assert trend.configuration == "lenet torch cpu forward b1 fp32" and trend.runs == 1
    assert history.sources() == [out.resolve()]


@pytest.mark.torch
def test_a_stopped_bench_run_is_added_too(tmp_path, location):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "cli.py", "bench", "lenet", "--frameworks", "torch", "--modes", "forward", "--iters",
         "100000", "--max-time", "0", "--batch-size", "1", "--no-peak", "--out", str(out), "--history", str(location)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "results.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # the run file exists, so bench's SIGTERM handler is in place
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "stopped by SIGTERM" in err and "warning" not in err
    recorded = read_run(out)
    assert History(location).counts() == (1, len(recorded.results))
    assert History(location).sources() == [out.resolve()]


def test_a_database_of_another_version_asks_to_be_rebuilt(capsys, three_runs, location):
    History(location).add_paths([three_runs])
    with duckdb.connect(str(location)) as connection:  # as if Config.key() had gained a field since
        connection.execute("UPDATE convbench_history SET value = '[]' WHERE key = 'config_key_format'")
    code, out, err = run_cli(capsys, "history", "show", "--history", str(location))
    assert code == 3
    assert one_error_line(err) == (f"error: history: {location} was written by another version of convbench (its "
                                   "configurations are keyed by other fields); `python cli.py history rebuild` "
                                   "recreates it from the run files")
    code, out, err = run_cli(capsys, "history", "rebuild", "--history", str(location))
    assert code == 0 and err == "" and "it holds 3 runs, 9 results" in out


def test_a_broken_history_costs_bench_one_warning_and_no_run(capsys, three_runs, location):
    """bench's hook: the run is safe in its file and its folder is remembered, so rebuild finds it later."""
    location.parent.mkdir(parents=True)
    location.write_bytes(b"not a database")
    cli._add_run_to_history(three_runs / "run0" / "results.json", location)
    err = capsys.readouterr().err
    assert err == (f"warning: the run was not added to the run history: {location} is not a convbench history "
                   "database (IO Error: The file exists, but it is not a valid DuckDB database file!); `python cli.py "
                   "history rebuild` recreates it from the run files\n")
    assert History(location).sources() == [(three_runs / "run0").resolve()]
    assert run_cli(capsys, "history", "rebuild", "--history", str(location))[0] == 0
    assert History(location).counts() == (1, 3)
