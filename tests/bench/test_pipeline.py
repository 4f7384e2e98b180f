"""The JPEG input pipelines: the same images out of torch's and TensorFlow's, their batches, and a step fed from
them that says when the pipeline is the bound.

Small images and few files keep this cheap; each fed configuration runs in a worker process as ``bench`` runs it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bench.config import Config
from bench.engines import get_engine
from bench.pipeline import (
    CHECK_MAX_LEVELS,
    MEAN,
    STD,
    Augmentation,
    batches_per_sample,
    compare_batches,
    crop_size,
    folder_spec,
    made_spec,
    needed_workers,
)
from bench.pipeline_check import check_pipelines
from bench.runner import run_worker

SMALL = made_spec(count=8, scale=0.25)
# Full-size images: the pipelines resize them down, where the two antialiasing kernels differ most.
FULL = made_spec(count=4)


def _config(framework: str = "torch", **fields) -> Config:
    values = {"model": "alexnet", "framework": framework, "device": "cpu", "mode": "input", "batch_size": 2,
              "data": "jpeg", "images": SMALL, "workers": 0, "warmup": 1, "iters": 3, **fields}
    return Config(**values)


def test_config_refuses_pipeline_fields_without_jpeg_and_the_input_mode_without_data():
    with pytest.raises(ValueError, match="apply to data='jpeg' only"):
        Config(model="alexnet", framework="torch", device="cpu", mode="forward", batch_size=1, workers=2)
    with pytest.raises(ValueError, match="needs data='jpeg'"):
        Config(model="alexnet", framework="torch", device="cpu", mode="input", batch_size=1)
    with pytest.raises(ValueError, match="either workers >= 0 or autotune"):
        _config(workers=None)
    with pytest.raises(ValueError, match="either workers >= 0 or autotune"):
        _config(workers=2, autotune=True)
    assert _config(workers=2).label() == "alexnet torch cpu input b2 fp32 jpeg w2"
    assert _config("tf", workers=None, autotune=True).loader == "auto"


def test_engine_table_refuses_what_no_pipeline_can_feed():
    assert "lenet takes 1x32x32 images" in get_engine("torch").refusal(_config(model="lenet"))
    assert "no autotuned worker count" in get_engine("torch").refusal(_config(workers=None, autotune=True))
    assert get_engine("tf").refusal(_config("tf", workers=None, autotune=True)) is None
    assert "no input pipeline is set up" in get_engine("openvino").refusal(_config("openvino", mode="forward"))
    without = replace(get_engine("torch"), pipeline_packages=("no_such_package",))
    assert without.refusal(_config()) == ("torch: no_such_package not installed (pip install -e .), which its input "
                                          "pipeline needs")
    assert without.refusal(_config(data="synthetic", images=None, workers=None, mode="forward")) is None


def test_a_sample_spans_one_batch_per_parallel_worker():
    assert batches_per_sample(_config(workers=0), cpus=8) == 1
    assert batches_per_sample(_config(workers=3), cpus=8) == 3
    assert batches_per_sample(_config("tf", workers=None, autotune=True), cpus=8) == 8


def test_workers_needed_are_derived_from_the_rate_per_worker():
    assert needed_workers(step_images_per_s=1000, images_per_s=300, workers=2) == 7
    assert needed_workers(step_images_per_s=10, images_per_s=300, workers=2) == 1


def test_comparison_counts_levels_and_fails_a_flipped_batch():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 3, 8, 8)).astype(np.float32) / 255
    normalised = (pixels - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))
    one_level = normalised + (1 / 255) / np.reshape(STD, (1, 3, 1, 1)) * (rng.random(normalised.shape) < 0.1)
    close = compare_batches(normalised, one_level)
    assert close["max_levels"] == 1 and 0.05 < close["share_differing"] < 0.15 and close["passed"]
    flipped = compare_batches(normalised, normalised[..., ::-1])
    assert flipped["max_levels"] > CHECK_MAX_LEVELS and not flipped["passed"]


@pytest.mark.torch
@pytest.mark.tf
def test_torch_and_tf_pipelines_give_the_same_images():
    """The parity proof: the same host-drawn crops and flips through both pipelines on full-size images, in a
    process each (small images, upsampled, with lighting: tests/test_cli_pipeline.py)."""
    [check] = check_pipelines(_config(images=FULL), ["torch", "tf"], batch=4)
    assert "error" not in check, check
    assert check["passed"], check
    assert check["max_levels"] <= CHECK_MAX_LEVELS


@pytest.mark.torch
def test_torch_batches_are_augmented_normalised_and_labelled():
    from bench.pipeline import image_set
    from bench.torch_pipeline import TorchPipeline

    config = _config(batch_size=4)
    pipeline = TorchPipeline(config, image_set(SMALL))
    images, labels = next(pipeline.batches())
    assert tuple(images.shape) == (4, 3, *crop_size("alexnet")) and str(images.dtype) == "torch.float32"
    assert -3 < float(images.mean()) < 3 and float(images.std()) > 0.1
    assert all(0 <= int(label) < 1000 for label in labels)
    # Two draws of the same file differ (random crop or flip), the fixed path does not.
    augmentation = Augmentation.draw(2, crop_size("alexnet"), lighting=False)
    assert np.array_equal(pipeline.fixed_batch(augmentation), pipeline.fixed_batch(augmentation))


@pytest.fixture(scope="module")
def large_images(tmp_path_factory):
    """Two very large progressive JPEGs of noise: each takes over half a second to decode, several times a small
    step's share of it, so any pipeline is the bound."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    for index in range(2):
        noise = rng.integers(0, 256, size=(3600, 4800, 3), dtype=np.uint8)
        Image.fromarray(noise).save(folder / f"{index}.jpg", quality=95, progressive=True)
    return folder_spec(folder)


def _fed(framework: str, images: str) -> tuple:
    # ResNet-18: a training step whose cost grows with the batch (AlexNet's is dominated by its dense weights).
    config = _config(framework, model="resnet18", mode="train", images=images, workers=0, iters=3)
    result, _, _ = run_worker(config, timeout_s=600)
    assert result.status == "ok", result.reason
    return result, result.derived


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_a_fed_training_step_says_input_bound_only_when_the_pipeline_is_slower(framework, large_images):
    small, small_figures = _fed(framework, SMALL)
    large, large_figures = _fed(framework, large_images)
    for result, figures in ((small, small_figures), (large, large_figures)):
        assert len(result.step_samples_ms) == len(result.pipeline_samples_ms) == len(result.samples_ms) == 3
        assert figures.step_images_per_s > 0 and figures.pipeline_images_per_s > 0
        assert figures.input_bound == (figures.pipeline_images_per_s < figures.step_images_per_s)
        assert result.first_batch_ms > 0 and result.cpu_seconds_per_image > 0
        assert result.settings["input_pipeline"]["lighting"] is False
    assert small_figures.input_bound is False
    assert large_figures.input_bound is True
    # Fed from the slow pipeline, the step runs at the pipeline's pace, not the step's.
    assert large_figures.images_per_s < large_figures.step_images_per_s
