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
from bench.record import Run, write_run
from bench.runner import DEFAULT_TIMEOUT_S, Observer, RunRecorder, measure_process

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
    def worker_command(self) -> tuple[str, ...]:
        return (self.python, "-m", "bench.worker")

    @property
    def environment(self) -> dict[str, str]:
        # The tree comes first on the path, ahead of any installed copy of the project.
        path = os.pathsep.join([str(self.tree), *filter(None, [os.environ.get("PYTHONPATH")])])
        return {"PYTHONPATH": path, **self.extra_environment}


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
    recorders = {}
    for index, one_side in enumerate((base, new)):
        environment = host_environment(threads)
        environment["side"] = {"role": one_side.role, "source": one_side.description, "python": one_side.python}
        if one_side.git_commit is not None:
            environment.update(git_commit=one_side.git_commit, git_dirty=False)
        recorders[one_side.role] = (RunRecorder(configs, out_dir / one_side.role / "results.json", environment),
                                    index * len(configs))
    try:
        for repeat in range(max((config.repeats for config in configs), default=0)):
            order = (base, new) if repeat % 2 == 0 else (new, base)
            for index in range(len(configs)):
                for one_side in order:
                    recorder, offset = recorders[one_side.role]
                    if not recorder.needs(index, repeat):
                        continue
                    shifted = _Shifted(observer, offset) if observer is not None else None
                    final = measure_process(recorder, index, timeout_s, shifted, one_side.worker_command,
                                            one_side.tree, one_side.environment)
                    if final is not None and shifted is not None:
                        shifted.on_result(index, final)
    finally:
        for recorder, _ in recorders.values():
            recorder.finish()
    runs = tuple(recorder.run for recorder, _ in recorders.values())
    if measure_peaks:
        from bench.peak import attach_peaks

        for run in runs:
            if any(result.status == "ok" for result in run.results):
                attach_peaks(run, threads)
                write_run(run.path, run)
    return runs[0], runs[1]


class _Shifted:
    """An observer seen through an index offset, so one display can follow both sides."""

    def __init__(self, observer: Observer, offset: int) -> None:
        self._observer, self._offset = observer, offset

    def on_start(self, index: int, config: Config) -> None:
        self._observer.on_start(index + self._offset, config)

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None:
        self._observer.on_progress(index + self._offset, phase, done, total)

    def on_result(self, index: int, result) -> None:
        self._observer.on_result(index + self._offset, result)
