"""Data-parallel runs: the same step as one process, measured per rank, on one machine and on two "machines"
(localhost, two ports), and faults that end a configuration cleanly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest

import cli
from bench import data_parallel, launchers
from bench.config import Config
from bench.engines import ENGINES
from bench.launchers import Cluster, ClusterError, free_port
from bench.record import Result
from bench.runner import run_configs

REPO = Path(__file__).resolve().parents[2]
STEP_PROGRAM = Path(__file__).with_name("data_parallel_step.py")
FAULTY_RANK = Path(__file__).with_name("faulty_rank.py")
# Weights are O(0.1) and one step moves them O(1e-3); summing the gradient in another order moves them O(1e-8).
EQUAL_WEIGHTS_ATOL = 1e-6


@pytest.fixture
def project_on_path(monkeypatch):
    """Rank programs outside the package import it from the checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def _processes_running(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


# --- the distributed step is the same work -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("framework", [pytest.param("torch", marks=pytest.mark.torch),
                                       pytest.param("tf", marks=pytest.mark.tf)])
def test_two_replicas_on_half_batches_take_the_step_of_one_process_on_the_whole_batch(framework, tmp_path,
                                                                                      project_on_path):
    models = "lenet,alexnet"
    config = Config(model="lenet", framework=framework, device="cpu", mode="train", batch_size=2, replicas=2)
    launches = ENGINES[framework].data_parallel.launches(config, Cluster(), "equivalence",
                                                        (str(STEP_PROGRAM), str(tmp_path), "2", models, framework))
    ranks = [subprocess.Popen(launch.argv, env={**os.environ, **launch.environment}, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for launch in launches]
    single = subprocess.run([sys.executable, str(STEP_PROGRAM), str(tmp_path), "0", models, framework], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    for process in ranks:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]

    for model in models.split(","):
        whole = np.load(tmp_path / f"{model}-0.npz")
        parallel = np.load(tmp_path / f"{model}-2.npz")
        assert len(whole.files) == len(parallel.files) > 0
        worst = max(float(np.abs(parallel[name] - whole[name]).max()) for name in whole.files)
        assert worst <= EQUAL_WEIGHTS_ATOL, f"{model}: data-parallel step differs from one process by {worst:.3g}"
    # The check can fail: the same step without the gradient exchange is another update.
    whole, local_only = np.load(tmp_path / "lenet-0.npz"), np.load(tmp_path / "lenet-2-rank0-no-sync.npz")
    apart = max(float(np.abs(local_only[name] - whole[name]).max()) for name in whole.files)
    assert apart > 100 * EQUAL_WEIGHTS_ATOL, f"local-only step indistinguishable ({apart:.3g})"


# --- measured on one machine ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tf
def test_bench_replicas_measures_every_rank_in_both_frameworks(tmp_path):
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "cli.py", "bench", "lenet", "--frameworks", "torch,tf", "--replicas", "1,2", "--modes",
         "train", "--batch-size", "4", "--warmup", "2", "--iters", "6", "--no-peak", "--out", str(out), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    results = {(entry["framework"], entry["replicas"]): entry for entry in document["results"]}
    assert set(results) == {("torch", 1), ("torch", 2), ("tf", 1), ("tf", 2)}
    cores = os.cpu_count() or 1
    for (_, replicas), entry in results.items():
        assert entry["status"] == "ok", entry["reason"]
        assert entry["global_batch"] == 4 * replicas
        assert len(entry["rank_samples_ms"]) == replicas
        assert all(len(samples) == 6 for samples in entry["rank_samples_ms"])
        # A step takes as long as its slowest rank.
        assert entry["samples_ms"] == [max(step) for step in zip(*entry["rank_samples_ms"], strict=True)]
        assert len(entry["no_sync_samples_ms"]) == 6 and entry["no_sync_median_ms"] > 0
        assert entry["allreduce_bytes"] == 61_706 * 4  # LeNet's trainable parameters, fp32
        assert entry["images_per_s"] == pytest.approx(4 * replicas / (entry["median_ms"] / 1e3))
        assert entry["settings"]["threads"] == max(1, cores // replicas)
        assert entry["settings"]["data_parallel"]["world_size"] == replicas
        if replicas == 1:
            assert entry["allreduce_bus_gb_per_s"] is None  # nothing moves between one rank and itself
        else:
            assert entry["allreduce_bus_gb_per_s"] > 0
    report = (out / "report.md").read_text()
    assert "Data-parallel scaling of lenet, train" in report
    assert (out / "report-lenet-replicas.png").stat().st_size > 0


# --- two machines: two processes on localhost, each with its own port ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("framework", [pytest.param("torch", marks=pytest.mark.torch),
                                       pytest.param("tf", marks=pytest.mark.tf)])
def test_two_machines_on_localhost_make_one_run_written_by_node_0(framework, tmp_path):
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    machines = [
        subprocess.Popen(
            [sys.executable, "cli.py", "bench", "lenet", "--frameworks", framework, "--replicas", "1", "--hosts",
             hosts, "--node-rank", str(node), "--modes", "train", "--batch-size", "4", "--warmup", "1", "--iters",
             "4", "--no-peak", "--timeout", "240", "--out", str(tmp_path / f"node{node}")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for node in (0, 1)
    ]
    outputs = [machine.communicate(timeout=300) for machine in machines]
    for machine, (stdout, stderr) in zip(machines, outputs, strict=True):
        assert machine.returncode == 0, stderr[-3000:] + stdout[-2000:]
    run = json.loads((tmp_path / "node0" / "results.json").read_text())
    (entry,) = run["results"]
    assert entry["status"] == "ok", entry["reason"]
    assert (entry["replicas"], entry["nodes"], entry["global_batch"]) == (1, 2, 8)
    assert len(entry["rank_samples_ms"]) == 2  # the other machine's rank, gathered by the framework
    assert entry["allreduce_bus_gb_per_s"] > 0
    assert run["environment"]["cluster"] == {"hosts": hosts.split(","), "node_rank": 0}
    assert not (tmp_path / "node1" / "results.json").exists()
    assert "the run file is written on node 0" in outputs[1][1]


# --- faults ----------------------------------------------------------------------------------------------------


@pytest.fixture
def first_port_busy(monkeypatch):
    """The first port ``free_port`` hands out is one that something already listens on; yields the ports chosen."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        chosen: list[int] = []
        real_free_port = launchers.free_port

        def busy_first(host: str = "127.0.0.1") -> int:
            chosen.append(real_free_port(host) if chosen else busy)
            return chosen[-1]

        monkeypatch.setattr(launchers, "free_port", busy_first)
        yield chosen


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tf
def test_a_run_replaces_a_busy_port_and_goes_on_past_killed_ranks(tmp_path, monkeypatch, project_on_path,
                                                                   first_port_busy):
    monkeypatch.setattr(data_parallel, "RANK_PROGRAM", (str(FAULTY_RANK),))
    monkeypatch.setenv("FAULT_RANK", "1")
    # A second into the timed steps, however fast the CPU takes them; the steps would go on for minutes.
    monkeypatch.setenv("FAULT_AFTER_S", "1")
    monkeypatch.setenv("FAULT_KIND", "kill")
    planted = dict(model="lenet", device="cpu", mode="train", batch_size=2, replicas=2, warmup=1, iters=100_000)
    configs = [Config(framework="torch", **planted), Config(framework="tf", **planted)]
    run = run_configs(configs, tmp_path / "results.json", timeout_s=240, measure_peaks=False)

    killed_torch, killed_tf = run.results
    # torch's launcher could not bind the first port it was given, and its ranks ran on another one; after the
    # torch configuration failed, the run went on to the TensorFlow one.
    assert first_port_busy[1] != first_port_busy[0]
    for killed in (killed_torch, killed_tf):
        # A killed rank fails its own configuration, naming the rank; what rank 0 measured before it is kept.
        assert killed.status == "failed"
        assert "rank 1" in killed.reason and "SIGKILL" in killed.reason, killed.reason
        assert killed.partial and len(killed.rank_samples_ms[0]) >= 1
    assert _processes_running(str(FAULTY_RANK)) == []  # every other rank was ended


@pytest.mark.slow
@pytest.mark.torch
def test_a_hung_rank_fails_its_configuration_at_the_timeout_and_leaves_nothing_running(tmp_path, monkeypatch,
                                                                                      project_on_path):
    monkeypatch.setattr(data_parallel, "RANK_PROGRAM", (str(FAULTY_RANK),))
    monkeypatch.setenv("FAULT_RANK", "1")
    monkeypatch.setenv("FAULT_AFTER_S", "1")
    monkeypatch.setenv("FAULT_KIND", "hang")
    config = Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=2, replicas=2, warmup=1,
                    iters=100_000)
    timeout_s = 15  # the ranks join after about 6 s here: the hang, a second later, comes well before the timeout
    started = time.monotonic()
    (result,) = run_configs([config], tmp_path / "results.json", timeout_s=timeout_s, measure_peaks=False).results
    assert time.monotonic() - started < timeout_s + 40
    assert result.status == "failed"
    assert f"timed out after {timeout_s} s" in result.reason and "rank 1 at" in result.reason, result.reason
    assert _processes_running(str(FAULTY_RANK)) == []


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.tf
def test_a_machine_that_never_comes_fails_the_rendezvous_within_the_timeout(tmp_path):
    """Both frameworks at once: each configuration spends its timeout waiting, idle, for the second machine."""

    def alone_on_node_0(framework: str) -> tuple[int, Result]:
        rendezvous = free_port()
        cluster = Cluster((("127.0.0.1", rendezvous), ("127.0.0.1", free_port())), node_rank=0)
        config = Config(model="lenet", framework=framework, device="cpu", mode="train", batch_size=2, replicas=1,
                        nodes=2, warmup=1, iters=3)
        (tmp_path / framework).mkdir()
        (result,) = run_configs([config], tmp_path / framework / "results.json", timeout_s=8, measure_peaks=False,
                                cluster=cluster).results
        return rendezvous, result

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(("torch", "tf"), pool.map(alone_on_node_0, ("torch", "tf")), strict=True))
    for framework, (rendezvous, result) in outcomes.items():
        assert result.status == "failed", framework
        assert "no rank got past the rendezvous" in result.reason, result.reason
        assert f"127.0.0.1:{rendezvous}" in result.reason
        assert launchers.port_is_free(rendezvous), framework  # nothing left listening


@pytest.mark.gpu
@pytest.mark.torch
def test_ddp_on_a_gpu_runs_on_nccl_and_is_measured(tmp_path):
    config = Config(model="alexnet", framework="torch", device="cuda", mode="train", batch_size=32, replicas=1,
                    warmup=3, iters=10)
    (result,) = run_configs([config], tmp_path / "results.json", timeout_s=300, measure_peaks=False).results
    assert result.status == "ok", result.reason
    assert result.settings["data_parallel"]["collective_backend"] == "nccl"
    assert result.allreduce_bytes == 61_100_840 * 4 and len(result.allreduce_samples_ms) > 0
    assert result.derived.no_sync_median_ms > 0 and result.peak_memory_bytes > 0


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arguments", "message"), [
    (["--replicas", "0"], "--replicas takes whole numbers >= 1"),
    (["--replicas", "two"], "--replicas takes whole numbers >= 1"),
    (["--replicas", "2", "--device", "cuda"], "needs 2 GPUs on this machine"),
    (["--replicas", "1", "--hosts", "a:1,b:2", "--node-rank", "2"], "--node-rank must be between 0 and 1"),
    (["--replicas", "1", "--hosts", "a:1,b"], "--hosts takes HOST:PORT entries"),
    (["--replicas", "1", "--hosts", "a:1,b:70000"], "--hosts takes HOST:PORT entries"),
    (["--replicas", "1", "--hosts", "a:1"], "at least two"),
    (["--hosts", "a:1,b:2"], "give --replicas"),
    (["--node-rank", "1"], "--node-rank needs --hosts"),
])
def test_bad_data_parallel_input_is_one_line_and_exit_2(arguments, message, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever the machine has
    code = cli.main(["bench", "lenet", "--frameworks", "torch", *arguments])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_cluster_parse_reads_hosts_and_ports():
    cluster = Cluster.parse("10.0.0.1:29500,[::1]:29501", 1)
    assert cluster.hosts == (("10.0.0.1", 29500), ("::1", 29501)) and cluster.nodes == 2
    assert not cluster.writes_run_file
    with pytest.raises(ClusterError):
        Cluster.parse("10.0.0.1:29500,10.0.0.2:29500", 2)


# --- derived figures -------------------------------------------------------------------------------------------


def test_step_time_is_the_slowest_rank_and_bus_bandwidth_follows_nccl_tests():
    assert data_parallel.slowest([[1.0, 5.0, 2.0], [3.0, 1.0, 2.5]]) == (3.0, 5.0, 2.5)
    config = Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=8, replicas=4)
    result = Result(config=config, status="ok", samples_ms=(10.0, 12.0, 11.0),
                    rank_samples_ms=((9.0, 9.0, 9.0), (10.0, 12.0, 11.0), (8.0, 8.0, 8.0), (9.5, 9.5, 9.5)),
                    no_sync_samples_ms=(8.0, 8.0, 8.0), allreduce_bytes=1_000_000_000,
                    allreduce_samples_ms=(500.0, 500.0, 500.0))
    derived = result.derived
    assert derived.global_batch == 32
    assert derived.images_per_s == pytest.approx(32 / 0.011)
    assert derived.communication_share == pytest.approx(1 - 8 / 11)
    # 1 GB in 0.5 s over 4 ranks: algorithm bandwidth 2 GB/s, bus bandwidth 2 x 2 x 3/4 = 3 GB/s.
    assert derived.allreduce_bus_gb_per_s == pytest.approx(3.0)
    assert derived.rank_median_p50_ms == pytest.approx(9.25)
    assert derived.rank_median_p95_ms == pytest.approx(np.percentile([8.0, 9.0, 9.5, 11.0], 95))
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_efficiency_is_measured_against_one_replica_of_the_same_run_or_absent():
    from reports._groups import LabelledResult
    from reports.scaling import NO_BASELINE, scaling_rows

    def measured(replicas: int, median_ms: float, framework: str = "torch") -> LabelledResult:
        config = Config(model="lenet", framework=framework, device="cpu", mode="train", batch_size=8, replicas=replicas)
        return LabelledResult("", Result(config=config, status="ok", samples_ms=(median_ms,) * 3))

    rows = scaling_rows([measured(1, 10.0), measured(2, 12.5), measured(2, 10.0, "tf")])
    by_key = {(row.entry.result.config.framework, row.world_size): row for row in rows}
    assert by_key["torch", 1].efficiency == pytest.approx(1.0)
    # 16 images in 12.5 ms against 2 x 8 images in 10 ms: 80%.
    assert by_key["torch", 2].efficiency == pytest.approx(0.8)
    assert by_key["tf", 2].efficiency is None and by_key["tf", 2].why_no_efficiency == NO_BASELINE


def test_a_report_holds_plain_and_data_parallel_results_of_one_model_apart(tmp_path):
    from bench.record import Run, write_run
    from reports.compare import compare_runs
    from reports.markdown import write_report

    def result(replicas: int | None, median_ms: float) -> Result:
        config = Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=8, replicas=replicas)
        return Result(config=config, status="ok", samples_ms=(median_ms, median_ms * 1.01, median_ms * 0.99) * 4)

    run = Run(environment={}, results=[result(None, 10.0), result(1, 11.0), result(2, 14.0)],
              path=tmp_path / "results.json")
    write_run(run.path, run)
    report = write_report([run], tmp_path / "report.md").read_text()
    assert "1 process" in report and "| x2 " in report
    assert "Data-parallel scaling of lenet, train" in report and (tmp_path / "report-lenet-replicas.png").exists()
    # compare pairs configurations by replica count: the 2-replica result is matched with its own kind only.
    faster = Run(environment={}, results=[result(None, 10.0), result(1, 11.0), result(2, 7.0)])
    comparison = compare_runs(run, faster)
    verdicts = {pair.config.replicas: pair.difference.verdict for pair in comparison.compared}
    assert verdicts == {None: "same", 1: "same", 2: "faster"}


def test_resuming_a_run_of_two_machines_needs_its_hosts(tmp_path, capsys):
    from bench.record import Run, write_run

    planned = [Config(model="lenet", framework="torch", device="cpu", mode="train", batch_size=4, replicas=1, nodes=2)]
    write_run(tmp_path / "results.json", Run(environment={}, results=[], planned=planned))
    assert cli.main(["bench", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "spans 2 machine(s); give the same --hosts and --node-rank" in err and len(err.strip().splitlines()) == 1
