"""reports.table: terminal tables with noisy, capped, skipped and failed configurations shown."""

import re

import pytest
from rich.console import Console
from synthetic import ok, scaled

from bench.record import read_run
from reports._rows import COLUMN_BY_KEY, DROP_ORDER
from reports.compare import compare_runs
from reports.table import render_comparison, render_run


def rendered(source) -> str:
    console = Console(record=True, width=200)
    render_run(source, console)
    return console.export_text()


def row_of(text: str, *words: str) -> str:
    (line,) = [line for line in text.splitlines() if all(word in line for word in words)]
    return line


def test_a_table_per_model_and_mode_with_units_in_the_headers(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "alexnet — forward" in text
    for header in ("median ms", "CI ms", "ms/image", "images/s", "GFLOP/s", "MFU %", "peak memory", "burn-in memory"):
        assert header in text


def test_ratio_to_the_fastest_framework_of_each_setting(mixed_run):
    text = rendered(read_run(mixed_run))
    assert row_of(text, "torch", " 8 ").rstrip().endswith("1.00x")
    assert row_of(text, "tf", " 8 ").rstrip().endswith("1.50x")


def test_memory_in_human_units_and_mfu_blank_without_a_peak(mixed_run):
    text = rendered(read_run(mixed_run))
    torch_row = row_of(text, "torch", " 8 ")
    assert "1.0 GiB" in torch_row and "3.0 GiB" in torch_row  # timed window, and burn-in apart
    # 16e6 FLOPs per step in 10 ms = 1.6 GFLOP/s, 1.6% of a 100 GFLOP/s peak.
    assert re.search(r" 1\.6 +1\.6 ", torch_row)
    tf_row = row_of(text, "tf", " 8 ")
    assert re.search(r" 1\.1 {7,}", tf_row)  # GFLOP/s known (1.6 / 1.5), but no peak, so MFU is blank


def test_noisy_and_capped_results_are_marked_with_a_legend(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "~" in row_of(text, "tf", " 32 ")
    assert "~" not in row_of(text, "torch", " 32 ")
    assert "capped" in row_of(text, "torch", " 32 ")
    assert "~ noisy: interquartile range above 10% of the median" in text
    assert "capped: stopped by the time limit" in text


def test_skipped_and_failed_configurations_are_listed_with_reasons(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "Not measured in full" in text
    assert "skipped" in row_of(text, "no CUDA device on this machine")
    assert "failed" in row_of(text, "out of memory")


def test_environment_is_summarised_after_the_results_and_shown_in_full_on_request(mixed_run):
    summary = rendered(read_run(mixed_run))
    assert summary.index("alexnet — forward") < summary.index("cpu: Test CPU 9000, 2 cores, 8.0 GiB, 2 threads")
    assert "torch 2.4.0, tf 2.18.0, Python" in summary and "full environment: show --env" in summary
    assert "lab_notes" not in summary
    console = Console(record=True, width=200)
    render_run(read_run(mixed_run), console, with_environment=True)
    text = console.export_text()
    assert row_of(text, "Test CPU 9000").split("│")[1].strip() == "CPU"
    assert "2.18.0" in row_of(text, "tf version")
    assert row_of(text, "8.0 GiB").split("│")[1].strip() == "memory"
    assert " 100 " in row_of(text, "peak GFLOP/s cpu fp32")  # floats shown to 4 significant digits
    assert "an unknown key the harness added later" in row_of(text, "lab_notes")


def test_a_plain_list_of_results_renders_without_environment():
    text = rendered([ok(), ok(framework="tf", median_ms=20.0, seed=1)])
    assert "Environment" not in text
    assert row_of(text, "tf").rstrip().endswith("2.00x")


def test_comparison_table_shows_verdicts_and_a_tally(write_synthetic_run):
    base = read_run(write_synthetic_run("base", [ok(), ok(framework="tf", seed=1)]))
    new = read_run(write_synthetic_run("new", [scaled(ok(), 1.2), ok(framework="tf", seed=2)]))
    console = Console(record=True, width=200)
    render_comparison(compare_runs(base, new), console)
    text = console.export_text()
    assert "new against base: alexnet cpu forward b8 fp32" in text  # shared fields once, rows by what differs
    assert "slower" in row_of(text, " torch ", "1.20x")
    assert "same" in row_of(text, " tf ", "x ")
    assert "torch: slower, tested on samples: p = " in text
    assert "1 slower, 0 faster, 1 same, 0 inconclusive" in text


def test_shared_device_and_precision_move_to_the_title(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "alexnet — forward — cpu fp32" in text


@pytest.mark.parametrize("width", [80, 100, 120])
def test_narrow_terminals_drop_columns_in_the_stated_order_and_never_cut_a_header(mixed_run, width):
    console = Console(record=True, width=width)
    render_run(read_run(mixed_run), console)
    text = console.export_text()
    assert "…" not in text
    tables = text.split("CI:")[0]
    assert all(len(line) <= width for line in tables.splitlines())
    for header in ("framework", "batch", "median ms", "vs fastest"):  # never dropped
        assert header in tables
    wide = Console(record=True, width=400)
    render_run(read_run(mixed_run), wide)
    shown = [key for key in DROP_ORDER if COLUMN_BY_KEY[key].header in wide.export_text()]  # what the run has
    dropped = [key for key in shown if COLUMN_BY_KEY[key].header not in tables]
    assert dropped == shown[:len(dropped)]  # a prefix of the stated order
    if width == 80:
        assert dropped and "narrow terminal: left out burn-in memory, first step ms" in " ".join(text.split())


def test_peak_table_shows_each_framework_best_and_published():
    from reports.table import peak_table

    entry = {"device": "cuda", "threads": None, "matrix_sizes": [2048, 4096],
             "identity": {"kind": "cuda", "model": "NVIDIA H100 80GB HBM3", "capability": "9.0"},
             "best_gflops_per_s": {"bf16": 700_000.0}, "best_framework": {"bf16": "torch"},
             "by_framework": {"torch": {"bf16": {"gflops_per_s": 700_000.0}},
                              "tf": {"bf16": {"error": "skipped: tf: no GPU visible (install the cuda extra)"}}},
             "published_product": "H100 SXM5", "published_tflops": {"bf16": 989.4}}
    console = Console(record=True, width=200)
    console.print(peak_table(entry))
    text = console.export_text()
    assert "Matmul peak on cuda (NVIDIA H100 80GB HBM3, compute capability 9.0)" in text
    assert "published H100 SXM5 GFLOP/s" in text
    row = row_of(text, "bf16")
    assert "700,000" in row and "989,400" in row and "skipped: tf: no GPU visible" in row


def test_mfu_above_100_percent_is_marked_with_the_reason():
    text = rendered([ok(flops_per_step=16_000_000, peak_gflops_per_s=1.0)])  # 1.6 GFLOP/s against a peak of 1
    assert "160.1!" in row_of(text, "torch")
    assert "! MFU above 100%" in text and "Winograd" in text


def test_partial_results_show_the_samples_kept_and_why_not_a_median():
    from dataclasses import replace

    partial = replace(ok(), status="failed", reason="torch: timed out after 5 s (--timeout)", partial=True)
    text = rendered([partial])
    row = row_of(text, "timed out")
    assert "failed" in row and "60 kept" in row
    assert "median ms" not in text  # no results table for it


def test_a_host_bound_gpu_result_is_marked_with_how_busy_its_device_was():
    import dataclasses

    gpu = [dataclasses.replace(ok(framework=framework, median_ms=ms, flops_per_step=10**9, peak_gflops_per_s=1000.0,
                                  device_busy=busy), config=dataclasses.replace(ok().config, framework=framework,
                                                                                device="cuda"))
           for framework, ms, busy in (("torch", 5.0, 0.23), ("tf", 6.0, 0.91))]
    assert [result.derived.host_bound for result in gpu] == [True, False]
    console = Console(record=True, width=200)
    render_run(gpu, console)
    text = console.export_text()
    assert "device busy" in text and "23% host-bound" in text and "91%" in text and "91% host" not in text
    assert "h host-bound: the device ran kernels for less than 50% of a profiled step" in text
    cpu = Console(record=True, width=200)
    render_run([ok()], cpu)
    assert "device busy" not in cpu.export_text()  # a CPU result knows no such figure: no empty column
