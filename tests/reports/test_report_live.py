"""Live progress: every configuration listed from the start, then burn-in, timed progress and the outcome."""

from rich.console import Console

from bench.config import Config
from bench.record import Result
from reports.live import LiveProgress


def test_progress_lists_waiting_configurations_and_ends_with_each_outcome():
    configs = [Config(model="lenet", framework="torch", device="cpu", mode="forward", batch_size=8),
               Config(model="lenet", framework="tf", device="cuda", mode="forward", batch_size=8)]
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
    assert "2 configurations, all lenet forward b8 fp32" in text  # what they share, said once
    assert "torch cpu" in text and "2.000 ms" in text
    assert "tf cuda" in text and "skipped" in text


def test_progress_stays_readable_at_80_columns():
    configs = [Config(model=model, framework=framework, device="cpu", mode=mode,
                      batch_size=32) for model in ("lenet", "alexnet", "alexnet-2012")
               for framework in ("torch", "tf") for mode in ("forward", "forward-backward")]
    console = Console(record=True, width=80, force_terminal=False)
    with LiveProgress(configs, console) as progress:
        for index, config in enumerate(configs):
            progress.on_start(index, config)
            progress.on_progress(index, "timed", 37, 100)
            progress.on_result(index, Result(config, "ok", samples_ms=(188.8,)))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert not any("…" in line for line in lines)
    assert any(line.startswith("alexnet-2012 tf forward-backward") and "188.8 ms" in line for line in lines)
