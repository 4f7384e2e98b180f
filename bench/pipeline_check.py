"""The input pipelines' parity check (``pipeline --check``): the same images out of every engine's pipeline.

The crops, flips and lighting alphas of the first ``CHECK_BATCH`` files are drawn on the host from one seed
(``bench.pipeline.Augmentation``); each engine's pipeline applies them, in a process of its own (frameworks do not
share one), and writes its NCHW batch; the first engine's batch is the reference the others are compared with,
in 8-bit levels (``bench.pipeline.compare_batches``). ``python -m bench.pipeline_check ENGINE CONFIG_JSON OUT``
is the per-engine side.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.config import Config
from bench.engines import load_pipeline
from bench.environment import PROJECT_ROOT
from bench.pipeline import CHECK_BATCH, Augmentation, compare_batches, crop_size, image_set

CHECK_TIMEOUT_S = 600.0


def check_pipelines(config: Config, frameworks: list[str], batch: int = CHECK_BATCH) -> list[dict]:
    """Each engine's batch of the first ``batch`` files with the same drawn augmentation, compared with the first
    engine's: one dict per engine after the first (``reference``, ``framework``, the comparison's figures and
    ``passed``), or ``error`` where its process failed."""
    with tempfile.TemporaryDirectory(prefix="convbench-check-") as folder:
        batches: dict[str, np.ndarray | str] = {}
        for framework in frameworks:
            out = Path(folder) / f"{framework}.npy"
            configured = replace(config, framework=framework, batch_size=batch)
            completed = subprocess.run(
                [sys.executable, "-m", "bench.pipeline_check", framework, json.dumps(configured.to_dict()), str(out)],
                capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, cwd=PROJECT_ROOT)
            if completed.returncode == 0 and out.exists():
                batches[framework] = np.load(out)
            else:
                lines = completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"]
                batches[framework] = f"{framework}: {lines[-1]}"
    reference = frameworks[0]
    checks = []
    for framework in frameworks[1:]:
        entry = {"reference": reference, "framework": framework, "batch": batch, "model": config.model,
                 "lighting": config.lighting, "images": config.images}
        first, second = batches[reference], batches[framework]
        problems = [value for value in (first, second) if isinstance(value, str)]
        if problems:
            checks.append({**entry, "passed": False, "error": "; ".join(problems)})
        else:
            checks.append({**entry, **compare_batches(first, second)})
    return checks


def main(argv: list[str]) -> int:
    framework, config_json, out = argv
    config = Config.from_dict(json.loads(config_json))
    images = image_set(config.images)
    if len(images) < config.batch_size:
        raise SystemExit(f"the check needs {config.batch_size} images; the set has {len(images)}")
    pipeline = load_pipeline(framework)(config, images)
    augmentation = Augmentation.draw(config.batch_size, crop_size(config.model), config.lighting)
    np.save(out, pipeline.fixed_batch(augmentation))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
