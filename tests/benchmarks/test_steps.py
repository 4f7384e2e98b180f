"""pytest-benchmark regression checks of the harness's own step functions, over registry x framework x mode.

Save a baseline, then fail on a regression of the median:

    python -m pytest tests/benchmarks -m torch --step-rounds 30 --benchmark-autosave
    python -m pytest tests/benchmarks -m torch --step-rounds 30 --benchmark-compare --benchmark-compare-fail=median:10%

Run one framework per invocation (``-m torch`` / ``-m tf``) to keep the two frameworks out of each other's process
while timing. Every round is one step followed by a device synchronisation.
"""

import pytest

import zoo
from bench.backend import Skip, load_backend
from bench.modes import MODES, step_flops
from bench.record import Config

CASES = [
    pytest.param(
        model, framework, device, mode,
        marks=[getattr(pytest.mark, framework)] + ([pytest.mark.gpu] if device == "cuda" else []),
        id=f"{model}-{framework}-{device}-{mode}",
    )
    for model in zoo.list_models()
    for framework in zoo.FRAMEWORKS
    for device in ("cpu", "cuda")
    for mode in MODES
]


@pytest.mark.parametrize(("model", "framework", "device", "mode"), CASES)
def test_step(benchmark, request, model, framework, device, mode):
    batch = request.config.getoption("--step-batch")
    rounds = request.config.getoption("--step-rounds")
    config = Config(model, framework, device, mode, batch)
    backend = load_backend(framework)
    try:
        backend.check(config)
    except Skip as skip:
        pytest.skip(str(skip))
    step = backend.prepare(config)

    def synchronised_step():
        step()
        backend.synchronize()

    benchmark.extra_info.update(
        {"model": model, "framework": framework, "device": device, "batch_size": batch, "mode": mode,
         "flops_per_step": step_flops(zoo.get_spec(model), batch, mode)}
    )
    benchmark.pedantic(synchronised_step, rounds=rounds, warmup_rounds=2, iterations=1)
    assert benchmark.stats.stats.rounds == rounds
    assert backend.trace_count() <= 1  # compiled once at most, never inside the measured rounds
