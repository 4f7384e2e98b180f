"""``python cli.py fidelity``: each framework's worker rows become ratios held to their targets, shown or as JSON."""

from __future__ import annotations

import json
import subprocess

from rich.console import Console

import cli
from bench import fidelity
from reports.table import fidelity_table

WORKER_LINES = {
    "torch": [{"framework": "torch", "model": "alexnet", "batch": 8, "tolerance": 0.03, "harness_ms": 102.0,
               "reference_ms": 100.0, "reference": "torch.utils.benchmark.Timer"}],
    "tf": [{"framework": "tf", "model": "lenet", "batch": 1, "tolerance": 0.05, "harness_ms": 0.98,
            "reference_ms": 1.0, "reference": "bare tf.function loop"}],
}


def _fake_workers(monkeypatch, failing: str | None = None):
    def run(command, **_):
        framework = command[command.index("--worker") + 1]
        if framework == failing:
            return subprocess.CompletedProcess(command, 1, "", "ImportError: no module named tensorflow\n")
        lines = "".join(json.dumps(line) + "\n" for line in WORKER_LINES[framework])
        return subprocess.CompletedProcess(command, 0, "some log line\n" + lines, "")

    monkeypatch.setattr(fidelity.subprocess, "run", run)


def test_rows_carry_their_ratio_and_whether_it_meets_the_target(monkeypatch):
    _fake_workers(monkeypatch)
    rows, failures = fidelity.measure(["torch", "tf"], threads=2)
    assert failures == []
    assert [(row["framework"], round(row["ratio"], 3), row["within_target"]) for row in rows] == [
        ("torch", 1.02, True), ("tf", 0.98, True)]
    console = Console(record=True, width=80)
    console.print(fidelity_table(rows, 2, fidelity.ROUNDS))
    text = console.export_text()
    assert "1.020" in text and "within" in text and "torch.utils.benchmark.Timer" in text


def test_a_case_outside_its_target_or_a_failed_worker_exits_1(monkeypatch, capsys):
    WORKER_LINES["torch"][0]["harness_ms"] = 110.0  # 10% off a 3% target
    try:
        _fake_workers(monkeypatch, failing="tf")
        assert cli.main(["fidelity", "--frameworks", "torch,tf", "--json"]) == 1
    finally:
        WORKER_LINES["torch"][0]["harness_ms"] = 102.0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert [row["within_target"] for row in document["cases"]] == [False]
    assert captured.err.strip() == "tf: fidelity worker failed: ImportError: no module named tensorflow"
