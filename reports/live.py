"""Live progress of a running benchmark: one line per configuration, from waiting to its median.

Lines name only what differs between the run's configurations (what they share is said once above them), and
the bar narrows with the terminal, so the display stays readable at 80 columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Column

from bench.config import Config
from bench.record import Result
from reports import _format
from reports._groups import short_labels

# Terminals narrower than this get the short bar.
_WIDE = 120


class LiveProgress:
    """A ``bench.runner.Observer`` that draws a rich progress display.

    Every configuration of the run is listed from the start, so the ones still to come are visible; each
    line then shows burn-in, the timed iterations with an ETA (and the process, with repeats), and finally the
    median or the status of a configuration that did not finish (its reason is in the table at the end).
    """

    def __init__(self, configs: list[Config], console: Console, prefixes: list[str] | None = None) -> None:
        self._console = console
        self._configs = configs
        self._processes = [0] * len(configs)
        names, self._shared = short_labels(configs)
        if prefixes is not None:  # several sides of one comparison share the display
            names = [f"{prefix} {name}" for prefix, name in zip(prefixes, names, strict=True)]
        width = max((len(name) for name in names), default=10)
        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=min(width, 24),
                                                                  overflow="ellipsis")),
            BarColumn(bar_width=24 if console.width >= _WIDE else 8),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console,
            transient=False,
        )
        self._tasks: list[TaskID] = [
            self._progress.add_task(escape(name), total=None, start=False, status="[dim]waiting[/]")
            for name in names
        ]

    def __enter__(self) -> LiveProgress:
        if self._shared:
            self._console.print(f"{len(self._configs)} configurations, all {self._shared}", highlight=False,
                                markup=False)
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def on_start(self, index: int, config: Config) -> None:
        task = self._tasks[index]
        self._processes[index] += 1
        self._progress.start_task(task)
        self._progress.update(task, status=f"{self._process(index)}starting")

    def _process(self, index: int) -> str:
        repeats = self._configs[index].repeats
        return f"p{self._processes[index]}/{repeats} " if repeats > 1 else ""

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None:
        task = self._tasks[index]
        if phase == "warmup":
            self._progress.update(task, total=total, completed=done, status=f"{self._process(index)}burn-in")
        else:
            status = f"{self._process(index)}{phase}"
            if self._progress.tasks[index].fields.get("status") != status:
                self._progress.reset(task, total=total, status=status)
            self._progress.update(task, total=total, completed=done)

    def on_finished(self, index: int, text: str, failed: bool) -> None:
        """A line's own ending, for work that makes no ``Result`` (``explain``)."""
        task = self._tasks[index]
        self._progress.update(task, status=f"[{'yellow' if failed else 'green'}]{escape(text)}[/]")
        self._progress.stop_task(task)

    def on_message(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)

    def on_result(self, index: int, result: Result) -> None:
        task = self._tasks[index]
        if result.status == "ok":
            derived = result.derived
            status = f"[green]{_format.milliseconds(derived.median_ms)} ms[/]"
            self._progress.update(task, total=derived.n, completed=derived.n, status=status)
        else:
            color = {"skipped": "yellow", "interrupted": "magenta"}.get(result.status, "red")
            kept = f" ({len(result.samples_ms)} samples kept)" if result.samples_ms else ""
            self._progress.update(task, total=1, completed=0, status=f"[{color}]{result.status}[/]{kept}")
        self._progress.stop_task(task)


@contextlib.contextmanager
def making_progress(console: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar while an image set is made; yields the ``on_progress(done, total)`` to pass. Nothing is shown
    when the set is already cached (no progress is reported)."""
    progress = Progress(TextColumn(f"making the image set ({escape(what)})"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    task: list[TaskID] = []

    def on_progress(done: int, total: int) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task("", total=total))
        progress.update(task[0], completed=done)

    try:
        yield on_progress
    finally:
        if task:
            progress.stop()
            console.print(f"made the image set ({what}); cached for later runs", highlight=False, markup=False)
