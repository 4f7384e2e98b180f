"""Live progress of a running benchmark: one line per configuration, from waiting to its median."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from bench.record import Config, Result


class LiveProgress:
    """A ``bench.runner.Observer`` that draws a rich progress display.

    Every configuration of the run is listed from the start, so the ones still to come are visible; each
    line then shows burn-in, the timed iterations with an ETA, and finally the median (or why it did not run).
    """

    def __init__(self, configs: list[Config], console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self._tasks: list[TaskID] = [
            self._progress.add_task(escape(config.label()), total=None, start=False, status="[dim]waiting[/]")
            for config in configs
        ]

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def on_start(self, index: int, config: Config) -> None:
        task = self._tasks[index]
        self._progress.start_task(task)
        self._progress.update(task, status="starting worker")

    def on_progress(self, index: int, phase: str, done: int, total: int) -> None:
        task = self._tasks[index]
        if phase == "warmup":
            self._progress.update(task, total=total, completed=done, status="burn-in")
        else:
            if self._progress.tasks[index].fields.get("status") != "timed":
                self._progress.reset(task, total=total, status="timed")
            self._progress.update(task, total=total, completed=done)

    def on_result(self, index: int, result: Result) -> None:
        task = self._tasks[index]
        if result.status == "ok":
            summary = result.summary
            capped = " (time cap)" if result.capped else ""
            status = f"[green]median {summary.median_ms:.3f} ms[/] n={summary.n}{capped}"
            self._progress.update(task, total=summary.n, completed=summary.n, status=status)
        else:
            color = "yellow" if result.status == "skipped" else "red"
            self._progress.update(task, total=1, completed=0, status=f"[{color}]{result.status}[/]: "
                                  f"{escape(result.reason or '')}")
        self._progress.stop_task(task)
