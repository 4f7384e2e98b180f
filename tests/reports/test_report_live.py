"""Live progress: every configuration listed from the start, then burn-in, timed progress and the outcome."""

from rich.console import Console

from bench.record import Config, Result
from reports.live import LiveProgress


def test_progress_lists_waiting_configurations_and_ends_with_each_outcome():
    configs = [Config("lenet", "torch", "cpu", "forward", 8), Config("lenet", "tf", "cuda", "forward", 8)]
    console = Console(record=True, width=160, force_terminal=False)
    progress = LiveProgress(configs, console)
    waiting = Console(record=True, width=160)
    waiting.print(progress._progress)  # before anything runs: both lines, both waiting
    assert waiting.export_text().count("waiting") == 2

    with progress:
        progress.on_start(0, configs[0])
        progress.on_progress(0, "warmup", 10, 10)
        progress.on_progress(0, "timed", 50, 100)
        progress.on_progress(0, "timed", 100, 100)
        progress.on_result(0, Result(configs[0], "ok", samples_ms=(1.0, 2.0, 3.0)))
        progress.on_start(1, configs[1])
        progress.on_result(1, Result(configs[1], "skipped", reason="tf: no GPU visible"))
    text = console.export_text()
    assert "lenet torch cpu forward b8 fp32" in text and "median 2.000 ms n=3" in text
    assert "skipped: tf: no GPU visible" in text
