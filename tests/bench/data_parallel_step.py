"""One SGD step of each model, as a data-parallel rank on its share of one batch or as one process on all of it.

``python data_parallel_step.py OUT_DIR REPLICAS MODEL[,MODEL...] FRAMEWORK``: with REPLICAS >= 1 it runs as a
rank (started by torch's launcher or with TF_CONFIG) through the backend's own data-parallel step (torch DDP,
MultiWorkerMirroredStrategy); with 0 as one plain process. Rank 0 (or the plain process) saves the weights
after the step to OUT_DIR/<model>-<replicas>.npz; with REPLICAS > 0, for the first model, each rank also saves
the weights of the same step taken without gradient exchange (the no-sync step), which must differ. Dropout is
switched off: a random mask is not the same on two ranks as on one process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

BATCH = 4  # the whole batch; each of two replicas takes half


def _weights(backend, framework: str) -> list[np.ndarray]:
    if framework == "torch":
        module = getattr(backend.model, "module", backend.model)  # DDP wraps the network
        return [parameter.detach().cpu().numpy().copy() for parameter in module.parameters()]
    return [np.array(variable.numpy()) for variable in backend.model.trainable_variables]


def _dropout_off(backend, framework: str) -> None:
    if framework == "torch":
        import torch

        for layer in backend.model.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
    else:
        import keras

        for layer in backend.model.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0  # read when the step is first traced, which is after this


def main(out_dir: str, replicas: int, models: str, framework: str) -> bool:
    """Take the steps and save the weights; returns whether the process may end without its teardown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import zoo
    from bench.backend import host_data
    from bench.config import Config
    from bench.engines import load_backend

    backend = load_backend(framework)
    rank, world = 0, 1
    for position, model in enumerate(models.split(",")):
        spec = zoo.get_spec(model)
        config = Config(model=model, framework=framework, device="cpu", mode="train",
                        batch_size=BATCH // max(replicas, 1), replicas=replicas or None, warmup=0, iters=1)
        if world == 1 and replicas:
            backend.configure(config, 1)
            rank, world = backend.join(config)
        elif not replicas:
            backend.configure(config, 1)
        images, labels = host_data(spec.input_shape, spec.num_classes, BATCH)
        share = slice(rank * config.batch_size, (rank + 1) * config.batch_size)
        for kind in ("step", "no-sync") if replicas and position == 0 else ("step",):
            step = backend.prepare(config, data=(images[share], labels[share]))
            _dropout_off(backend, framework)
            (backend.no_sync_step() if kind == "no-sync" else step)()
            backend.synchronize()
            if rank == 0 or kind == "no-sync":
                suffix = f"-rank{rank}-no-sync" if kind == "no-sync" else ""
                np.savez(Path(out_dir) / f"{model}-{replicas}{suffix}.npz", *_weights(backend, framework))
    if not replicas:
        return True  # one plain process: nobody waits on it
    backend.agree_min(0)  # no rank leaves before every rank has saved
    backend.leave()
    return backend.exits_at_once_after_leave


if __name__ == "__main__":
    from bench.child import exit_now

    if main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]):  # a launcher may append more; unused
        exit_now(0)
