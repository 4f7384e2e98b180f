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
    assert sorted(models) == ["alexnet", "alexnet-2012", "googlenet", "lenet", "resnet18", "resnet50", "vgg11",
                              "vgg16"]
    assert models["alexnet"]["params"] == 61_100_840 and models["alexnet"]["statistics"] == 0
    assert models["resnet50"]["params"] == 25_557_032 and models["resnet50"]["statistics"] == 53_120
    assert models["lenet"]["macs"] == 416_520
    assert models["alexnet-2012"]["input"] == [3, 227, 227]


def test_list_table_shows_the_zoo(capfd):
    import cli

    assert cli.main(["list"]) == 0  # in this process: ``list --json`` above runs ``python cli.py`` end to end
    stdout = capfd.readouterr().out
    assert "61,100,840" in stdout and "lenet" in stdout


# ``verify --json`` end to end (stdout only the document, the counts, the verdict) is tested on a model added as a
# new folder, in tests/zoo/test_model_folder.py.


@pytest.mark.parametrize(
    ("args", "needle"),
    [(("verify", "alexnt"), "Did you mean 'alexnet'"), (("verify", "--batch-size", "0"), "--batch-size"),
     (("frobnicate",), "No such command")],
)
def test_bad_input_is_one_line_exit_2(args, needle, capfd):
    """Run by ``cli.main`` in this process; tests/test_cli_bench.py runs bad input through ``python cli.py`` too."""
    import cli

    assert cli.main(list(args)) == 2
    stderr = capfd.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in stderr
