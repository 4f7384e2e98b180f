"""The JPEG input pipeline in TensorFlow's own tools: ``tf.data`` reading files, ``tf.io.decode_jpeg``, ``tf.image``
resizing, cropping and flipping in ``map(num_parallel_calls=workers)``, then ``batch`` and ``prefetch``; AUTOTUNE
only when asked for (``bench.pipeline`` says what every pipeline does).

Two choices make its pixels those of torch's pipeline: the JPEG decoder's accurate integer IDCT (libjpeg's default,
which torchvision uses; TensorFlow's own default is the fast one), and the resized image rounded back to uint8
before cropping, as torchvision's Resize does on uint8 tensors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

import zoo
from bench.config import Config
from bench.images import ImageSet
from bench.pipeline import (
    LIGHTING_EIGENVALUES,
    LIGHTING_EIGENVECTORS,
    LIGHTING_STD,
    MEAN,
    PREFETCH_PER_WORKER,
    RESIZE_SHORTER,
    STD,
    Augmentation,
    crop_size,
    labels_for,
)

DCT_METHOD = "INTEGER_ACCURATE"


def _centre_square(path: tf.Tensor) -> tf.Tensor:
    """Decode, resize so the shorter side is 256 (the longer truncated, as torchvision computes it), round to uint8,
    and take the centre 256x256 (offsets rounded half to even, as torchvision's center_crop does)."""
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method=DCT_METHOD)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.constant(RESIZE_SHORTER, tf.int32)
    size = tf.cond(height <= width,
                   lambda: tf.stack([side, side * width // height]),
                   lambda: tf.stack([side * height // width, side]))
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    top = tf.cast(tf.round(tf.cast(size[0] - side, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(size[1] - side, tf.float32) / 2.0), tf.int32)
    return tf.image.crop_to_bounding_box(resized, top, left, RESIZE_SHORTER, RESIZE_SHORTER)


def _lighting_shift(alpha: tf.Tensor) -> tf.Tensor:
    eigenvectors = tf.constant(LIGHTING_EIGENVECTORS, tf.float32)
    return tf.linalg.matvec(eigenvectors, alpha * tf.constant(LIGHTING_EIGENVALUES, tf.float32))


def _normalised(image: tf.Tensor, alpha: tf.Tensor | None) -> tf.Tensor:
    image = tf.cast(image, tf.float32) / 255.0
    if alpha is not None:
        image = image + _lighting_shift(alpha)
    return (image - tf.constant(MEAN)) / tf.constant(STD)


class TFPipeline:
    def __init__(self, config: Config, images: ImageSet) -> None:
        self.config = config
        self.crop = crop_size(config.model)
        self.files = [str(path) for path in images.files]
        self.labels = labels_for(images, zoo.get_spec(config.model).num_classes)
        self.workers = config.workers or 0

    def _augmented(self, path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.random_crop(_centre_square(path), [*self.crop, 3])
        image = tf.image.random_flip_left_right(image)
        alpha = tf.random.normal([3], stddev=LIGHTING_STD) if self.config.lighting else None
        return _normalised(image, alpha), label

    def dataset(self) -> tf.data.Dataset:
        autotune = self.config.autotune
        parallel = tf.data.AUTOTUNE if autotune else (self.workers or None)
        files = tf.data.Dataset.from_tensor_slices((self.files, self.labels))
        dataset = (files.shuffle(len(self.files), reshuffle_each_iteration=True).repeat()
                   .map(self._augmented, num_parallel_calls=parallel)
                   .batch(self.config.batch_size, drop_remainder=True))
        if autotune:
            dataset = dataset.prefetch(tf.data.AUTOTUNE)
        elif self.workers:
            dataset = dataset.prefetch(PREFETCH_PER_WORKER * self.workers)
        options = tf.data.Options()
        if self.workers:
            # tf.data's own thread pool, as large as the worker count asked for (by default it spans every core).
            options.threading.private_threadpool_size = self.workers
        return dataset.with_options(options)

    def batches(self) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        if len(self.files) < self.config.batch_size:
            raise ValueError(f"{len(self.files)} images make no batch of {self.config.batch_size}")
        return iter(self.dataset())

    def fixed_batch(self, augmentation: Augmentation) -> np.ndarray:
        count = len(augmentation.top)
        height, width = self.crop
        lighting = self.config.lighting

        def fixed(path, top, left, flip, alpha):
            image = tf.image.crop_to_bounding_box(_centre_square(path), top, left, height, width)
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            return _normalised(image, alpha if lighting else None)

        parameters = (self.files[:count], augmentation.top.astype(np.int32), augmentation.left.astype(np.int32),
                      augmentation.flip, augmentation.alpha)
        batch = next(iter(tf.data.Dataset.from_tensor_slices(parameters).map(fixed).batch(count)))
        return batch.numpy().transpose(0, 3, 1, 2)

    def settings(self) -> dict:
        autotune = self.config.autotune
        return {"pipeline": "tf.data: from_tensor_slices(files).shuffle.repeat.map(read_file, decode_jpeg, "
                            "tf.image resize antialias, crop_to_bounding_box, random_crop, random_flip_left_right, "
                            "normalise).batch(drop_remainder).prefetch",
                "num_parallel_calls": "AUTOTUNE" if autotune else (self.workers or "sequential"),
                "prefetch": "AUTOTUNE" if autotune else (PREFETCH_PER_WORKER * self.workers or "none"),
                "private_threadpool_size": self.workers or "default", "dct_method": DCT_METHOD,
                "lighting": self.config.lighting}
