"""`history show` and `history check` answer within a second (the median of five calls after a warm-up) over 1,000
runs holding 20,000 results.

The database is a real one: 50 synthetic runs of 20 configurations (100 samples each) are flattened by the
history's own ``run_rows``, then repeated with new identities and start times to make 1,000 runs, since computing
every statistic of 20,000 results anew would cost this suite about 20 s and the queries do not care whether two
runs hold the same numbers. Each command is timed in-process, from parsing its arguments to its printed table
(the interpreter's start and imports are not the command's answer).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import statistics
import time

import pytest

import cli
from bench.config import Config
from bench.record import Result, Run
from reports.history import History, run_rows

RUNS = 1000
CONFIGURATIONS = 20
DISTINCT_RUNS = 50
SAMPLES = 100
ANSWER_WITHIN_S = 1.0
ENVIRONMENT = {"host": "bench-box", "cpu_model": "Test CPU 9000", "cpu_cores": 2, "memory_bytes": 8 * 2**30,
               "threads": 2, "frameworks": {"torch": {"version": "2.4.0"}}, "git_dirty": False}


@pytest.fixture(scope="module")
def large_history(tmp_path_factory) -> History:
    rng = random.Random(0)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    configs = [Config(model=model, framework="torch", device="cpu", mode=mode, batch_size=batch, iters=SAMPLES)
               for model in ("lenet", "alexnet") for mode in ("forward", "forward-backward")
               for batch in (1, 2, 4, 8, 16)]
    assert len(configs) == CONFIGURATIONS
    templates = []
    for _ in range(DISTINCT_RUNS):
        levels = [(1 + position) * rng.lognormvariate(0, 0.05) for position in range(CONFIGURATIONS)]
        results = [Result(config=config, status="ok",
                          samples_ms=tuple(level * (1 + rng.gauss(0, 0.01)) for _ in range(SAMPLES)))
                   for level, config in zip(levels, configs, strict=True)]
        templates.append(run_rows(Run(environment={**ENVIRONMENT, "started_at": start.isoformat()}, results=results)))
    rows = []
    for index in range(RUNS):
        template = templates[index % DISTINCT_RUNS]
        run_id = f"speed-{index:05d}"
        run = {**template.run, "run_id": run_id, "content_hash": run_id,
               "started_at": (start + dt.timedelta(hours=index)).replace(tzinfo=None), "git_commit": f"{index:040x}"}
        rows.append(dataclasses.replace(template, run=run,
                                        results=[{**row, "run_id": run_id} for row in template.results]))
    history = History(tmp_path_factory.mktemp("history") / "history.duckdb")
    history.add(rows)
    assert history.counts() == (RUNS, RUNS * CONFIGURATIONS)
    return history


@pytest.mark.parametrize("command", ["show", "check"])
def test_history_answers_within_a_second(benchmark, capsys, large_history, command):
    elapsed: list[float] = []

    def answer() -> int:
        started = time.perf_counter()
        code = cli.main(["history", command, "--history", str(large_history.location)])
        elapsed.append(time.perf_counter() - started)
        return code

    assert benchmark.pedantic(answer, rounds=5, iterations=1, warmup_rounds=1) == 0
    out = capsys.readouterr().out
    benchmark.extra_info.update(runs=RUNS, results=RUNS * CONFIGURATIONS)
    assert out.count(f"{RUNS}") >= CONFIGURATIONS  # every configuration answered, over all 1,000 runs
    print(f"\nhistory {command} over {RUNS} runs, {RUNS * CONFIGURATIONS} results: "
          + ", ".join(f"{value:.3f}" for value in elapsed) + " s")
    timed = elapsed[1:]  # the warm-up round also imports what the command needs (scipy.stats for check)
    assert statistics.median(timed) < ANSWER_WITHIN_S, timed
