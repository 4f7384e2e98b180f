"""reports.table: terminal tables with noisy, capped, skipped and failed configurations shown."""

from rich.console import Console
from synthetic import ok, scaled

from bench.record import read_run
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
    for header in ("median ms (95% CI)", "ms / image", "images/s", "GFLOP/s", "MFU %", "peak memory"):
        assert header in text


def test_ratio_to_the_fastest_framework_of_each_setting(mixed_run):
    text = rendered(read_run(mixed_run))
    assert row_of(text, "torch", " 8 ").rstrip(" │").endswith("1.00x")
    assert row_of(text, "tf", " 8 ").rstrip(" │").endswith("1.50x")


def test_memory_in_human_units_and_mfu_blank_without_a_peak(mixed_run):
    text = rendered(read_run(mixed_run))
    torch_row = row_of(text, "torch", " 8 ")
    assert "1.0 GiB" in torch_row
    # 1e6 MACs x 2 FLOPs x 8 images in 10 ms = 1.6 GFLOP/s, 1.6% of a 100 GFLOP/s peak.
    assert " 1.6 " in torch_row
    tf_row = row_of(text, "tf", " 8 ")
    assert " 1.1 " in tf_row  # GFLOP/s known (1.6 / 1.5) ...
    assert " 1.1 │       │" in tf_row  # ... but no peak, so MFU is blank


def test_noisy_and_capped_results_are_marked_with_a_legend(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "~" in row_of(text, "tf", " 32 ")
    assert "~" not in row_of(text, "torch", " 32 ")
    assert "capped" in row_of(text, "torch", " 32 ")
    assert "~ noisy: interquartile range above 10% of the median" in text
    assert "capped: stopped by the time limit" in text


def test_skipped_and_failed_configurations_are_listed_with_reasons(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "Not measured" in text
    assert "skipped" in row_of(text, "no CUDA device on this machine")
    assert "failed" in row_of(text, "out of memory")


def test_environment_is_shown_for_a_run_including_unknown_keys(mixed_run):
    text = rendered(read_run(mixed_run))
    assert row_of(text, "Test CPU 9000").split("│")[1].strip() == "CPU"
    assert "2.18.0" in row_of(text, "tf version")
    assert row_of(text, "8.0 GiB").split("│")[1].strip() == "memory"
    assert " 100 " in row_of(text, "peak GFLOP/s cpu fp32")  # floats shown to 4 significant digits
    assert "an unknown key the harness added later" in row_of(text, "lab_notes")


def test_a_plain_list_of_results_renders_without_environment():
    text = rendered([ok(), ok(framework="tf", median_ms=20.0, seed=1)])
    assert "Environment" not in text
    assert row_of(text, "tf").rstrip(" │").endswith("2.00x")


def test_comparison_table_shows_verdicts_and_a_tally(write_synthetic_run):
    base = read_run(write_synthetic_run("base", [ok(), ok(framework="tf", seed=1)]))
    new = read_run(write_synthetic_run("new", [scaled(ok(), 1.2), ok(framework="tf", seed=2)]))
    console = Console(record=True, width=200)
    render_comparison(compare_runs(base, new), console)
    text = console.export_text()
    assert "slower" in row_of(text, "alexnet torch cpu forward b8")
    assert "same" in row_of(text, "alexnet tf cpu forward b8")
    assert "1 slower, 0 faster, 1 same" in text


def test_shared_device_and_precision_move_to_the_title_and_narrow_consoles_hide_secondary_columns(mixed_run):
    text = rendered(read_run(mixed_run))
    assert "alexnet — forward — cpu fp32" in text
    narrow = Console(record=True, width=100)
    render_run(read_run(mixed_run), narrow)
    narrow_text = narrow.export_text()
    assert "first step ms" in text and "first step ms" not in narrow_text.split("narrow terminal")[0]
    assert "narrow terminal: ms / image, peak memory, first step ms, samples left out" in narrow_text


def test_peak_table_shows_each_framework_best_and_published():
    from reports.table import peak_table

    entry = {"device": "cuda", "threads": 2, "gpu_name": "NVIDIA H100 80GB HBM3",
             "best_gflops_per_s": {"bf16": 700_000.0},
             "by_framework": {"torch": {"bf16": {"gflops_per_s": 700_000.0}},
                              "tf": {"bf16": {"error": "skipped: tf: no GPU visible (install the cuda extra)"}}},
             "published_tflops": {"bf16": 989.4}}
    console = Console(record=True, width=200)
    console.print(peak_table(entry))
    text = console.export_text()
    assert "Matmul peak on cuda (NVIDIA H100 80GB HBM3)" in text
    row = row_of(text, "bf16")
    assert "700,000" in row and "989,400" in row and "skipped: tf: no GPU visible" in row
