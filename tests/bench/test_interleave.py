"""Interleaved comparison: both sides measured alternately (ABBA) in one session, from a revision or an interpreter."""

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from bench.config import Config
from bench.interleave import Side, SideError, run_interleaved, side

REPO = Path(__file__).resolve().parents[2]

FAKE_WORKER = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["SIDE_LOG"], "a") as log:
        log.write(os.environ["SIDE_NAME"] + "\\n")
    samples = [float(os.environ["SIDE_MS"])] * 5
    print(json.dumps({"event": "progress", "phase": "timed", "done": 5, "total": 5, "samples": samples}))
    print(json.dumps({"event": "result", "status": "ok", "first_step_ms": 1.0, "capped": False,
                      "settings": {"side": os.environ["SIDE_NAME"]}}))
""")


def _fake_side(tmp_path: Path, role: str, milliseconds: float) -> Side:
    """A side whose tree holds a fake ``bench.worker`` that logs which side ran and reports fixed samples."""
    tree = tmp_path / role
    (tree / "bench").mkdir(parents=True)
    (tree / "bench" / "__init__.py").write_text("")
    (tree / "bench" / "worker.py").write_text(FAKE_WORKER)
    return Side(role, role, f"fake {role}", tree=tree, extra_environment={
        "SIDE_LOG": str(tmp_path / "order.log"), "SIDE_NAME": role, "SIDE_MS": str(milliseconds)})


def test_processes_alternate_abba_and_each_side_gets_its_own_run(tmp_path):
    configs = [Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=2, repeats=4),
               Config(model="lenet", framework="torch", device="cpu", mode="forward-backward", batch_size=2, repeats=4)]
    base, new = _fake_side(tmp_path, "base", 10.0), _fake_side(tmp_path, "new", 12.0)
    base_run, new_run = run_interleaved(configs, base, new, tmp_path / "out", measure_peaks=False)
    order = (tmp_path / "order.log").read_text().split()
    per_round = ["base", "new", "base", "new"], ["new", "base", "new", "base"]
    assert order == per_round[0] + per_round[1] + per_round[0] + per_round[1]  # A B | B A per configuration
    assert [r.derived.median_ms for r in base_run.results] == [10.0, 10.0]
    assert [r.derived.median_ms for r in new_run.results] == [12.0, 12.0]
    assert base_run.results[0].process_sample_counts == (5, 5, 5, 5)
    saved = json.loads((tmp_path / "out" / "new" / "results.json").read_text())
    assert saved["environment"]["side"]["role"] == "new" and saved["results"][0]["settings"] == {"side": "new"}


def test_a_side_that_is_no_revision_or_interpreter_is_refused():
    with pytest.raises(SideError, match="is not a git revision"), side("base", "no-such-revision-anywhere"):
        pass
    with pytest.raises(SideError, match="is not an executable Python interpreter"), side("new", "python:/nope"):
        pass


def test_a_revision_is_checked_out_into_a_worktree_that_is_removed_after():
    with side("base", "HEAD") as base:
        assert (base.tree / "bench" / "worker.py").is_file() and base.tree != REPO
        assert len(base.git_commit) == 40
    assert not base.tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout
    assert str(base.tree) not in listed


@pytest.mark.torch
def test_interleave_command_measures_a_revision_against_the_working_tree(tmp_path, capfd):
    """Run by ``cli.main`` in this process; each side's workers are processes of their own, started from its tree."""
    import cli

    returncode = cli.main(["interleave", "lenet", "--frameworks", "torch", "--base", "HEAD", "--new", ".", "--repeats",
                           "2", "--iters", "10", "--warmup", "1", "--batch-size", "2", "--out", str(tmp_path / "ab")])
    stdout, stderr = capfd.readouterr()
    assert returncode == 0, stderr
    assert "base: git revision" in stdout and "new:  this working tree" in stdout
    # Two processes a side cannot reach significance: the comparison says so instead of guessing.
    assert "inconclusive" in stdout
    for role in ("base", "new"):
        (result,) = json.loads((tmp_path / "ab" / role / "results.json").read_text())["results"]
        assert result["status"] == "ok" and result["process_sample_counts"] == [10, 10]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--base", "no-such-revision-anywhere", "--base 'no-such-revision-anywhere' is not a git revision"),
    ("--new", "python:/nope/python", "--new python:/nope/python: /nope/python is not an executable Python"),
])
def test_interleave_bad_side_is_one_line_and_exit_2(tmp_path, capfd, option, value, message):
    import cli

    assert cli.main(["interleave", "lenet", "--frameworks", "torch", option, value, "--out", str(tmp_path / "ab")]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
