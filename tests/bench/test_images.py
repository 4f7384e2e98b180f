"""The benchmark's JPEGs: a made set that is cached, reproducible and photograph-like; a user's folder read as
ImageFolder reads it; arguments refused with one line."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from bench import images
from bench.errors import UsageError
from bench.images import ImageSet, cache_root, folder_images, made_images

SMALL = 0.25  # sides of about 125 pixels: a set of a few files takes a fraction of a second


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _counting_pictures(monkeypatch, delay_s: float = 0.0) -> list[int]:
    """Counts the pictures made from here on (the generator still runs, ``delay_s`` slower)."""
    made: list[int] = []
    real = images._picture

    def picture(rng, height, width):
        made.append(1)
        time.sleep(delay_s)
        return real(rng, height, width)

    monkeypatch.setattr(images, "_picture", picture)
    return made


def test_cache_root_follows_the_environment(cache):
    assert cache_root() == cache / "images"


def test_a_made_set_is_kept_and_the_second_call_makes_nothing(monkeypatch, cache):
    progress: list[tuple[int, int]] = []
    first = made_images(5, seed=3, quality=80, scale=SMALL, on_progress=lambda *call: progress.append(call))
    assert progress[0] == (0, 5) and progress[-1] == (5, 5) and len(progress) == 6
    assert first.root == cache / "images" / "jpeg-v1-n5-s3-q80-x0.25"
    assert len(first) == 5 and all(path.is_absolute() and path.parent == first.root for path in first.files)
    assert list(first.files) == sorted(first.files)
    assert first.source == "made: 5 JPEGs, seed 3, quality 80, scale 0.25"
    modified = [path.stat().st_mtime_ns for path in first.files]

    made = _counting_pictures(monkeypatch)
    progress.clear()
    second = made_images(5, seed=3, quality=80, scale=SMALL, on_progress=lambda *call: progress.append(call))
    assert second == first
    assert made == [] and progress == []
    assert [path.stat().st_mtime_ns for path in second.files] == modified
    # No folder but the set and its lock is left behind.
    assert sorted(path.name for path in (cache / "images").iterdir()) == ["jpeg-v1-n5-s3-q80-x0.25",
                                                                          "jpeg-v1-n5-s3-q80-x0.25.lock"]


def test_every_parameter_is_its_own_set(cache):
    variants = [{}, {"count": 3}, {"seed": 1}, {"quality": 50}, {"scale": 0.2}]
    roots = {made_images(**({"count": 2, "scale": SMALL} | variant)).root for variant in variants}
    assert len(roots) == 5
    assert made_images(1, scale=1 / 3).root.name == f"jpeg-v1-n1-s0-q90-x{1 / 3!r}"  # never rounded into another's


def test_the_same_parameters_give_the_same_bytes_and_another_seed_others(monkeypatch, tmp_path):
    first = made_images(4, seed=7, scale=SMALL)
    monkeypatch.setenv("CONVBENCH_CACHE", str(tmp_path / "elsewhere"))
    again = made_images(4, seed=7, scale=SMALL)
    other = made_images(4, seed=8, scale=SMALL)
    assert again.root != first.root
    assert [path.read_bytes() for path in again.files] == [path.read_bytes() for path in first.files]
    assert again.labels == first.labels
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(other.files, first.files, strict=True))


def test_made_files_are_photograph_like_rgb_jpegs():
    made = made_images(24, seed=1, quality=90, scale=SMALL)
    assert len(made.labels) == 24 and all(0 <= label < 1000 for label in made.labels)
    assert len(set(made.labels)) > 1
    sizes = set()
    for path in made.files:
        with Image.open(path) as picture:
            assert (picture.format, picture.mode) == ("JPEG", "RGB")
            assert JpegImagePlugin.get_sampling(picture) == 2  # 4:2:0, as most of ImageNet's files
            pixels = np.asarray(picture, dtype=np.float32)
        sizes.add(pixels.shape[:2])
        assert min(pixels.shape[:2]) >= 32
        # Texture, not a flat colour: photographs vary by tens of grey levels, and JPEG keeps that in bytes.
        assert pixels.std(axis=(0, 1)).min() > 10
        flat = io.BytesIO()
        Image.new("RGB", pixels.shape[1::-1], (120, 110, 90)).save(flat, "JPEG", quality=90)
        assert path.stat().st_size > 4 * len(flat.getvalue())
    assert len(sizes) >= 3
    manifest = json.loads((made.root / "manifest.json").read_text())
    assert manifest["files"] == [path.name for path in made.files] and manifest["labels"] == list(made.labels)


def test_sizes_spread_around_imagenets():
    sizes = images._sizes(np.random.default_rng(0), 10_000, 1.0)
    long_sides = np.array([max(size) for size in sizes])
    assert 0.67 < np.mean(long_sides == 500) < 0.73
    assert long_sides.min() >= 300 and long_sides.max() <= 800
    shapes = Counter(sizes)
    assert shapes.most_common(1)[0][0] == (375, 500)  # 4:3 landscape, ImageNet's most common
    assert {(333, 500), (500, 375), (500, 500), (281, 500)} <= set(shapes)
    landscape = sum(height < width for height, width in sizes)
    portrait = sum(height > width for height, width in sizes)
    assert landscape > 2 * portrait > 0
    assert min(min(size) for size in images._sizes(np.random.default_rng(0), 1000, 0.01)) == 32


def test_a_half_made_folder_is_never_used(monkeypatch, cache):
    key = "jpeg-v1-n3-s0-q90-x0.25"
    half = cache / "images" / key
    half.mkdir(parents=True)
    (half / "000000.jpg").write_bytes(b"half a file")
    stale = cache / "images" / f".{key}.crashed"  # a maker that died while building beside it
    stale.mkdir()
    made = _counting_pictures(monkeypatch)
    result = made_images(3, scale=SMALL)
    assert made == [1, 1, 1] and result.root == half
    assert all(Image.open(path).format == "JPEG" for path in result.files)
    assert not stale.exists()

    (half / "manifest.json").unlink()  # a set whose manifest is gone is remade, not trusted
    made.clear()
    made_images(3, scale=SMALL)
    assert made == [1, 1, 1]

    result.files[1].unlink()  # ... and so is one whose manifest lists a file that is not there
    made.clear()
    assert made_images(3, scale=SMALL).files[1].is_file()
    assert made == [1, 1, 1]


def test_two_makers_at_once_make_the_set_once(monkeypatch):
    made = _counting_pictures(monkeypatch, delay_s=0.05)  # long enough for the second to start while the first makes
    results: list[ImageSet] = []
    makers = [threading.Thread(target=lambda: results.append(made_images(4, scale=SMALL))) for _ in range(2)]
    for maker in makers:
        maker.start()
    for maker in makers:
        maker.join()
    assert len(results) == 2 and results[0] == results[1]
    assert made == [1] * 4


def test_a_folder_is_read_as_imagefolder_reads_it(tmp_path):
    root = tmp_path / "data"
    for relative in ("n02/b.JPEG", "n01/a.jpg", "n01/deeper/c.Jpeg", "n01/a2.jpg", "top.jpg", "notes.txt",
                     "n03/readme.txt", "n04/x.png"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"not decoded")
    found = folder_images(str(root))
    names = [str(path.relative_to(root)) for path in found.files]
    assert names == ["n01/a.jpg", "n01/a2.jpg", "n01/deeper/c.Jpeg", "n02/b.JPEG", "top.jpg"]
    assert found.labels == (0, 0, 0, 1, 0)  # n03 and n04 hold no JPEG: no class
    assert found.root == root and all(path.is_absolute() for path in found.files)
    assert found.source == f"folder: {root} (5 JPEGs)"
    assert len(found) == 5


def test_linked_folders_are_followed_once(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "cats"
    elsewhere.mkdir(parents=True)
    (elsewhere / "c.jpg").write_bytes(b"")
    root = tmp_path / "data"
    (root / "dogs").mkdir(parents=True)
    (root / "dogs" / "d.jpg").write_bytes(b"")
    (root / "cats").symlink_to(elsewhere)  # a dataset made of links into another
    (root / "dogs" / "up").symlink_to(root)  # a link back up the tree must not walk forever
    found = folder_images(root)
    assert [str(path.relative_to(root)) for path in found.files] == ["cats/c.jpg", "dogs/d.jpg"]
    assert found.labels == (0, 1)


def test_a_flat_folder_is_all_label_zero(tmp_path):
    for name in ("b.jpeg", "a.JPG"):
        (tmp_path / name).write_bytes(b"")
    found = folder_images(tmp_path)
    assert [path.name for path in found.files] == ["a.JPG", "b.jpeg"] and found.labels == (0, 0)


def test_a_folder_that_cannot_serve_is_refused_in_one_line(tmp_path):
    with pytest.raises(UsageError, match=f"^--images DIR: {tmp_path / 'missing'} is not a folder$"):
        folder_images(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(UsageError, match="is not a folder$"):
        folder_images(tmp_path / "file.jpg")
    (tmp_path / "empty" / "class").mkdir(parents=True)
    (tmp_path / "empty" / "class" / "x.png").write_bytes(b"")
    with pytest.raises(UsageError, match=f"^--images DIR: no .jpg or .jpeg files under {tmp_path / 'empty'}$"):
        folder_images(tmp_path / "empty")


@pytest.mark.parametrize(("arguments", "named"), [
    ({"count": 0}, "count.*at least 1.*got 0"),
    ({"count": 2.5}, "count.*got 2.5"),
    ({"seed": -1}, "seed.*at least 0.*got -1"),
    ({"quality": 0}, "quality.*1 to 100.*got 0"),
    ({"quality": 101}, "quality.*1 to 100.*got 101"),
    ({"scale": 0}, r"scale.*above 0 and at most 1.*got 0"),
    ({"scale": 1.5}, r"scale.*above 0 and at most 1.*got 1.5"),
])
def test_bad_arguments_are_refused_before_anything_is_made(arguments, named, cache):
    with pytest.raises(UsageError, match=named) as refused:
        made_images(**arguments)
    assert "\n" not in str(refused.value)
    assert not cache.exists()
