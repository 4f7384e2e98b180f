"""The proofs that each engine runs the zoo's network, for ``verify``.

Two engines that run their own definitions are proven by zoo's weight transfers (``zoo.parity``). An engine that
runs another engine's definitions in another runtime (the Keras twins under JAX, the torch twins exported to an
inference runtime) names a proof in its table entry; each such proof runs in a process of its own, since its
runtime may not share a process with the others (Keras loads one backend per process):
``python -m bench.proofs ENGINE MODELS_JSON BATCH_SIZE`` prints one JSON line per model.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import traceback

from bench.engines import ENGINES, get_engine
from bench.environment import PROJECT_ROOT

# A float64 pass of the largest network in the slowest engine takes minutes on two cores, not hours.
PROOF_TIMEOUT_S = 3600.0


def proven_engines() -> list[str]:
    """The installed engines that carry a proof of their own, in the table's order."""
    return [name for name, engine in ENGINES.items() if engine.proof and engine.installed()]


def add_engine_proofs(reports: list[dict], batch_size: int | None) -> None:
    """Prove every installed engine with a proof of its own on the models of ``reports`` (``zoo.parity.
    verify_model``'s), adding each model's parity row and, where the engine builds its own model, its counts."""
    by_model = {report["model"]: report for report in reports}
    for engine in proven_engines():
        for line in _run(engine, list(by_model), batch_size):
            report = by_model[line["model"]]
            report["parity"].append(line["parity"])
            if line.get("counts"):
                report["frameworks"][engine] = line["counts"]
                report["counts_ok"] = report["counts_ok"] and line["counts"] == report["expected"]
            report["passed"] = report["counts_ok"] and all(parity["passed"] for parity in report["parity"])


def _run(engine: str, models: list[str], batch_size: int | None) -> list[dict]:
    """Each model's proof line from a process of its own; a process that ends early fails the models it left."""
    command = [sys.executable, "-m", "bench.proofs", engine, json.dumps(models), str(batch_size or 0)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=PROOF_TIMEOUT_S, cwd=PROJECT_ROOT)
        output, problem = completed.stdout, completed.stderr.strip().splitlines()[-1:] or [
            f"exit code {completed.returncode}"]
    except subprocess.TimeoutExpired as timeout:
        output = timeout.stdout.decode() if isinstance(timeout.stdout, bytes) else (timeout.stdout or "")
        problem = [f"timed out after {PROOF_TIMEOUT_S:g} s"]
    lines = [json.loads(text) for text in output.splitlines() if text.startswith("{")]
    done = {line["model"] for line in lines}
    return lines + [_failed(engine, model, batch_size, problem[0]) for model in models if model not in done]


def _failed(engine: str, model: str, batch_size: int | None, error: str) -> dict:
    from zoo.parity import default_batch_size

    return {"model": model, "parity": {"model": model, "batch_size": batch_size or default_batch_size(model),
                                       "reference": None, "other": engine, "error": error, "passed": False}}


def main(argv: list[str]) -> int:
    engine, models, batch_size = get_engine(argv[0]), json.loads(argv[1]), int(argv[2])
    from zoo.parity import default_batch_size

    module_name, function_name = engine.proof.split(":")
    try:
        prove = getattr(importlib.import_module(module_name), function_name)
    except ImportError as error:
        for model in models:
            print(json.dumps(_failed(engine.name, model, batch_size, f"{engine.name}: {error}")), flush=True)
        return 0
    for model in models:
        try:
            line = {"model": model, **prove(model, batch_size or default_batch_size(model), 0)}
        except Exception as error:  # one model's failure is its row, and the others are still proven
            traceback.print_exc()
            line = _failed(engine.name, model, batch_size, f"{type(error).__name__}: {error}")
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
