"""reports.markdown and reports.plots: the report's sections, its charts, and several runs in one report."""

import re

from synthetic import ENVIRONMENT, ok

from bench.record import read_run
from reports.markdown import write_report
from reports.plots import write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def linked_images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_has_every_section(mixed_run, tmp_path):
    text = write_report([read_run(mixed_run)], tmp_path / "out" / "report.md").read_text()
    assert text.startswith("# CNN benchmark report\n")
    assert re.search(r"Generated \d{4}-\d{2}-\d{2}", text)
    for heading in ("## Environment", "## Results", "### alexnet", "#### forward",
                    "#### Batch-size scaling of alexnet", "## Methodology",
                    "## Skipped, failed and interrupted configurations"):
        assert f"\n{heading}\n" in text, heading
    assert "lab_notes" in text and "an unknown key the harness added later" in text


def test_frameworks_side_by_side_with_speedup_and_units(mixed_run, tmp_path):
    text = write_report([read_run(mixed_run)], tmp_path / "report.md").read_text()
    for header in ("median ms", "CI ms", "ms/image", "images/s", "GFLOP/s", "MFU %", "peak memory", "burn-in memory"):
        assert header in text
    assert "batch 8: **torch** is 1.50x faster than **tf** (Mann-Whitney p = " in text
    # The noisy tf result at batch 32 is spread wide, but torch's samples all lie far below it.
    assert "batch 32: **torch** is 1.53x faster than **tf**" in text
    assert "CI: 97% CI of the median from one process's samples" in text  # 60 samples: ranks 22 and 39
    assert "~45.91" in text
    assert "60 (capped)" in text


def test_methodology_comes_from_the_configurations_and_modes(mixed_run, tmp_path):
    text = write_report([read_run(mixed_run)], tmp_path / "report.md").read_text()
    methodology = text.split("## Methodology", 1)[1].split("## Skipped", 1)[0]
    assert "10 untimed burn-in steps, then 60 timed steps (4 configurations)" in methodology
    assert "10 untimed burn-in steps, then 100 timed steps (2 configurations)" in methodology
    assert "**forward**: eval mode" in methodology
    assert "fresh worker process" in methodology
    assert "synchronisation" in methodology
    assert "2 FLOPs per multiply-accumulate" in methodology and "every layer but the first" in methodology
    assert "does not depend on the engines a run times" in methodology
    assert "Threads per worker: 2." in methodology


def test_failures_listed_with_reasons_and_pipes_escaped(mixed_run, tmp_path):
    text = write_report([read_run(mixed_run)], tmp_path / "report.md").read_text()
    failures = text.split("## Skipped, failed and interrupted configurations", 1)[1]
    assert "no CUDA device on this machine" in failures
    assert r"out of memory \| allocator gave up" in failures


def test_charts_are_png_files_beside_the_report_linked_relatively(mixed_run, tmp_path):
    report = write_report([read_run(mixed_run)], tmp_path / "out" / "report.md")
    images = linked_images(report.read_text())
    assert sorted(images) == ["report-alexnet-median.png", "report-alexnet-scaling.png"]
    for name in images:
        assert (report.parent / name).read_bytes().startswith(PNG_MAGIC)


def test_no_scaling_chart_or_table_for_a_single_batch_size(write_synthetic_run, tmp_path):
    folder = write_synthetic_run("one-batch", [ok(), ok(framework="tf", seed=1)])
    report = write_report([read_run(folder)], tmp_path / "report.md")
    text = report.read_text()
    assert "Batch-size scaling" not in text
    assert linked_images(text) == ["report-alexnet-median.png"]
    assert write_plots([read_run(folder)], tmp_path / "again", "x") == [tmp_path / "again" / "x-alexnet-median.png"]


def test_two_run_files_merge_into_one_report(write_synthetic_run, tmp_path):
    cpu = write_synthetic_run("cpu-box", [ok(), ok(framework="tf", median_ms=12.0, seed=1)])
    gpu = write_synthetic_run("gpu-box", [ok(median_ms=1.0, seed=2)], {**ENVIRONMENT, "host": "gpu-host"})
    text = write_report([read_run(cpu), read_run(gpu)], tmp_path / "both.md").read_text()
    environment = text.split("## Environment", 1)[1].split("## Results", 1)[0]
    assert re.search(r"\| setting\s+\| cpu-box\s+\| gpu-box\s+\|", environment)
    assert re.search(r"\| host\s+\| bench-box\s+\| gpu-host\s+\|", environment)
    assert re.search(r"\| cpu-box\s+\| cpu .*\| tf ", text)
    assert re.search(r"\| gpu-box\s+\| cpu .*\| torch .*\|\s+1\.00x", text)
    # Results of different runs are never compared with each other.
    assert "cpu-box, cpu, fp32, batch 8: **torch** is 1.20x faster than **tf**" in text
    assert "gpu-box, cpu, fp32, batch 8" not in text
    assert (tmp_path / "both-alexnet-median.png").read_bytes().startswith(PNG_MAGIC)


def test_a_speedup_claim_follows_the_compare_test(write_synthetic_run, tmp_path):
    """2.9% apart with tight samples is significant, but within the 5% that compare needs: no winner is named."""
    folder = write_synthetic_run("close", [ok(median_ms=10.0, spread=0.001),
                                           ok(framework="tf", median_ms=10.3, seed=1, spread=0.001)])
    text = write_report([read_run(folder)], tmp_path / "report.md").read_text()
    assert "**torch** and **tf** are not distinguishable (the shift 2.9% is within 5.0%)" in text
    assert "faster than" not in text


def test_settings_recorded_per_configuration_are_listed(write_synthetic_run, tmp_path):
    folder = write_synthetic_run("settings", [ok(settings={"tf32": False, "compile": "eager"}),
                                              ok(framework="tf", seed=1, settings={"xla": True})])
    text = write_report([read_run(folder)], tmp_path / "report.md").read_text()
    settings = text.split("## Settings", 1)[1].split("## Methodology", 1)[0]
    assert "| torch cpu fp32" in settings and "tf32 no, compile eager" in settings
    assert "| tf cpu fp32" in settings and "xla yes" in settings


def test_a_run_folder_with_a_ledger_gets_its_section_and_chart(mixed_run, tmp_path):
    from rich.console import Console

    from bench import ledger as ld
    from bench.explain import EXPLAIN_FILE_NAME, write_explanations
    from reports.explain import render_explanations

    def rows(framework, times, view=ld.IN_MODEL):
        return [ld.LayerTime(layer, "conv", framework, ld.FORWARD, view, ms) for layer, ms in times.items()]

    steps = [ld.StepLedger("torch", 10.0, 12.0, 9.0, 3.0, 8.5, "torch.profiler", 5),
             ld.StepLedger("tf", 6.0, 7.0, 6.0, 1.0, 7.0, "tf.profiler", 5)]
    entry = ld.Explanation("alexnet", "forward", "cpu", 8, "fp32", steps,
                           rows("torch", {"conv1": 6.0, "conv2": 3.0}) + rows("tf", {"conv1": 2.0, "conv2": 4.0})
                           + rows("torch", {"conv1": 5.0, "conv2": 3.5}, ld.ALONE)
                           + rows("tf", {"conv1": 3.0, "conv2": 4.0}, ld.ALONE))
    write_explanations(mixed_run / EXPLAIN_FILE_NAME, [entry])
    text = write_report([read_run(mixed_run)], tmp_path / "report.md").read_text()
    assert "## Where the time goes" in text and "### alexnet — forward — cpu b8 fp32" in text
    # torch's 12 ms profiled step against tf's 7: conv1 +4 ms, unattributed +2, conv2 -1.
    assert ("torch's profiled step takes 5.000 ms longer than tf's (71% more); the largest parts of that difference: "
            "conv1 +4.000 ms (80%), unattributed +2.000 ms (40%), conv2 -1.000 ms (-20%)") in text
    assert (tmp_path / "report-alexnet-forward-cpu-b8-fp32-ledger.png").exists()
    console = Console(record=True, width=80)
    render_explanations([entry], console)
    assert "conv1 +4.000 ms (80%)" in console.export_text().replace("\n", " ")
