"""Input pipeline results in every view: the terminal table, the markdown report with its chart and the workers a
step needs, the frame, the history and compare; synthetic results, no framework needed."""

from __future__ import annotations

from rich.console import Console
from synthetic import ENVIRONMENT, samples

from bench.config import Config
from bench.record import Result, Run, read_run
from reports.compare import compare_runs
from reports.frame import runs_frame
from reports.history.ingest import run_rows
from reports.markdown import write_report
from reports.table import render_run


def _config(framework: str, mode: str, workers: int | None) -> Config:
    return Config(model="resnet18", framework=framework, device="cpu", mode=mode, batch_size=32, data="jpeg",
                  images="made:count=2000,seed=0,quality=90,scale=1", workers=workers, autotune=workers is None,
                  iters=60)


def pipeline_alone(framework: str, workers: int | None, batch_ms: float) -> Result:
    return Result(config=_config(framework, "input", workers), status="ok", samples_ms=samples(batch_ms, spread=0),
                  first_batch_ms=150.0, cpu_seconds_per_image=0.005)


def fed(framework: str, workers: int, step_ms: float, pipeline_ms: float) -> Result:
    """A fed training step: the step alone, the pipeline alone, and the fed loop at the slower of the two."""
    return Result(config=_config(framework, "train", workers), status="ok",
                  samples_ms=samples(max(step_ms, pipeline_ms) * 1.1), step_samples_ms=samples(step_ms, spread=0),
                  pipeline_samples_ms=samples(pipeline_ms, spread=0), flops_per_step=10**12, first_batch_ms=150.0,
                  cpu_seconds_per_image=0.005)


def _run(tmp_path, name: str, results: list[Result]) -> Run:
    from bench.record import write_run

    path = tmp_path / name / "results.json"
    path.parent.mkdir(parents=True)
    write_run(path, Run(environment=dict(ENVIRONMENT), results=results))
    return read_run(path)


def _pipeline_run(tmp_path, name: str = "run") -> Run:
    # torch's step (100 ms a batch of 32) outpaces its pipeline at 1 worker (160 ms) but not at 2 (80 ms); tf's
    # step (50 ms) outpaces its pipeline at every measured count (200 and 110 ms).
    return _run(tmp_path, name, [
        pipeline_alone("torch", 1, 160.0), pipeline_alone("torch", 2, 80.0),
        fed("torch", 1, 100.0, 160.0), fed("torch", 2, 100.0, 80.0),
        fed("tf", 1, 50.0, 200.0), fed("tf", 2, 50.0, 110.0),
    ])


def test_fed_results_say_input_bound_from_the_rates_measured_alone(tmp_path):
    results = _pipeline_run(tmp_path).results
    verdicts = [(r.config.framework, r.config.mode, r.config.workers, r.derived.input_bound) for r in results]
    assert verdicts == [("torch", "input", 1, None), ("torch", "input", 2, None), ("torch", "train", 1, True),
                        ("torch", "train", 2, False), ("tf", "train", 1, True), ("tf", "train", 2, True)]
    fed_torch = results[2].derived
    assert round(fed_torch.step_images_per_s) == 320 and round(fed_torch.pipeline_images_per_s) == 200
    assert results[0].derived.pipeline_images_per_s == results[0].derived.images_per_s


def test_the_table_shows_data_rates_and_the_bound(tmp_path):
    console = Console(width=250, record=True)
    render_run(_pipeline_run(tmp_path), console)
    text = console.export_text()
    assert "jpeg, 1 worker" in text and "jpeg, 2 workers" in text
    for header in ("step alone images/s", "pipeline images/s", "bound", "CPU ms/image", "first batch ms"):
        assert header in text
    assert "bound: input where the pipeline alone is slower" in text


def test_the_report_says_the_workers_each_step_needs_measured_or_derived(tmp_path):
    run = _pipeline_run(tmp_path)
    report = write_report([run], tmp_path / "report.md").read_text()
    assert "## Input pipeline" in report
    assert "**torch** resnet18 train on cpu (batch 32, fp32) runs at 320 images/s alone; its pipeline keeps up " \
           "from **2 workers** (measured: 400 images/s)." in report
    # tf: its best rate per worker is at 1 worker (32 / 0.200 s = 160 images/s; 145 per worker at 2), against a
    # 640 images/s step: 4 workers.
    assert "would need about **4 workers** (derived from 160 images/s per worker at 1" in report
    assert "**torch** (jpeg, 2 workers) is" in report  # claims between rows name their workers
    assert "not measured" in report
    assert (tmp_path / "report-resnet18-pipeline.png").stat().st_size > 0


def test_frame_history_and_compare_take_pipeline_results(tmp_path):
    run = _pipeline_run(tmp_path)
    frame = runs_frame([run])
    for column in ("data", "workers", "autotune", "input_bound", "pipeline_images_per_s", "step_images_per_s",
                   "cpu_seconds_per_image", "first_batch_ms"):
        assert column in frame.columns
    assert frame["input_bound"].tolist()[2:] == [True, False, True, True]
    rows = run_rows(run)
    assert len(rows.results) == len(run.results)
    other = _run(tmp_path, "other", [fed("torch", 2, 100.0, 80.0)])
    comparison = compare_runs(run, other)
    # Only the configuration both measured is compared: the worker count is part of what identifies it.
    assert [pair.config.workers for pair in comparison.compared] == [2]
    assert comparison.compared[0].difference.verdict == "same"
    assert len(comparison.only_in_base) == 5


def test_a_run_of_autotuned_pipelines_alone_has_its_table_report_and_chart(tmp_path):
    run = _run(tmp_path, "autotune", [pipeline_alone("tf", None, 100.0)])
    console = Console(width=250, record=True)
    render_run(run, console)
    assert "jpeg, AUTOTUNE" in console.export_text()
    report = write_report([run], tmp_path / "report.md").read_text()
    assert "| resnet18 | cpu      | tf          |      32 | AUTOTUNE  |" in report
    assert (tmp_path / "report-resnet18-pipeline.png").stat().st_size > 0
