"""``compare`` over pytest-benchmark's saved files: each file a process of every configuration it names, and the same
verdicts as for run files; files it cannot use are one line each."""

from __future__ import annotations

import json
import random

import pytest

import cli
from reports.saved_runs import read_any_run


def _saved(folder, index: int, median_s: float, *, seed: int, data: bool = True, extra: dict | None = None):
    """One pytest-benchmark file as ``--benchmark-save-data`` writes it: one benchmark of 30 rounds."""
    rng = random.Random(seed)
    rounds = [median_s * (1 + rng.gauss(0, 0.01)) for _ in range(30)]
    extra = {"model": "lenet", "framework": "torch", "device": "cpu", "mode": "forward", "batch_size": 2,
             "framework_version": "2.14.1"} if extra is None else extra
    stats = {"median": sorted(rounds)[15], "rounds": 30, **({"data": rounds} if data else {})}
    document = {"machine_info": {"node": "vm", "python_version": "3.11.7", "cpu": {"brand_raw": "AMD EPYC",
                                                                                    "count": 2}},
                "commit_info": {"id": "abc123", "dirty": False}, "datetime": f"2026-12-03T10:{index:02d}:00",
                "version": "5.2.3",
                "benchmarks": [{"name": "test_step[lenet-torch-cpu-forward]", "extra_info": extra, "stats": stats}]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{index:04d}_run.json"
    path.write_text(json.dumps(document))
    return path


def _side(folder, medians_s: list[float], seed: int):
    for index, median in enumerate(medians_s):
        _saved(folder, index, median, seed=seed + index)
    return folder


def test_a_folder_of_saved_files_is_one_run_with_a_process_per_file(tmp_path):
    run = read_any_run(_side(tmp_path / "base", [0.010, 0.011, 0.012], seed=1))
    (result,) = run.results
    assert result.config.model == "lenet" and result.config.batch_size == 2 and result.config.repeats == 3
    assert result.process_sample_counts == (30, 30, 30) and len(result.samples_ms) == 90
    assert result.process_medians_ms[0] == pytest.approx(10.0, rel=0.02)  # seconds saved, milliseconds read
    assert run.environment["cpu_model"] == "AMD EPYC" and run.environment["frameworks"]["torch"]["version"] == "2.14.1"


def test_compare_finds_a_slower_side_and_passes_a_rerun_whose_processes_land_apart(tmp_path, capsys):
    # Six processes a side: the fewest whose medians can reach the verdict's significance with room to spare.
    drifting = [0.010, 0.0112, 0.0098, 0.0105, 0.0116, 0.0101]
    base = _side(tmp_path / "base", drifting, seed=1)
    rerun = _side(tmp_path / "rerun", [median * 1.08 for median in drifting[::-1]], seed=20)
    slower = _side(tmp_path / "slower", [median * 1.5 for median in drifting], seed=40)
    assert cli.main(["compare", str(base), str(rerun), "--fail-on-regression", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    # 8% apart, beyond the 5% threshold, but within the 18% the processes of each side spread by: no verdict.
    assert verdict["tally"]["slower"] == 0 and verdict["compared"][0]["basis"] == "process medians"
    assert cli.main(["compare", str(base), str(slower), "--fail-on-regression", "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["has_regression"] and verdict["compared"][0]["verdict"] == "slower"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"data": False}, "saved without its rounds' times; save the benchmarks with --benchmark-save-data"),
    ({"extra": {"model": "lenet"}}, "does not name its configuration in extra_info (missing framework, device, mode, "
                                    "batch_size)"),
])
def test_a_file_compare_cannot_use_is_one_line_and_exit_3(tmp_path, capsys, kwargs, message):
    usable = _saved(tmp_path / "base", 0, 0.010, seed=1)
    unusable = _saved(tmp_path / "new", 0, 0.010, seed=2, **kwargs)
    assert cli.main(["compare", str(usable), str(unusable)]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {unusable}: ") and message in line
