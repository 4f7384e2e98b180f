"""pytest-benchmark regression checks of the harness's own step functions, over registry x framework x mode.

Each case records its configuration in ``extra_info`` (model, framework, device, mode, batch_size, and the
framework's version), so that ``python cli.py compare`` reads the saved files (``--benchmark-save-data``) and gives
them its verdicts: several pytest processes a side saved into one folder each, then
``python cli.py compare BASE_FOLDER NEW_FOLDER --fail-on-regression`` (the recipe in docs/comparing.md).

Run one engine per invocation (``-m torch``, ``-m tf``, ``-m jax``...) to keep the frameworks out of each other's
process while timing; the jax engine's cases can only run so (Keras holds one backend per process), and are
skipped in a session that loaded TensorFlow's Keras first. Every round is one step followed by a device synchronisation.

By default ("quick") the cases cover the fewest, cheapest models that between them hold every kind of layer in
the zoo (today alexnet-2012, googlenet and resnet18); ``--step-models all`` (or a comma list of names) adds the
others, VGG's and ResNet-50's steps taking several seconds each on a 2-core CPU.
"""

import pytest

import zoo
from bench.backend import Skip
from bench.config import Config
from bench.engines import ENGINES, load_backend
from bench.modes import MODES, step_flops


def _kinds(names) -> set[str]:
    return {layer.kind for name in names for layer in zoo.get_spec(name).layers}


def quick_models() -> list[str]:
    """Cheapest first, each model that brings a layer kind not yet covered; then, dearest first, each one whose
    kinds the others cover without it is dropped again."""
    chosen: list[str] = []
    for name in sorted(zoo.list_models(), key=lambda name: zoo.get_spec(name).macs):
        if _kinds([name]) - _kinds(chosen):
            chosen.append(name)
    for name in sorted(chosen, key=lambda name: -zoo.get_spec(name).macs):
        others = [other for other in chosen if other != name]
        if _kinds([name]) <= _kinds(others):
            chosen = others
    return chosen


def step_models(option: str) -> list[str]:
    """``--step-models``: "quick" (the default), "all", or a comma list of model names."""
    if option == "quick":
        return quick_models()
    return zoo.resolve_models(option.split(","))


def pytest_generate_tests(metafunc):
    if "mode" not in metafunc.fixturenames:
        return
    cases = [
        pytest.param(
            model, framework, device, mode,
            marks=[getattr(pytest.mark, framework)] + ([pytest.mark.gpu] if device == "cuda" else []),
            id=f"{model}-{framework}-{device}-{mode}",
        )
        for model in step_models(metafunc.config.getoption("--step-models"))
        for framework in ENGINES
        for device in ("cpu", "cuda")
        for mode, spec in MODES.items() if spec.network  # the input pipeline has its own tests
    ]
    metafunc.parametrize(("model", "framework", "device", "mode"), cases)


def test_quick_models_cover_every_layer_kind_of_the_zoo():
    assert _kinds(quick_models()) == _kinds(zoo.list_models())
    assert quick_models() == ["alexnet-2012", "googlenet", "resnet18"]


def test_step(benchmark, request, model, framework, device, mode):
    batch = request.config.getoption("--step-batch")
    rounds = request.config.getoption("--step-rounds")
    config = Config(model=model, framework=framework, device=device, mode=mode, batch_size=batch)
    if refusal := ENGINES[framework].refusal(config):  # an inference runtime asked for gradients, say
        pytest.skip(refusal)
    try:
        backend = load_backend(framework)
    except ImportError as error:  # the jax engine's Keras cannot share a process with TensorFlow's
        pytest.skip(f"{error}: run its cases alone (-m {framework})")
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
         "framework_version": ENGINES[framework].version(), "flops_per_step": step_flops(zoo.get_spec(model), batch,
                                                                                          mode)}
    )
    # One warm-up round: the first call traces the TensorFlow step or allocates torch's buffers, and from the second
    # on each call is a steady step (measured on every quick case in both frameworks).
    benchmark.pedantic(synchronised_step, rounds=rounds, warmup_rounds=1, iterations=1)
    assert benchmark.stats.stats.rounds == rounds
    assert backend.trace_count() <= 1  # compiled once at most, never inside the measured rounds
