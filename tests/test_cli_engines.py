"""Every engine behind one command: an engine that is not installed skipped with what installs it, ``--frameworks
all``, a mode one engine refuses not taken for a skip of the others, explain's refusals. (The run across every
installed engine is tests/zoo/test_model_folder.py's, on a model folder added to a copy of the project.)"""

from __future__ import annotations

import importlib.util
import json

import pytest

from bench import plan
from bench.engines import ENGINES, get_engine, installed_engines
from bench.errors import EnvironmentProblem


def _pretend_missing(monkeypatch, *packages: str) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in packages else real_find_spec(name, *a))


def test_all_is_every_installed_engine_and_aliases_name_engines(monkeypatch):
    assert plan.engines("all") == installed_engines()
    assert plan.engines("torch,all") == installed_engines()
    assert get_engine("ort").name == "onnxruntime" and get_engine("PyTorch").name == "torch"
    _pretend_missing(monkeypatch, "jax")
    assert "jax" not in plan.engines("all") and plan.engines("jax") == ["jax"]
    _pretend_missing(monkeypatch, "torch", "tensorflow", "keras", "jax")
    with pytest.raises(EnvironmentProblem, match="^--frameworks all: no engine is installed"):
        plan.engines("all")


def test_an_engine_not_installed_is_skipped_saying_what_installs_it(monkeypatch, tmp_path, capsys):
    import cli

    _pretend_missing(monkeypatch, "jax")
    out = tmp_path / "run"
    code = cli.main(["bench", "lenet", "--frameworks", "torch,jax", "--modes", "forward", "--batch-size", "2",
                     "--iters", "3", "--warmup", "1", "--no-peak", "--no-history", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    results = {r["framework"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert results["torch"]["status"] == "ok"
    assert results["jax"]["status"] == "skipped"
    assert results["jax"]["reason"] == "jax: jax not installed (pip install -e '.[jax]')"


def test_nothing_installed_of_what_was_asked_is_one_line_and_exit_3(monkeypatch, capsys):
    import cli

    _pretend_missing(monkeypatch, "jax", "onnxruntime")
    assert cli.main(["bench", "lenet", "--frameworks", "jax,ort"]) == 3
    assert capsys.readouterr().err.strip() == ("error: jax: jax not installed (pip install -e '.[jax]'); "
                                               "onnxruntime: onnxruntime not installed (pip install -e '.[onnx]')")


def test_a_refused_mode_does_not_skip_the_modes_the_engine_runs():
    """The table's refusal of one mode is not a worker's skip of the engine on that device and precision."""
    from bench.config import Config
    from bench.record import Result
    from bench.runner import RunRecorder

    configs = [Config(model=model, framework="onnxruntime", device="cpu", mode=mode, batch_size=2)
               for model, mode in (("alexnet", "forward-backward"), ("lenet", "forward"))]
    recorder = RunRecorder(configs, None, {})
    refused = recorder.known_skip(configs[0])
    assert refused is not None and refused.status == "skipped"
    recorder.record(0, refused)
    assert recorder.known_skip(configs[1]) is None
    # A worker's skip (here: as if the device lacked something) still holds for the same engine, device, precision.
    recorder.record(1, Result(config=configs[1], status="skipped", reason="onnxruntime: no such device"))
    later = Config(model="resnet18", framework="onnxruntime", device="cpu", mode="forward", batch_size=2)
    assert recorder.known_skip(later).reason == "onnxruntime: no such device"


def test_explain_refuses_an_engine_it_cannot_take_apart_before_starting_it(tmp_path, monkeypatch):
    monkeypatch.setattr(type(ENGINES["jax"]), "installed", lambda engine: True)  # refused for what it is, not absent
    from bench.config import Config
    from bench.explain import explain_configs
    from bench.explainer import ExplainOptions

    configs = [Config(model="lenet", framework=engine, device="cpu", mode="forward", batch_size=2)
               for engine in ("jax", "onnxruntime", "openvino")]
    (entry,) = explain_configs(configs, tmp_path / "explain.json", ExplainOptions(), timeout_s=5)
    assert entry.reasons == {config.framework: f"{config.framework}: {ENGINES[config.framework].explains}"
                             for config in configs}
    assert all(ENGINES[name].explains for name in ("jax", "onnxruntime", "openvino"))
    assert not ENGINES["torch"].explains and not ENGINES["tf"].explains
