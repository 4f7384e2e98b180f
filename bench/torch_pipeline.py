"""The JPEG input pipeline in torch's own tools: a map-style ``Dataset`` that decodes with
``torchvision.io.decode_jpeg`` and augments uint8 tensors with ``torchvision.transforms.v2``, in a ``DataLoader``
with ``num_workers`` worker processes, pinned memory for a CUDA step and persistent workers (``bench.pipeline``
says what every pipeline does)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch
import torchvision
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

import zoo
from bench.backend import parse_device
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


class Lighting:
    """The 2012 paper's PCA lighting noise on a float image in [0, 1]: a random RGB shift along the principal
    components of ImageNet's colours (torchvision has no transform for it)."""

    def __init__(self) -> None:
        self.eigenvalues = torch.tensor(LIGHTING_EIGENVALUES)
        self.eigenvectors = torch.tensor(LIGHTING_EIGENVECTORS)

    def shift(self, alpha: torch.Tensor) -> torch.Tensor:
        return self.eigenvectors @ (alpha * self.eigenvalues)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image + self.shift(torch.randn(3) * LIGHTING_STD).view(3, 1, 1)


class JpegFiles(torch.utils.data.Dataset):
    """The files of an image set, each decoded and augmented as ``bench.pipeline`` describes, with its label."""

    def __init__(self, images: ImageSet, labels: np.ndarray, crop: tuple[int, int], lighting: bool) -> None:
        self.files = [str(path) for path in images.files]
        self.labels = labels
        self.lighting = Lighting() if lighting else None
        self.transform = v2.Compose([
            v2.Resize(RESIZE_SHORTER, antialias=True),
            v2.CenterCrop(RESIZE_SHORTER),
            v2.RandomCrop(crop),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            *([self.lighting] if self.lighting else []),
            v2.Normalize(MEAN, STD),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def decoded(self, index: int) -> torch.Tensor:
        return decode_jpeg(torchvision.io.read_file(self.files[index]), mode=ImageReadMode.RGB)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.decoded(index)), int(self.labels[index])

    def fixed(self, index: int, top: int, left: int, crop: tuple[int, int], flip: bool,
              alpha: np.ndarray) -> torch.Tensor:
        """File ``index`` with the given crop, flip and lighting alphas (the parity check)."""
        image = F.center_crop(F.resize(self.decoded(index), [RESIZE_SHORTER], antialias=True), [RESIZE_SHORTER])
        image = F.crop(image, int(top), int(left), *crop)
        if flip:
            image = F.horizontal_flip(image)
        image = F.to_dtype(image, torch.float32, scale=True)
        if self.lighting is not None:
            image = image + self.lighting.shift(torch.from_numpy(np.asarray(alpha, dtype=np.float32))).view(3, 1, 1)
        return F.normalize(image, MEAN, STD)


def _worker_init(_: int) -> None:
    # A forked worker inherits the measuring process's SIGTERM handling (a wakeup pipe its parent reads): its own
    # SIGTERM, from the DataLoader shutting it down, must end only itself.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class TorchPipeline:
    def __init__(self, config: Config, images: ImageSet) -> None:
        self.config = config
        spec = zoo.get_spec(config.model)
        self.crop = crop_size(config.model)
        self.dataset = JpegFiles(images, labels_for(images, spec.num_classes), self.crop, config.lighting)
        self.workers = config.workers or 0
        self.pin_memory = parse_device(config.device)[0] == "cuda"

    def loader(self) -> torch.utils.data.DataLoader:
        parallel = self.workers > 0
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.config.batch_size, shuffle=True, drop_last=True,
            num_workers=self.workers, pin_memory=self.pin_memory, persistent_workers=parallel,
            prefetch_factor=PREFETCH_PER_WORKER if parallel else None,
            worker_init_fn=_worker_init if parallel else None)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if len(self.dataset) < self.config.batch_size:
            raise ValueError(f"{len(self.dataset)} images make no batch of {self.config.batch_size}")
        loader = self.loader()
        while True:  # persistent workers carry over from one pass over the files to the next
            yield from loader

    def fixed_batch(self, augmentation: Augmentation) -> np.ndarray:
        return torch.stack([
            self.dataset.fixed(index, augmentation.top[index], augmentation.left[index], self.crop,
                               bool(augmentation.flip[index]), augmentation.alpha[index])
            for index in range(len(augmentation.top))
        ]).numpy()

    def settings(self) -> dict:
        return {"pipeline": "torch.utils.data.DataLoader over a map-style Dataset: torchvision.io.decode_jpeg, "
                            "transforms.v2 on uint8 tensors (Resize antialias, CenterCrop, RandomCrop, "
                            "RandomHorizontalFlip), then ToDtype(scale), Normalize",
                "num_workers": self.workers, "persistent_workers": self.workers > 0,
                "prefetch_factor": PREFETCH_PER_WORKER if self.workers else None, "pin_memory": self.pin_memory,
                "shuffle": True, "drop_last": True, "torchvision": torchvision.__version__,
                "lighting": self.config.lighting}
