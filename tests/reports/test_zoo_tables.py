"""Tables of the zoo: the model list, and verify's counts and parity with a failure shown as one."""

from rich.console import Console

from reports.zoo_tables import verify_tables, zoo_table


def _text(*tables) -> str:
    console = Console(record=True, width=200)
    for table in tables:
        console.print(table)
    return console.export_text()


def test_zoo_table_lists_models_and_the_engines_that_run_them(monkeypatch):
    from bench.engines import ENGINES

    monkeypatch.setattr(type(ENGINES["jax"]), "installed", lambda engine: engine.name != "jax")
    text = _text(zoo_table([
        {"name": "lenet", "title": "LeNet-5", "input": [1, 32, 32], "params": 61_706, "statistics": 0,
         "macs": 416_520, "engines": ["torch", "onnxruntime"]},
        {"name": "resnet18", "title": "ResNet-18", "input": [3, 224, 224], "params": 11_689_512,
         "statistics": 9_600, "macs": 1_814_073_344, "engines": ["torch"]},
    ]))
    assert "1x32x32" in text and "61,706" in text and "416,520" in text
    assert any("resnet18" in line and "9,600" in line for line in text.splitlines())
    assert any("lenet" in line and "torch, onnxruntime" in line for line in text.splitlines())
    assert "not installed: jax (pip install -e '.[jax]')" in " ".join(text.split())
    same = _text(zoo_table([{"name": "lenet", "title": "LeNet-5", "input": [1, 32, 32], "params": 61_706,
                             "statistics": 0, "macs": 416_520, "engines": ["torch", "tf"]}]))
    assert "every model runs in: torch, tf" in " ".join(same.split())


def test_verify_tables_show_a_mismatch_and_a_failure():
    parity = {"reference": "torch", "other": "tf", "passed": False, "batch_size": 2, "logits_rel_diff": 3e-2,
              "grads_rel_diff": 1e-7, "worst_grad": "fc3.bias",
              "fp32_logits_rel_diff": 2e-2, "statistics_rel_diff": None, "worst_statistic": None,
              "logits_rtol": 1e-10, "grads_rtol": 1e-10, "fp32_logits_rtol": 1e-4}
    counts = {"params": 61_706, "statistics": 0, "macs": 416_520}
    report = {"model": "lenet", "expected": counts, "passed": False,
              "frameworks": {"torch": counts, "tf": counts | {"params": 61_700}}, "parity": [parity]}
    batchnorm = {"model": "resnet18", "expected": counts, "passed": False, "frameworks": {"torch": counts},
                 "parity": [parity | {"statistics_rel_diff": 5e-3, "worst_statistic": "bn1.moving_variance"}]}
    text = _text(*verify_tables([report, batchnorm]))
    lines = text.splitlines()
    assert any("torch" in line and "match spec" in line for line in lines)
    assert any("tf" in line and "61,700" in line and "differ from spec" in line for line in lines)
    assert any("lenet" in line and "3.00e-02" in line and "FAIL" in line for line in lines)
    assert any("resnet18" in line and "5.00e-03 (bn1.moving_variance)" in line for line in lines)
    assert any("lenet" in line and "torch -> tf" in line for line in lines)


def test_verify_tables_show_a_runtime_held_to_float32_logits_and_a_proof_that_failed():
    counts = {"params": 61_706, "statistics": 0, "macs": 416_520}
    runtime = {"model": "lenet", "batch_size": 1, "reference": "torch", "other": "onnxruntime", "passed": True,
               "fp32_logits_rel_diff": 3e-7, "fp32_logits_rtol": 1e-4}
    failed = {"model": "lenet", "batch_size": None, "reference": None, "other": "jax", "passed": False,
              "error": "jax: ModuleNotFoundError: No module named 'jax'"}
    text = _text(*verify_tables([{"model": "lenet", "expected": counts, "passed": False,
                                  "frameworks": {"torch": counts}, "parity": [runtime, failed]}]))
    lines = text.splitlines()
    assert any("torch -> onnxruntime" in line and "3.00e-07" in line and "pass" in line for line in lines)
    assert any("-> jax" in line and "FAIL" in line and "No module named 'jax'" in line for line in lines)
    assert "float32 logits <= 1e-04" in " ".join(text.split())


def test_verify_tables_say_when_no_pair_was_proven():
    counts = {"params": 61_706, "statistics": 0, "macs": 416_520}
    text = _text(*verify_tables([{"model": "lenet", "expected": counts, "passed": True,
                                  "frameworks": {"torch": counts}, "parity": []}]))
    assert "match spec" in text and "parity not proven" in text
