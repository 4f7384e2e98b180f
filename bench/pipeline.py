"""The input pipeline every engine's data tools implement: JPEG files to training batches, as the 2012 paper did it.

Each image is decoded, resized so its shorter side is ``RESIZE_SHORTER`` (256), centre-cropped to 256x256, cropped
at random to the model's input size (224x224 for most of the zoo), flipped left-right with probability 1/2, scaled
to [0, 1], optionally given the paper's PCA lighting noise, and normalised per channel; then batched in the layout
the engine's model takes. torch does it with ``torchvision.io.decode_jpeg`` and ``torchvision.transforms.v2`` in a
``DataLoader`` (``bench.torch_pipeline``), TensorFlow with ``tf.data`` (``bench.tf_pipeline``). This module holds
what they share and no framework: the constants, the image sets, which models a pipeline can feed, how many batches
one sample spans, and the parity check's host-side parameters and comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

import zoo
from bench.config import Config
from bench.errors import UsageError
from bench.images import (
    DEFAULT_COUNT,
    DEFAULT_QUALITY,
    DEFAULT_SEED,
    FORMAT_VERSION,
    ImageSet,
    folder_images,
    made_images,
)

RESIZE_SHORTER = 256  # the shorter side after resizing, and the centre square's side
# ImageNet's per-channel mean and standard deviation of pixels in [0, 1] (torchvision's reference recipes).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The 2012 paper's PCA lighting noise: eigenvalues and eigenvectors of ImageNet's RGB covariance (pixels in [0, 1],
# as fb.resnet.torch and torchvision's references give them), each image shifted by eigvec @ (alpha * eigval) with
# alpha ~ N(0, LIGHTING_STD).
LIGHTING_EIGENVALUES = (0.2175, 0.0188, 0.0045)
LIGHTING_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                         (-0.5808, -0.0045, -0.8140),
                         (-0.5836, -0.6948, 0.4203))
LIGHTING_STD = 0.1
# Prefetched batches: torch's DataLoader keeps prefetch_factor batches per worker in flight (its default, 2);
# tf.data's prefetch buffer holds as many (without AUTOTUNE).
PREFETCH_PER_WORKER = 2

# The parity check (``pipeline --check``): both pipelines given the same crops, flips and lighting, compared in 8-bit
# levels of the pixels. Both decode with libjpeg-turbo's accurate integer IDCT; their antialiased bilinear resize
# kernels round differently, so a value may differ by one level after the resize rounds it back to uint8. The
# bounds allow that and nothing more: a pipeline that crops, flips, scales or normalises differently fails them.
CHECK_MEAN_LEVELS = 0.5
CHECK_MAX_LEVELS = 1.0
CHECK_BATCH = 8
CHECK_SEED = 0


def made_spec(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, quality: int = DEFAULT_QUALITY,
              scale: float = 1.0) -> str:
    """The ``images`` spec of a made image set (``Config.images``); the generator's version is part of it, since
    another generator makes other files."""
    return f"made:count={count},seed={seed},quality={quality},scale={scale:g},version={FORMAT_VERSION}"


def folder_spec(directory: str | Path) -> str:
    """The ``images`` spec of a user's folder of JPEGs."""
    return f"folder:{Path(directory).expanduser().resolve()}"


def image_set(spec: str, on_progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """The image set a spec names, made (and cached; ``on_progress(done, total)`` while making) or read from the
    folder."""
    kind, _, rest = spec.partition(":")
    if kind == "folder":
        return folder_images(rest)
    if kind == "made":
        values = dict(part.split("=", 1) for part in rest.split(",") if part)
        if int(values.get("version", FORMAT_VERSION)) != FORMAT_VERSION:
            raise UsageError(f"the image set {spec} was made by version {values['version']} of the generator; this "
                             f"one makes version {FORMAT_VERSION}")
        return made_images(int(values["count"]), int(values["seed"]), int(values["quality"]),
                           scale=float(values.get("scale", 1)), on_progress=on_progress)
    raise ValueError(f"unknown images spec {spec!r}: made:... or folder:PATH")


def crop_size(model: str) -> tuple[int, int]:
    """The crop a model's input needs (height, width)."""
    _, height, width = zoo.get_spec(model).input_shape
    return height, width


def pipeline_refusal(config: Config) -> str | None:
    """Why the JPEG pipeline cannot feed ``config``'s model, in one line; None if it can."""
    channels, height, width = zoo.get_spec(config.model).input_shape
    if channels != 3:
        return (f"{config.model} takes {channels}x{height}x{width} images; the JPEG pipeline makes RGB (3 "
                f"channels)")
    if height > RESIZE_SHORTER or width > RESIZE_SHORTER:
        return f"{config.model} takes {height}x{width} crops, larger than the {RESIZE_SHORTER}x{RESIZE_SHORTER} centre"
    return None


def parallel_workers(config: Config, cpus: int) -> int:
    """How many workers produce batches at once: the configuration's, or every CPU under AUTOTUNE."""
    return cpus if config.autotune else (config.workers or 0)


def batches_per_sample(config: Config, cpus: int) -> int:
    """Batches one timed sample spans when the JPEG pipeline feeds the step: one per parallel worker.

    A DataLoader's workers each make whole batches and deliver them in bursts of one per worker, so one batch's
    time alternates between a worker's full batch time and almost nothing, and its median is meaningless. A
    round of one batch per worker spans the bursts; its time over its batches is the steady ms per batch.
    """
    return max(1, parallel_workers(config, cpus))


def labels_for(images: ImageSet, num_classes: int) -> np.ndarray:
    """Each file's class within the model's classes."""
    return np.asarray(images.labels, dtype=np.int64) % num_classes


@dataclass(frozen=True)
class Augmentation:
    """Per-image random choices drawn on the host from one seed, for the parity check: the crop's top-left
    corner inside the centre square, a left-right flip, and the lighting noise's alphas (zeros without it)."""

    top: np.ndarray
    left: np.ndarray
    flip: np.ndarray
    alpha: np.ndarray

    @classmethod
    def draw(cls, count: int, crop: tuple[int, int], lighting: bool, seed: int = CHECK_SEED) -> Augmentation:
        rng = np.random.default_rng(seed)
        top = rng.integers(0, RESIZE_SHORTER - crop[0] + 1, size=count)
        left = rng.integers(0, RESIZE_SHORTER - crop[1] + 1, size=count)
        flip = rng.random(count) < 0.5
        alpha = (rng.normal(0.0, LIGHTING_STD, size=(count, 3)) if lighting
                 else np.zeros((count, 3))).astype(np.float32)
        return cls(top=top, left=left, flip=flip, alpha=alpha)


def compare_batches(first: np.ndarray, second: np.ndarray) -> dict:
    """How far two NCHW batches of normalised images differ, in whole 8-bit levels of the pixels before
    normalisation (each difference scaled back by 255 x the channel's std and rounded)."""
    if first.shape != second.shape:
        raise ValueError(f"batches of different shapes: {first.shape} and {second.shape}")
    difference = np.abs(first.astype(np.float64) - second.astype(np.float64)) * 255.0
    levels = np.rint(difference * np.asarray(STD, dtype=np.float64).reshape(1, 3, 1, 1))
    mean, worst = float(levels.mean()), float(levels.max())
    return {"values": int(levels.size), "mean_levels": mean, "max_levels": worst,
            "share_differing": float((levels >= 1).mean()), "share_over_1_level": float((levels >= 2).mean()),
            "passed": mean <= CHECK_MEAN_LEVELS and worst <= CHECK_MAX_LEVELS}


def needed_workers(step_images_per_s: float, images_per_s: float, workers: int) -> int:
    """Workers the pipeline needs to keep up with the step, derived from its rate at ``workers`` workers as if
    it scaled linearly (it cannot scale past the CPU's cores; the report says the figure is derived)."""
    per_worker = images_per_s / max(workers, 1)
    return max(1, math.ceil(step_images_per_s / per_worker))


class Pipeline(Protocol):
    """What an engine's input pipeline does, in a process of its framework."""

    def __init__(self, config: Config, images: ImageSet) -> None:
        """Set up, reading nothing yet: ``config`` names the model (its crop), batch size, workers, AUTOTUNE and
        lighting."""

    def batches(self) -> Iterator[tuple[object, object]]:
        """Endless (images, labels) batches in the framework's host tensors, in the layout its model takes (pinned
        memory for a CUDA step); each pass over the files in a new random order. Starts its workers."""

    def fixed_batch(self, augmentation: Augmentation) -> np.ndarray:
        """The first ``len(augmentation.top)`` files in order, with the given crops, flips and lighting, as one
        NCHW float32 batch (the parity check)."""

    def settings(self) -> dict:
        """What is in effect: workers, prefetching, decoder and resize settings."""
