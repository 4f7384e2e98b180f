"""Configurations in isolated workers: the cross product, faults becoming results, nothing measured lost."""

import json
import sys

import pytest

from bench.config import Config
from bench.plan import expand
from bench.record import read_run
from bench.runner import Source, run_configs, run_worker

FAKE_OK = """
import json, sys
config = json.loads(sys.argv[-1])
print(json.dumps({"event": "progress", "phase": "timed", "done": 3, "total": 3, "samples": [1.0, 2.0, 3.0]}))
print(json.dumps({"event": "result", "status": "ok", "first_step_ms": 9.0,
                  "capped": False, "peak_memory_bytes": 1024, "burn_in_peak_memory_bytes": 4096,
                  "framework": {"version": "fake"}, "settings": {"threads": 2}}))
"""
# Streams four samples, then dies the way the parametrised line says.
FAKE_DIES_MID_LOOP = """
import json, sys, time
print(json.dumps({"event": "burn_in", "first_step_ms": 50.0, "burn_in_peak_memory_bytes": 2048}), flush=True)
print(json.dumps({"event": "progress", "phase": "timed", "done": 4, "total": 100, "samples": [5.0, 6.0, 7.0, 8.0]}),
      flush=True)
DEATH
"""


class QuietObserver:
    """Does nothing; a test overrides the one event it watches."""

    def on_start(self, index, config):
        pass

    def on_progress(self, index, phase, done, total):
        pass

    def on_result(self, index, result):
        pass


def _fake(script: str) -> Source:
    """Workers that run ``script`` instead of ``bench.worker``, the configuration's JSON as their last argument."""
    return Source(worker_command=(sys.executable, "-c", script))


def _config(**changes) -> Config:
    values = {"model": "lenet", "framework": "torch", "device": "cpu", "mode": "forward", "batch_size": 2,
              "warmup": 1, "iters": 12}
    values.update(changes)
    return Config(**values)


def test_expand_is_the_cross_product():
    configs = expand(["lenet", "alexnet"], ["torch", "tf"], ["cpu"], ["forward", "forward-backward"], [1, 8],
                     ["fp32", "bf16"], warmup=3, iters=7, max_time_s=5.0)
    assert len(configs) == 2 * 2 * 2 * 2 * 2
    assert len(set(configs)) == len(configs)
    assert all(c.warmup == 3 and c.iters == 7 and c.max_time_s == 5.0 for c in configs)
    assert [c.model for c in configs[:16]] == ["lenet"] * 16  # grouped by model


def test_worker_result_and_progress_are_read():
    progress = []

    class Observer(QuietObserver):
        def on_progress(self, index, phase, done, total):
            progress.append((phase, done, total))

    result, facts, interrupted = run_worker(_config(), 60, Observer(), 0, source=_fake(FAKE_OK))
    assert result.status == "ok" and result.samples_ms == (1.0, 2.0, 3.0) and not result.partial
    assert result.first_step_ms == 9.0 and result.macs_per_image == 416_520
    assert result.peak_memory_bytes == 1024 and result.burn_in_peak_memory_bytes == 4096
    assert result.flops_per_step == 2 * 416_520 * 2 and result.settings == {"threads": 2}
    assert facts == {"framework": {"version": "fake"}, "device": {}} and progress == [("timed", 3, 3)]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "worker killed by SIGSEGV"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL (out of memory?)"),
        ("import sys; print('boom: bad things', file=sys.stderr); sys.exit(3)", "exited with code 3: boom: bad things"),
        ("import time; time.sleep(60)", "timed out after 1 s"),
    ],
)
def test_worker_faults_become_failed_results(script, reason):
    result, _, _ = run_worker(_config(), 1 if "sleep" in script else 60, source=_fake(script))
    assert result.status == "failed"
    assert result.reason.startswith("torch: ") and reason in result.reason


@pytest.mark.parametrize(
    ("death", "reason"),
    [("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL"),
     ("time.sleep(60)", "timed out after 2 s"),
     ("sys.exit(1)", "exited with code 1")],
)
def test_a_worker_that_dies_mid_loop_keeps_the_samples_it_streamed(death, reason):
    result, _, _ = run_worker(_config(), 2, source=_fake(FAKE_DIES_MID_LOOP.replace("DEATH", death)))
    assert result.status == "failed" and reason in result.reason
    assert result.partial and result.samples_ms == (5.0, 6.0, 7.0, 8.0)
    assert result.first_step_ms == 50.0 and result.burn_in_peak_memory_bytes == 2048
    assert result.derived.median_ms is None  # partial: kept, not summarised


def test_undecodable_worker_output_does_not_stall_the_run():
    script = ("import sys, os; os.write(2, b'\\xff\\xfe bad bytes\\n'); os.write(1, b'\\xff\\n'); "
              + FAKE_OK.replace("import json, sys", "import json"))
    result, _, _ = run_worker(_config(), 30, source=_fake(script))
    assert result.status == "ok" and result.samples_ms == (1.0, 2.0, 3.0)


def test_interrupt_mid_configuration_keeps_its_streamed_samples(tmp_path):
    path = tmp_path / "results.json"

    class InterruptOnProgress(QuietObserver):
        def on_progress(self, index, phase, done, total):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_configs([_config()], path, observer=InterruptOnProgress(),
                    source=_fake(FAKE_DIES_MID_LOOP.replace("DEATH", "time.sleep(60)")), measure_peaks=False)
    (saved,) = read_run(path).results
    assert saved.status == "interrupted" and saved.partial
    assert saved.samples_ms == (5.0, 6.0, 7.0, 8.0)
    assert "interrupted by SIGINT" in saved.reason


def test_run_file_rewritten_after_each_configuration(tmp_path):
    path = tmp_path / "results.json"
    seen_on_disk = []

    class Observer(QuietObserver):
        def on_start(self, index, config):
            seen_on_disk.append(len(read_run(path).results))

    configs = [_config(), _config(mode="forward-backward")]
    run = run_configs(configs, path, observer=Observer(), source=_fake(FAKE_OK), measure_peaks=False)
    assert seen_on_disk == [0, 1]
    saved = read_run(path)
    assert len(saved.results) == 2 == len(run.results)
    assert saved.planned == configs
    assert saved.environment["frameworks"]["torch"] == {"version": "fake"}
    assert "finished_at" in saved.environment


def test_interrupt_keeps_what_was_measured(tmp_path):
    path = tmp_path / "results.json"

    class StopOnSecond(QuietObserver):
        def on_start(self, index, config):
            if index == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_configs([_config(), _config(batch_size=4)], path, observer=StopOnSecond(), source=_fake(FAKE_OK),
                    measure_peaks=False)
    saved = read_run(path)
    assert [r.config.batch_size for r in saved.results] == [2]


def test_skip_reason_reused_for_same_framework_device_precision(tmp_path):
    script = """
import json
print(json.dumps({"event": "result", "status": "skipped", "reason": "torch: no CUDA GPU visible"}))
"""
    configs = [_config(device="cuda"), _config(device="cuda", mode="train"), _config(device="cuda", model="alexnet")]
    run = run_configs(configs, tmp_path / "r.json", source=_fake(script), measure_peaks=False)
    assert [r.status for r in run.results] == ["skipped"] * 3
    assert {r.reason for r in run.results} == {"torch: no CUDA GPU visible"}


@pytest.mark.torch
def test_real_torch_worker_times_lenet(tmp_path):
    run = run_configs([_config(iters=12, warmup=2)], tmp_path / "results.json", measure_peaks=False)
    (result,) = run.results
    assert result.status == "ok", result.reason
    assert len(result.samples_ms) == 12 and all(s > 0 for s in result.samples_ms)
    assert result.peak_memory_bytes > 0 and result.burn_in_peak_memory_bytes > 0
    assert result.settings["threads"] >= 1 and result.settings["peak_memory"] == "process peak RSS in the window"
    assert run.environment["frameworks"]["torch"]["version"]
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["results"][0]["median_ms"] == result.derived.median_ms


def test_repeats_pool_samples_and_keep_each_process_count(tmp_path):
    run = run_configs([_config(repeats=3)], tmp_path / "r.json", source=_fake(FAKE_OK), measure_peaks=False)
    (result,) = run.results
    assert result.status == "ok"
    assert result.samples_ms == (1.0, 2.0, 3.0) * 3 and result.process_sample_counts == (3, 3, 3)
    assert result.process_medians_ms == (2.0, 2.0, 2.0)
    assert result.derived.processes == 3 and result.derived.process_spread == 0.0
    assert read_run(tmp_path / "r.json").results[0].process_medians_ms == (2.0, 2.0, 2.0)


def test_repeats_run_in_rounds_over_the_configurations(tmp_path):
    started = []

    class Observer(QuietObserver):
        def on_start(self, index, config):
            started.append(index)

    configs = [_config(repeats=3), _config(mode="forward-backward", repeats=2)]
    run = run_configs(configs, tmp_path / "r.json", observer=Observer(), source=_fake(FAKE_OK),
                      measure_peaks=False)
    assert started == [0, 1, 0, 1, 0]
    assert [r.process_sample_counts for r in run.results] == [(3, 3, 3), (3, 3)]


def test_resume_keeps_ok_results_and_runs_the_rest(tmp_path):
    path = tmp_path / "results.json"
    first, second = _config(), _config(batch_size=4)
    previous = run_configs([first], path, source=_fake(FAKE_OK), measure_peaks=False)
    started = []

    class Observer(QuietObserver):
        def on_start(self, index, config):
            started.append(config)

    run = run_configs([first, second], path, observer=Observer(), source=_fake(FAKE_OK),
                      measure_peaks=False, resume=read_run(path))
    assert started == [second]
    assert run.results[0] == previous.results[0] and run.results[1].status == "ok"
    assert len(read_run(path).environment["resumed"]) == 1


def test_a_failing_repeat_fails_the_result_but_keeps_what_was_measured(tmp_path):
    marker = tmp_path / "ran-once"
    script = FAKE_OK.replace("import json, sys", f"""import json, os, signal, sys
if os.path.exists({str(marker)!r}):
    os.kill(os.getpid(), signal.SIGSEGV)
open({str(marker)!r}, "w").close()""")
    run = run_configs([_config(repeats=3)], tmp_path / "r.json", source=_fake(script), measure_peaks=False)
    (result,) = run.results
    assert result.status == "failed"
    assert result.reason == "torch: process 2 of 3: worker killed by SIGSEGV"
    assert result.samples_ms == (1.0, 2.0, 3.0) and result.process_medians_ms == (2.0,) and result.partial
