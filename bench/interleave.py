"""Base and new measured alternately in one session: the comparison for decisions that matter.

Two runs taken minutes apart differ by however far the machine drifted in between, which no test on their
samples can tell from a change. Here each configuration's worker processes alternate between the two sides in
the order base, new, new, base, base, new, ... (ABBA: a drift that grows steadily falls on both sides alike),
so drift shows as spread inside each side rather than as a difference between them.

A side is a git revision, checked out into a temporary worktree whose code its workers import, or an
environment: another Python interpreter (say a virtual environment with another torch) running this tree's code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import Config
from bench.environment import PROJECT_ROOT, host_environment
from bench.record import RUN_FILE_NAME, Run
from bench.runner import (
    DEFAULT_TIMEOUT_S,
    WORKER_PROGRAM,
    Lane,
    Observer,
    RunRecorder,
    Source,
    attach_peaks_to,
    measure_in_rounds,
)

WORKING_TREE = "."
PYTHON_PREFIX = "python:"


class SideError(ValueError):
    """A side that cannot be measured: an unknown revision, a missing interpreter. The message says which."""


@dataclass(frozen=True)
class Side:
    """Where one side's workers come from: the interpreter, the source tree they import, and what to call it."""

    role: str  # "base" or "new"
    spec: str  # as given on the command line
    description: str
    python: str = sys.executable
    tree: Path = PROJECT_ROOT
    git_commit: str | None = None
    extra_environment: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def source(self) -> Source:
        """Its workers: its interpreter, run in its tree, which comes first on the path, ahead of any installed
        copy of the project."""
        path = os.pathsep.join([str(self.tree), *filter(None, [os.environ.get("PYTHONPATH")])])
        return Source((self.python, *WORKER_PROGRAM), self.tree, {"PYTHONPATH": path, **self.extra_environment})


def _git(*args: str) -> str:
    completed = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise SideError((completed.stderr.strip().splitlines() or ["git failed"])[-1])
    return completed.stdout.strip()


@contextlib.contextmanager
def side(role: str, spec: str) -> Iterator[Side]:
    """The side ``spec`` names: ``.`` (this working tree), ``python:PATH`` (this tree under another interpreter)
    or a git revision (checked out into a temporary worktree, removed afterwards)."""
    if spec == WORKING_TREE:
        yield Side(role, spec, f"this working tree ({PROJECT_ROOT})")
        return
    if spec.startswith(PYTHON_PREFIX):
        python = spec.removeprefix(PYTHON_PREFIX)
        if not (Path(python).is_file() and os.access(python, os.X_OK)):
            raise SideError(f"--{role} {spec}: {python} is not an executable Python interpreter")
        yield Side(role, spec, f"this working tree under {python}", python=python)
        return
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    except SideError:
        raise SideError(f"--{role} {spec!r} is not a git revision of {PROJECT_ROOT}; give a revision, "
                        f"'{WORKING_TREE}' or '{PYTHON_PREFIX}PATH'") from None
    folder = Path(tempfile.mkdtemp(prefix=f"convbench-{role}-"))
    tree = folder / "tree"
    _git("worktree", "add", "--detach", str(tree), commit)
    try:
        yield Side(role, spec, f"git revision {commit[:12]} ({spec})", tree=tree, git_commit=commit)
    finally:
        with contextlib.suppress(SideError):
            _git("worktree", "remove", "--force", str(tree))
        with contextlib.suppress(OSError):
            folder.rmdir()


def run_interleaved(configs: list[Config], base: Side, new: Side, out_dir: Path, *,
                    timeout_s: float = DEFAULT_TIMEOUT_S, observer: Observer | None = None,
                    threads: int | None = None, measure_peaks: bool = True) -> tuple[Run, Run]:
    """Measure every configuration on both sides, processes alternating ABBA; writes ``out_dir/base`` and
    ``out_dir/new`` (each a run folder) after every process. ``observer`` sees base's configurations as indices
    ``0..n-1`` and new's as ``n..2n-1``."""
    lanes = []
    for index, one_side in enumerate((base, new)):
        environment = host_environment(threads)
        environment["side"] = {"role": one_side.role, "source": one_side.description, "python": one_side.python}
        if one_side.git_commit is not None:
            environment.update(git_commit=one_side.git_commit, git_dirty=False)
        recorder = RunRecorder(configs, out_dir / one_side.role / RUN_FILE_NAME, environment)
        lanes.append(Lane(recorder, one_side.source, offset=index * len(configs)))
    # Repeat r's processes run base then new for even r, new then base for odd r: A B B A A B ...
    measure_in_rounds(lanes, timeout_s, observer, order=lambda repeat: lanes if repeat % 2 == 0 else lanes[::-1])
    runs = [lane.recorder.run for lane in lanes]
    if measure_peaks:
        attach_peaks_to(runs, threads)
    return runs[0], runs[1]
