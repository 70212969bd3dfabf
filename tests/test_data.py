"""Behaviour of the image sources: IDX reader, image-folder loader and its cache, arrays."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import selfsight.data.decode as folder_mod  # decode_image is patched where the loader calls it
from selfsight.data import (
    ImageSet,
    from_arrays,
    load_eval_sets,
    load_every_image,
    load_fashion_mnist,
    load_folder,
    load_images,
    write_skipped_report,
)
from selfsight.data.fashion_mnist import DEFAULT_ROOT
from selfsight.data.folder import decode_image, scan_folder

ZOO_SIZE = 32

# --------------------------------------------------------------------------------------------
# Fashion-MNIST / IDX


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    ndim = array.ndim
    header = struct.pack(">I", magic if magic is not None else 0x0800 | ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _write_tiny_fashion(root: Path, n: int = 5, gz: bool = False) -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    written = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        written[split] = (images, labels)
    return written


def test_debian_fashion_mnist_files():
    if not DEFAULT_ROOT.is_dir():
        pytest.skip(f"{DEFAULT_ROOT} absent (apt-get install dataset-fashion-mnist)")
    train = load_fashion_mnist("train", root=DEFAULT_ROOT)
    test = load_fashion_mnist("test", root=DEFAULT_ROOT)
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28, 1)
    assert train.labels.dtype == np.int64
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert len(train.classes) == 10 and train.classes[9] == "Ankle boot"
    # A second load comes from the in-process cache: the same read-only buffer.
    again = load_fashion_mnist("train", root=DEFAULT_ROOT)
    assert np.shares_memory(again.images, train.images)
    assert not train.images.flags.writeable


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    written = _write_tiny_fashion(tmp_path, gz=gz)
    for split in ("train", "test"):
        loaded = load_fashion_mnist(split, root=tmp_path)
        images, labels = written[split]
        assert loaded.images.shape == (5, 28, 28, 1)
        np.testing.assert_array_equal(loaded.images[..., 0], images)
        np.testing.assert_array_equal(loaded.labels, labels.astype(np.int64))


def test_idx_errors(tmp_path, monkeypatch):
    _write_tiny_fashion(tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28)), magic=0x0000_0903)
    with pytest.raises(ValueError, match="magic number"):
        load_fashion_mnist("train", root=tmp_path)
    # Header says 5 images but only 4 are present.
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-784])
    with pytest.raises(ValueError, match="bytes"):
        load_fashion_mnist("test", root=tmp_path)
    with pytest.raises(ValueError, match="train"):
        load_fashion_mnist("validation", root=tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_fashion_mnist("train", root=missing)
    assert str(missing) in str(err.value)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist("test", root=tmp_path)
    # The environment variable is the fallback root.
    good = tmp_path / "good"
    good.mkdir()
    _write_tiny_fashion(good, n=3)
    monkeypatch.setenv("SELFSIGHT_FASHION_MNIST", str(good))
    assert len(load_fashion_mnist("train")) == 3


# --------------------------------------------------------------------------------------------
# The bad-file zoo


def _solid(mode: str, color: object, size: int = ZOO_SIZE) -> Image.Image:
    return Image.new(mode, (size, size), color)


def _build_zoo(root: Path) -> dict[str, object]:
    """Write good and bad files; returns facts the assertions need."""
    root.mkdir(parents=True, exist_ok=True)
    facts: dict[str, object] = {}
    # --- bad files
    buffer = root / "full.jpg"
    _solid("RGB", (200, 10, 10), 128).save(buffer, quality=95)
    data = buffer.read_bytes()
    buffer.unlink()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("this is not a picture\n")
    # --- good files
    deep = (np.arange(ZOO_SIZE * ZOO_SIZE, dtype=np.uint16) * 61 + 300).reshape(
        ZOO_SIZE, ZOO_SIZE
    )
    Image.fromarray(deep).save(root / "gray16.png")
    facts["gray16"] = deep
    _solid("CMYK", (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)  # pure red ink
    palette = _solid("P", 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    palette.save(root / "palette.png")
    transparent = _solid("P", 1)
    transparent.putpalette([250, 250, 250, 10, 200, 30] + [0] * (254 * 3))
    transparent.paste(0, (0, 0, ZOO_SIZE // 2, ZOO_SIZE))  # left half uses index 0 ...
    transparent.save(root / "palette_alpha.png", transparency=0)  # ... which is transparent
    rgba = _solid("RGBA", (255, 255, 255, 255))
    rgba.paste((255, 255, 255, 0), (0, 0, ZOO_SIZE, ZOO_SIZE // 2))  # top half see-through
    rgba.save(root / "rgba.png")
    _solid("RGB", (0, 0, 255)).save(root / "blue.bmp")
    _solid("RGB", (0, 255, 0)).save(root / "green.tif")
    _solid("RGB", (255, 255, 0)).save(root / "yellow.webp", lossless=True)
    _solid("L", 77).save(root / "UPPER.JPEG", quality=95)
    _exif_rotated(root / "rotated.jpg")
    return facts


def _exif_rotated(path: Path) -> None:
    """64 wide x 32 tall, stored with a white block at x 16..32, y 0..16, Orientation = 6.

    Orientation 6 means "rotate 90 degrees clockwise to display": the displayed image is
    32 x 64, the block lands at rows 16..32, columns 16..32, and the centre crop (rows 16..48)
    puts it in the top-right quadrant of the 32 x 32 output. No rotation would put it top-left,
    a counter-clockwise one bottom-left.
    """
    img = Image.new("RGB", (64, 32), (0, 0, 0))
    img.paste((255, 255, 255), (16, 0, 32, 16))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, quality=95, exif=exif)


GOOD = {
    "gray16.png",
    "cmyk.jpg",
    "palette.png",
    "palette_alpha.png",
    "rgba.png",
    "blue.bmp",
    "green.tif",
    "yellow.webp",
    "UPPER.JPEG",
    "rotated.jpg",
}
BAD = {"truncated.jpg", "empty.jpg", "notes.png"}


@pytest.fixture
def zoo(tmp_path) -> tuple[Path, dict[str, object]]:
    root = tmp_path / "zoo"
    return root, _build_zoo(root)


def _by_name(imageset: ImageSet) -> dict[str, np.ndarray]:
    return {Path(f).name: imageset.images[i] for i, f in enumerate(imageset.files)}


def test_zoo_loads_good_and_skips_bad(zoo, tmp_path):
    root, facts = zoo
    loaded = load_folder(root, size=ZOO_SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert loaded.images.shape == (len(GOOD), ZOO_SIZE, ZOO_SIZE, 3)  # mixed modes -> RGB
    assert {Path(f).name for f in loaded.files} == GOOD
    assert loaded.labels is None
    assert len(loaded.skipped) == len(BAD)
    assert {Path(f).name for f, _ in loaded.skipped} == BAD
    assert all(reason for _, reason in loaded.skipped)

    images = _by_name(loaded)
    # 16-bit values are scaled by their depth (>> 8), not clipped at 255.
    np.testing.assert_array_equal(images["gray16.png"][..., 0], facts["gray16"] >> 8)
    assert images["gray16.png"][..., 0].max() < 255
    red = images["cmyk.jpg"].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 40 and red[2] < 40
    np.testing.assert_array_equal(images["palette.png"][0, 0], [10, 200, 30])
    half = ZOO_SIZE // 2
    assert images["palette_alpha.png"][:, :half].max() == 0  # transparent -> black
    np.testing.assert_array_equal(images["palette_alpha.png"][0, -1], [10, 200, 30])
    assert images["rgba.png"][:half].max() == 0 and images["rgba.png"][half:].min() == 255
    np.testing.assert_array_equal(images["blue.bmp"][0, 0], [0, 0, 255])
    np.testing.assert_array_equal(images["green.tif"][0, 0], [0, 255, 0])
    np.testing.assert_array_equal(images["yellow.webp"][0, 0], [255, 255, 0])
    assert abs(int(images["UPPER.JPEG"][5, 5, 0]) - 77) <= 2

    rotated = images["rotated.jpg"].mean(axis=-1)
    assert rotated[2:14, 18:30].min() > 200  # top-right: the block, rotated clockwise
    assert rotated[2:14, 2:14].max() < 50  # top-left: where it would be without rotation
    assert rotated[18:30, :].max() < 50  # bottom: where a wrong-way rotation would put it

    report = write_skipped_report(loaded, tmp_path / "run")
    content = json.loads(report.read_text())
    assert report.name == "skipped_files.json" and content["count"] == 3
    assert {Path(entry["file"]).name for entry in content["files"]} == BAD
    assert all(entry["reason"] for entry in content["files"])


def test_decode_sixteen_bit_and_resize(tmp_path):
    values = np.full((40, 20), 0xABCD, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = decode_image(tmp_path / "deep.png", size=10, channels=1)
    assert out.shape == (10, 10, 1) and out.dtype == np.uint8
    assert (out == 0xAB).all()
    rgb = decode_image(tmp_path / "deep.png", size=12, channels=3)
    assert rgb.shape == (12, 12, 3) and (rgb == 0xAB).all()


def test_second_load_hits_cache(zoo, tmp_path, monkeypatch):
    root, _ = zoo
    calls: list[str] = []
    real = folder_mod.decode_image

    def counting(path, size, channels):
        calls.append(str(path))
        return real(path, size, channels)

    monkeypatch.setattr(folder_mod, "decode_image", counting)
    first = load_folder(root, size=ZOO_SIZE, progress=False)  # default cache inside root
    assert len(calls) == len(GOOD) + len(BAD)
    assert (root / ".selfsight-cache").is_dir()
    calls.clear()
    second = load_folder(root, size=ZOO_SIZE, progress=False)
    assert calls == []
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(second.images), np.asarray(first.images))
    assert second.files == first.files and second.skipped == first.skipped
    # Changing a file (its size/mtime) invalidates the cache.
    _solid("RGB", (1, 2, 3)).save(root / "blue.bmp")
    third = load_folder(root, size=ZOO_SIZE, progress=False)
    assert len(calls) == len(GOOD) + len(BAD)
    np.testing.assert_array_equal(_by_name(third)["blue.bmp"][0, 0], [1, 2, 3])
    # The stale cache is pruned; another size is a separate, kept cache.
    assert len(list((root / ".selfsight-cache").glob("*.npy"))) == 1
    load_folder(root, size=16, progress=False)
    assert len(list((root / ".selfsight-cache").glob("*.npy"))) == 2


class _Killed(BaseException):
    """Stands in for a process killed mid-decode (not an Exception, so nothing catches it)."""


def test_killed_decode_leaves_no_trusted_cache(zoo, tmp_path, monkeypatch):
    root, _ = zoo
    cache = tmp_path / "cache"
    real = folder_mod.decode_image
    calls: list[str] = []

    def dying(path, size, channels):
        calls.append(str(path))
        if len(calls) == 4:
            raise _Killed
        return real(path, size, channels)

    monkeypatch.setattr(folder_mod, "decode_image", dying)
    with pytest.raises(_Killed):
        load_folder(root, size=ZOO_SIZE, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []  # neither a half array nor temp files remain
    calls.clear()
    monkeypatch.setattr(folder_mod, "decode_image", real)
    loaded = load_folder(root, size=ZOO_SIZE, cache_dir=cache, progress=False)
    assert len(loaded) == len(GOOD)


def test_missing_empty_and_all_bad_folders(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_folder(missing, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(empty)) as err:
        scan_folder(empty)
    assert ".png" in str(err.value)
    with pytest.raises(ValueError, match=str(empty)):
        load_folder(empty, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("nope")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=str(bad)):
        load_folder(bad, cache_dir=tmp_path / "cache", progress=False)


def _class_tree(root: Path) -> None:
    for name, shade in (("cat", 30), ("dog", 220)):
        (root / name).mkdir(parents=True)
        for i in range(3):
            _solid("L", shade + i, 8).save(root / name / f"{i}.png")


def test_subfolder_labels_and_auto_gray(tmp_path):
    root = tmp_path / "pets"
    _class_tree(root)
    loaded = load_folder(root, size=8, cache_dir=tmp_path / "cache", progress=False)
    assert loaded.channels == 1  # every image is grayscale
    assert loaded.classes == ["cat", "dog"]
    assert loaded.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert loaded.images[:3].max() < 100 and loaded.images[3:].min() > 200
    # One class folder only, or loose top-level files: no labels.
    _solid("L", 5, 8).save(root / "loose.png")
    assert load_folder(root, size=8, cache_dir=tmp_path / "c2", progress=False).labels is None


def test_split_folders_share_the_training_class_numbers(tmp_path):
    """test/ without the first class must not shift every test label by one."""
    root = tmp_path / "split"
    for split, names in (("train", ("ant", "bee", "cat")), ("test", ("bee", "cat"))):
        for shade, name in zip((10, 120, 240), ("ant", "bee", "cat")):
            if name in names:
                (root / split / name).mkdir(parents=True)
                _solid("L", shade, 8).save(root / split / name / "0.png")
    train, test = load_eval_sets(root, 8, 1)
    assert train.classes == test.classes == ["ant", "bee", "cat"]
    assert test.labels.tolist() == [1, 2]  # bee, cat: the training numbers
    # A single class folder in test/ (nested one level deeper) is still that training class.
    shutil.rmtree(root / "test" / "bee")
    (root / "test" / "cat" / "deep").mkdir()
    (root / "test" / "cat" / "0.png").rename(root / "test" / "cat" / "deep" / "0.png")
    _solid("L", 240, 8).save(root / "test" / "cat" / "1.png")
    train, test = load_eval_sets(root, 8, 1)
    assert test.classes == train.classes and test.labels.tolist() == [2, 2]
    (root / "test" / "loose.png").write_bytes((root / "test" / "cat" / "1.png").read_bytes())
    with pytest.raises(ValueError, match="test/ has none"):
        load_eval_sets(root, 8, 1)
    (root / "test" / "loose.png").unlink()
    (root / "test" / "dog").mkdir()
    _solid("L", 60, 8).save(root / "test" / "dog" / "0.png")
    with pytest.raises(ValueError, match=r"test classes \['dog'\] have no training images"):
        load_eval_sets(root, 8, 1)


def test_csv_labels(tmp_path):
    root = tmp_path / "pets"
    _class_tree(root)
    table = tmp_path / "labels.csv"
    table.write_text("file,label\ndog/0.png,woof\ncat/1.png,meow\ndog/2.png,woof\n")
    loaded = load_folder(root, size=8, labels=table, cache_dir=tmp_path / "c", progress=False)
    assert [Path(f).relative_to(root).as_posix() for f in loaded.files] == [
        "cat/1.png",
        "dog/0.png",
        "dog/2.png",
    ]
    assert loaded.classes == ["meow", "woof"]
    assert loaded.labels.tolist() == [0, 1, 1]
    # No header works too.
    table.write_text("cat/0.png,meow\ndog/1.png,woof\n")
    assert len(load_folder(root, size=8, labels=table, progress=False)) == 2
    table.write_text("file,label\ncat/0.png,meow\ncat/9.png,meow\n")
    with pytest.raises(FileNotFoundError, match="row 3") as err:
        load_folder(root, size=8, labels=table, progress=False)
    assert str(table) in str(err.value) and "cat/9.png" in str(err.value)


def test_write_skipped_report_nothing_skipped(tmp_path):
    clean = from_arrays(np.zeros((2, 4, 4), dtype=np.uint8))
    assert write_skipped_report(clean, tmp_path) is None
    assert not (tmp_path / "skipped_files.json").exists()


# --------------------------------------------------------------------------------------------
# Arrays and dispatch


def test_from_arrays_layouts():
    gray = from_arrays(np.zeros((4, 5, 6), dtype=np.uint8))
    assert gray.images.shape == (4, 5, 6, 1)
    nhwc = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    assert from_arrays(nhwc).images is nhwc  # uint8 channels-last is used as is
    nchw = torch.rand(3, 3, 8, 9)
    loaded = from_arrays(nchw, labels=torch.tensor([0, 2, 1]))
    assert loaded.images.shape == (3, 8, 9, 3) and loaded.images.dtype == np.uint8
    expected = np.round(nchw.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(loaded.images, expected)
    assert loaded.labels.dtype == np.int64 and loaded.labels.tolist() == [0, 2, 1]
    single = from_arrays(np.ones((2, 1, 7, 7), dtype=np.float32))
    assert single.images.shape == (2, 7, 7, 1) and (single.images == 255).all()


def test_from_arrays_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_arrays(np.full((2, 4, 4), 255.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        from_arrays(np.full((2, 4, 4), -0.5, dtype=np.float32))
    with pytest.raises(ValueError, match="dtype int32"):
        from_arrays(np.zeros((2, 4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="shape"):
        from_arrays(np.zeros((2, 4, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="labels"):
        from_arrays(np.zeros((2, 4, 4), dtype=np.uint8), labels=np.array([0, 1, 2]))
    tiny = from_arrays(np.full((1, 2, 2), 1.0005))  # rounding overshoot is tolerated
    assert (tiny.images == 255).all()


def test_every_image_of_fashion_mnist_is_both_splits_named_by_split(tmp_path):
    written = _write_tiny_fashion(tmp_path, n=4)
    every = load_every_image(f"fashion-mnist:{tmp_path}", size=28, channels=1)
    assert len(every) == 8 and every.classes[0] == "T-shirt/top"
    assert every.row_names() == [f"fashion-mnist-{s}/{i}" for s in ("train", "test")
                                 for i in range(4)]
    for offset, split in ((0, "train"), (4, "test")):
        np.testing.assert_array_equal(every.images[offset:offset + 4, ..., 0],
                                      written[split][0])
        np.testing.assert_array_equal(every.labels[offset:offset + 4], written[split][1])


def test_load_images_dispatch(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    _write_tiny_fashion(idx, n=4)
    assert len(load_images(f"fashion-mnist:{idx}", split="test")) == 4
    assert load_images(f"fashion-mnist:{idx}", channels=3).channels == 3
    arrays = load_images(np.zeros((3, 4, 4, 3), dtype=np.uint8), channels=1)
    assert arrays.images.shape == (3, 4, 4, 1)

    split_root = tmp_path / "split"
    _class_tree(split_root / "train")
    _class_tree(split_root / "test")
    (split_root / "test" / "dog" / "0.png").unlink()
    test = load_images(split_root, split="test", size=8, cache_dir=tmp_path / "c")
    assert len(test) == 5 and test.classes == ["cat", "dog"]
    assert len(load_images(str(split_root), size=8, cache_dir=tmp_path / "c")) == 6

    flat = tmp_path / "flat"
    _class_tree(flat)
    assert load_images(flat, cache_dir=tmp_path / "c").size == (16, 16)  # the images' own size
    with pytest.raises(ValueError, match=str(flat)):
        load_images(flat, split="test", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="accepted"):
        load_images(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="accepted"):
        load_images(42)


def test_a_folder_is_read_at_its_images_own_size_up_to_64(tmp_path):
    from selfsight.data import default_folder_size, load_images

    for name, side in (("small", 32), ("large", 300)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(5):  # non-square: the short side counts
            Image.fromarray(np.zeros((side, side + 10), np.uint8)).save(folder / f"{i}.png")
    assert default_folder_size(tmp_path / "small") == 32
    assert default_folder_size(tmp_path / "large") == 64
    assert load_images(tmp_path / "small").size[0] == 32
    assert load_images(tmp_path / "small", size=48).size[0] == 48
