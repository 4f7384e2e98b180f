"""The JPEG files an input-pipeline benchmark reads: a made set with ImageNet-like statistics, or a user's folder.

What an input pipeline costs (reading, decoding, resizing) depends on how many bytes each file holds and how many
pixels it decodes to, so the made set copies ImageNet's shape where it matters: most images 500 pixels on the long
side in the common photo aspect ratios, the rest spread between 300 and 800, and content with the 1/f spectrum,
correlated colour, hard edges and sensor noise of photographs, which JPEG compresses about as well as it compresses
real photos (a flat or random image would make files far smaller or far larger). No dataset can be downloaded, so
the set is made here, from a seed, byte for byte the same each time on one installation.

Making a few thousand files takes tens of seconds, so a made set is kept under ``cache_root()`` in a folder whose
name holds every parameter and the generator's version: a changed parameter or generator is another folder, never
a stale one. A folder appears under that name only once complete (it is made beside it and renamed), and counts as
made only when its manifest, written last, lists its files.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.environment import available_cpus
from bench.errors import UsageError
from bench.files import atomic_write_text, lock_of

if TYPE_CHECKING:  # Pillow loads only where images are made
    from PIL import Image

DEFAULT_COUNT = 2000
DEFAULT_SEED = 0
DEFAULT_QUALITY = 90
# Part of every cache folder's name: raise it whenever a change to the generator changes the files it makes, so
# that sets made by the old one are not taken for the new.
FORMAT_VERSION = 1

JPEG_SUFFIXES = (".jpg", ".jpeg")
MANIFEST = "manifest.json"
CLASSES = 1000
MIN_SIDE = 32

# ImageNet's images: about 70% have a long side of exactly 500 pixels (Flickr's medium size), most in 4:3 or 3:2,
# landscape more often than portrait; the rest are spread more widely.
STANDARD_LONG_SIDE = 500
STANDARD_SHARE = 0.7
OTHER_LONG_SIDES = (300, 800)
ASPECT_RATIOS = (4 / 3, 3 / 2, 1.0, 16 / 9)
ASPECT_WEIGHTS = (0.5, 0.3, 0.1, 0.1)
PORTRAIT_SHARE = 0.25
# Base colours of the scenes (RGB in 0..1): grey (stone, cloud), brown (earth, wood), green (foliage), blue (sky,
# water).
PALETTE = ((0.5, 0.5, 0.5), (0.55, 0.42, 0.3), (0.35, 0.5, 0.3), (0.4, 0.55, 0.75))


@dataclass(frozen=True)
class ImageSet:
    """JPEG files and a class label for each, with a line that says which set they are."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    # What identifies the set across runs, one short line: how it was made, or the folder it was read from.
    source: str

    def __post_init__(self) -> None:
        if len(self.files) != len(self.labels):
            raise ValueError(f"{len(self.files)} files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.files)


def cache_root() -> Path:
    """``$CONVBENCH_CACHE/images``, by default ``~/.cache/convbench/images``; read when called, so tests can point
    it elsewhere."""
    return Path(os.environ.get("CONVBENCH_CACHE") or Path.home() / ".cache" / "convbench") / "images"


def made_images(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, quality: int = DEFAULT_QUALITY, *,
                scale: float = 1.0, on_progress: Callable[[int, int], None] | None = None) -> ImageSet:
    """``count`` JPEGs made from ``seed`` at JPEG ``quality``, each side multiplied by ``scale`` (at least 32
    pixels); made once per set of parameters and cached. ``on_progress(done, total)`` is called as files are made
    (not when the set comes from the cache). Two processes asking for the same set at once make it once: the
    second waits for the first."""
    _check_parameters(count, seed, quality, scale)
    scale = float(scale)
    parameters = {"format": FORMAT_VERSION, "count": count, "seed": seed, "quality": quality, "scale": scale}
    key = f"jpeg-v{FORMAT_VERSION}-n{count}-s{seed}-q{quality}-x{_number_text(scale)}"
    folder = cache_root() / key
    found = _cached(folder, parameters)
    if found is None:
        with lock_of(folder):
            found = _cached(folder, parameters)  # another process may have made it while this one waited
            if found is None:
                _make(folder, count, seed, quality, scale, on_progress)
                found = _cached(folder, parameters)
                if found is None:
                    raise RuntimeError(f"{folder} was made but does not read back as a complete set")
    files, labels = found
    source = f"made: {count} JPEGs, seed {seed}, quality {quality}"
    if scale != 1:
        source += f", scale {_number_text(scale)}"
    return ImageSet(root=folder, files=files, labels=labels, source=source)


def folder_images(directory: str | Path) -> ImageSet:
    """Every ``.jpg``/``.jpeg`` file (any case) under ``directory``, sorted by path, none opened. In the
    ImageFolder layout (``DIR/<class>/<file>``, as ImageNet's train folder) a file's label is the index of its
    first-level folder among those holding JPEGs, in sorted order; files directly in ``DIR`` get label 0."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"--images DIR: {root} is not a folder")
    found = _jpegs_under(root)
    if not found:
        raise UsageError(f"--images DIR: no .jpg or .jpeg files under {root}")
    found.sort(key=lambda entry: entry[0].split(os.sep))  # the order of Path comparison, part by part
    index = {name: position for position, name in enumerate(sorted({first for _, first in found} - {""}))}
    return ImageSet(root=root, files=tuple(Path(path) for path, _ in found),
                    labels=tuple(index.get(first, 0) for _, first in found),
                    source=f"folder: {root} ({len(found)} JPEGs)")


def _check_parameters(count: int, seed: int, quality: int, scale: float) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"image count must be a whole number of at least 1, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"image seed must be a whole number of at least 0, got {seed!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UsageError(f"JPEG quality must be a whole number from 1 to 100, got {quality!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise UsageError(f"image scale must be above 0 and at most 1, got {scale!r}")


def _number_text(value: float) -> str:
    """``value`` as short as it reads back exactly: 1, 0.25 (a folder name, so two scales never share one)."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def _cached(folder: Path, parameters: dict) -> tuple[tuple[Path, ...], tuple[int, ...]] | None:
    """The files and labels of a complete set in ``folder`` made with ``parameters``, or None: no manifest, an
    unreadable one, other parameters, or a listed file missing."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        if any(manifest.get(name) != value for name, value in parameters.items()):
            return None
        files = tuple(folder / name for name in manifest["files"])
        labels = tuple(int(label) for label in manifest["labels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(files) != parameters["count"] or len(labels) != len(files) or not all(path.is_file() for path in files):
        return None
    return files, labels


def _make(folder: Path, count: int, seed: int, quality: int, scale: float,
          on_progress: Callable[[int, int], None] | None) -> None:
    """Make the set into a new folder beside ``folder`` and rename it into place; the caller holds the lock."""
    parent = folder.parent
    # Whatever a crashed maker left (a half-made folder under the name or beside it) is no use to anyone.
    shutil.rmtree(folder, ignore_errors=True)
    for stale in parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}."))
    try:
        rng = np.random.default_rng(seed)
        sizes = _sizes(rng, count, scale)
        labels = rng.integers(0, CLASSES, size=count)
        # A generator of its own per image: an image is the same whichever thread makes it, in whatever order.
        image_rngs = rng.spawn(count)
        width = max(6, len(str(count - 1)))
        names = [f"{index:0{width}d}.jpg" for index in range(count)]

        def make_one(index: int) -> None:
            picture = _picture(image_rngs[index], *sizes[index])
            picture.save(building / names[index], "JPEG", quality=quality, subsampling="4:2:0")

        if on_progress is not None:
            on_progress(0, count)
        # numpy's FFT and PIL's encoder release the GIL, so threads make files side by side.
        pool = ThreadPoolExecutor(max_workers=_threads())
        try:
            for done, _ in enumerate(pool.map(make_one, range(count)), start=1):
                if on_progress is not None:
                    on_progress(done, count)
        finally:
            pool.shutdown(cancel_futures=True)  # on an error or ^C, stop at the files already begun
        manifest = {"format": FORMAT_VERSION, "count": count, "seed": seed, "quality": quality, "scale": scale,
                    "files": names, "labels": labels.tolist()}
        atomic_write_text(building / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        os.chmod(building, 0o777 & ~_umask())  # mkdtemp makes a private folder; the set is shared like any cache
        os.rename(building, folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _threads() -> int:
    """Threads making files: the CPUs this process may run on, at most 8."""
    return max(1, min(8, available_cpus()))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sizes(rng: np.random.Generator, count: int, scale: float) -> list[tuple[int, int]]:
    """(height, width) of each image: ImageNet's mix of sizes and aspect ratios, times ``scale``."""
    standard = rng.random(count) < STANDARD_SHARE
    long_sides = np.where(standard, STANDARD_LONG_SIDE, rng.integers(*OTHER_LONG_SIDES, endpoint=True, size=count))
    ratios = rng.choice(ASPECT_RATIOS, p=ASPECT_WEIGHTS, size=count)
    portrait = rng.random(count) < PORTRAIT_SHARE
    short_sides = np.round(long_sides / ratios)
    heights = np.where(portrait, long_sides, short_sides)
    widths = np.where(portrait, short_sides, long_sides)
    return [(max(MIN_SIDE, round(float(height) * scale)), max(MIN_SIDE, round(float(width) * scale)))
            for height, width in zip(heights, widths, strict=True)]


def _picture(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """An RGB picture with a photograph's statistics: a scene of 1/f noise in correlated colours with sensor noise,
    and a few objects with hard edges in front of it."""
    exponent = rng.uniform(0.75, 1.15)
    # Colour: one luminance field along a base colour of the palette, two weaker chroma fields in random
    # directions, so the channels move together as they do in photographs.
    base = np.asarray(PALETTE[rng.integers(len(PALETTE))]) + rng.uniform(-0.08, 0.08, 3)
    mixing = np.column_stack([base / np.linalg.norm(base), rng.normal(0, 0.2, (3, 2))]) * rng.uniform(30, 60)
    mean = base * 255 * rng.uniform(0.7, 1.2)
    channels = _pink_noise(rng, height, width, exponent, mixing, mean)
    # Sensor noise of 1 to 3 grey levels (standard deviation): uniform, from random bytes, quicker than normals.
    noise = np.frombuffer(rng.bytes(channels.size), dtype=np.uint8).reshape(channels.shape)
    channels += (noise - np.float32(127.5)) * np.float32(rng.uniform(1, 3) * np.sqrt(12) / 256)
    planes = np.clip(channels, 0, 255, out=channels).astype(np.uint8)
    from PIL import Image

    scene = Image.merge("RGB", [Image.fromarray(plane) for plane in planes])
    # Objects: the scene's texture seen through another gain and tint inside each shape, later ones in front.
    picture = scene.copy()
    for _ in range(int(rng.integers(2, 7))):
        gain = rng.uniform(0.5, 1.5) * rng.uniform(0.8, 1.2, (3, 1))
        table = np.clip(np.arange(256) * gain + rng.normal(0, 40, (3, 1)), 0, 255).round().astype(np.uint8)
        box, mask = _shape(rng, height, width)
        picture.paste(scene.crop(box).point(table.ravel().tolist()), box, mask)
    return picture


def _pink_noise(rng: np.random.Generator, height: int, width: int, exponent: float, mixing: np.ndarray,
                mean: np.ndarray) -> np.ndarray:
    """Three channels (float32, channels first) ``mean + mixing @ fields``, where the fields are independent, of
    about unit variance and zero mean, with an amplitude spectrum that falls as 1/f^``exponent`` (photographs: about
    1/f). Mixed in the frequency domain (the transform is linear), where there are half as many numbers. The
    coefficients are uniform, not Gaussian: each pixel sums thousands of them, so the fields are Gaussian either
    way, and random bytes are several times quicker to draw than normals."""
    amplitude = _frequencies(height, width) ** np.float32(-exponent)
    # Parseval: a pixel's variance is twice the half-spectrum's power (the other half mirrors it) over the pixel
    # count squared; each coefficient's power is twice that of a uniform byte, (256^2 - 1) / 12.
    pixels = height * width
    amplitude *= np.float32(pixels / np.sqrt(2 * float(np.sum(amplitude**2)) * 2 * (256**2 - 1) / 12))
    shape = (3, height, width // 2 + 1)
    real, imaginary = np.frombuffer(rng.bytes(2 * int(np.prod(shape))), dtype=np.int8).reshape(2, *shape)
    fields = np.empty(shape, dtype=np.complex64)
    fields.real = real * amplitude
    fields.imag = imaginary * amplitude
    # Mixed by hand, not by a matrix product: BLAS would start threads of its own beside the maker's.
    spectrum = np.stack([sum(weight * field for weight, field in zip(row.astype(np.float32), fields, strict=True))
                         for row in mixing])
    spectrum[:, 0, 0] = mean * pixels
    return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=64)
def _frequencies(height: int, width: int) -> np.ndarray:
    """The spatial frequency of each coefficient of a real FFT of that size, kept: most images share a few sizes.
    The constant term's is infinite, so that any 1/f^a amplitude leaves it zero."""
    frequencies = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]).astype(np.float32)
    frequencies[0, 0] = np.inf
    frequencies.flags.writeable = False
    return frequencies


def _shape(rng: np.random.Generator, height: int, width: int) -> tuple[tuple[int, int, int, int], Image.Image]:
    """One ellipse or polygon with hard edges, somewhere in the picture: the box around it (within the picture)
    and its mask over that box (255 inside)."""
    centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
    radius = rng.uniform(0.05, 0.35) * min(height, width)
    if rng.random() < 0.5:
        stretch = rng.uniform(0.5, 2.0)
        half_width, half_height = radius * stretch, radius / stretch
        xs = np.array([centre_x - half_width, centre_x + half_width])
        ys = np.array([centre_y - half_height, centre_y + half_height])
    else:
        # Corners in angular order around the centre: a polygon that never crosses itself.
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        radii = radius * rng.uniform(0.5, 1.0, len(angles))
        xs, ys = centre_x + radii * np.cos(angles), centre_y + radii * np.sin(angles)
    # Drawn only over the part of the picture it covers: pasting through a whole-picture mask costs more.
    left, top = max(0, int(xs.min())), max(0, int(ys.min()))
    right, bottom = max(left + 1, min(width, int(xs.max()) + 1)), max(top + 1, min(height, int(ys.max()) + 1))
    from PIL import Image, ImageDraw

    mask = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(mask)
    points = list(zip((xs - left).tolist(), (ys - top).tolist(), strict=True))
    if len(points) == 2:
        draw.ellipse(points, fill=255)
    else:
        draw.polygon(points, fill=255)
    return (left, top, right, bottom), mask


def _jpegs_under(root: Path) -> list[tuple[str, str]]:
    """(path, first-level folder or "" for ``root`` itself) of each JPEG file under ``root``, by name alone (nothing
    opened), following linked folders once each: a dataset is often a tree of links into another."""
    found: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        try:
            status = os.stat(folder)
        except OSError:
            subfolders.clear()
            continue
        if (status.st_dev, status.st_ino) in seen:  # a link back up the tree: walked already
            subfolders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        relative = os.path.relpath(folder, root)
        first = "" if relative == os.curdir else relative.split(os.sep, 1)[0]
        prefix = os.path.join(folder, "")
        found += [(prefix + name, first) for name in names if name.lower().endswith(JPEG_SUFFIXES)]
    return found
