"""The zoo's commands: ``list`` and ``verify``, their JSON output and their one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_list_json_names_every_model_with_counts():
    completed = run_cli("list", "--json")
    assert completed.returncode == 0
    models = {row["name"]: row for row in json.loads(completed.stdout)["models"]}
    assert sorted(models) == ["alexnet", "alexnet-2012", "lenet"]
    assert models["alexnet"]["params"] == 61_100_840
    assert models["lenet"]["macs"] == 416_520
    assert models["alexnet-2012"]["input"] == [3, 227, 227]


def test_list_table_shows_the_zoo():
    completed = run_cli("list")
    assert completed.returncode == 0
    assert "61,100,840" in completed.stdout and "lenet" in completed.stdout


@pytest.mark.torch
@pytest.mark.tf
def test_verify_json_is_only_json_and_passes():
    completed = run_cli("verify", "lenet", "--json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)  # nothing but the document on stdout
    (report,) = document["models"]
    assert document["passed"] and report["passed"]
    assert report["frameworks"]["tf"] == {"params": 61_706, "macs": 416_520}
    assert report["frameworks"]["torch"] == {"params": 61_706, "macs": 416_520}
    assert report["parity"]["fp32_logits_rel_diff"] <= 1e-4 and report["parity"]["grads_rel_diff"] <= 1e-10


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("verify", "alexnt"), "Did you mean 'alexnet'"), (("verify", "--batch-size", "0"), "--batch-size"),
     (("frobnicate",), "No such command")],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    completed = run_cli(*args)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in completed.stderr
