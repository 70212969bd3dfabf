"""The inspection set from real photographs: exact defect masks, defect areas, shapes, MVTec AD's
folder layout and seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from selfsight.data.inspection import (
    AREA,
    INSPECTION_KINDS,
    add_inspection_defect,
    defect_free_part,
    make_inspection_set,
    make_part,
    sample_photos,
)
from selfsight.errors import UserError

SIZE = (160, 256)  # (height, width): small and not square, so the tests take seconds


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.fixture(scope="module")
def made(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("parts")
    manifest = make_inspection_set(root, n_train=3, n_good_test=2, n_defect_test=10, size=SIZE,
                                   seed=3, photos=photos)
    return root, manifest


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_masks_are_exactly_the_changed_pixels(made, photos):
    root, manifest = made
    defective = [e for e in manifest["test"] if e["kind"] != "good"]
    assert [e["kind"] for e in defective] == list(INSPECTION_KINDS) * 2
    for i, entry in enumerate(defective):
        good = defect_free_part(manifest, i, photos)
        bad, mask = _read(root / entry["file"]), _read(root / entry["mask"])
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        changed = (bad != good).any(axis=-1)
        np.testing.assert_array_equal(changed, mask == 255, err_msg=entry["file"])
        assert AREA[0] <= changed.mean() <= AREA[1], entry
        assert entry["area"] == pytest.approx(changed.mean(), abs=1e-6)


@pytest.mark.parametrize("kind", INSPECTION_KINDS)
def test_every_kind_stays_within_the_area_range_at_full_size(photos, kind):
    rng = np.random.default_rng(0)
    part = make_part(photos[0], (768, 768), rng)
    for _ in range(3):
        bad, mask = add_inspection_defect(part, kind, rng)
        assert AREA[0] <= mask.mean() <= AREA[1]
        np.testing.assert_array_equal((bad != part).any(axis=-1), mask)


def test_non_square_size_and_mvtec_layout(made):
    root, manifest = made
    assert manifest["size"] == list(SIZE)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    for path in files:
        top = path.split("/")[0]
        assert top in ("train", "test", "ground_truth"), path
        if top == "train":
            assert path.startswith("train/good/")
    for entry in manifest["test"]:
        image = _read(root / entry["file"])
        assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
        if entry["kind"] == "good":
            assert entry["file"].startswith("test/good/") and entry["mask"] is None
        else:  # MVTec AD: test/<kind>/NNN.png <-> ground_truth/<kind>/NNN_mask.png
            stem = entry["file"].split("/")[-1][:-4]
            assert entry["mask"] == f"ground_truth/{entry['kind']}/{stem}_mask.png"
            assert _read(root / entry["mask"]).shape == SIZE
    assert {p.name for p in (root / "test").iterdir()} == {"good", *INSPECTION_KINDS}
    assert len(list((root / "train" / "good").glob("*.png"))) == 3
    assert all(_read(p).shape == (*SIZE, 3) for p in (root / "train" / "good").glob("*.png"))
    assert (root / "manifest.json").is_file()


def test_seeded_and_prefix_stable(tmp_path, made, photos):
    root, manifest = made
    again = make_inspection_set(tmp_path / "a", n_train=2, n_good_test=1, n_defect_test=6,
                                size=SIZE, seed=3, photos=photos)
    for name in again["train"] + [e["file"] for e in again["test"]]:
        np.testing.assert_array_equal(_read(tmp_path / "a" / name), _read(root / name))
    other = make_inspection_set(tmp_path / "b", n_train=1, n_good_test=0, n_defect_test=1,
                                size=SIZE, seed=4, photos=photos)
    assert not np.array_equal(_read(tmp_path / "b" / other["train"][0]),
                              _read(root / manifest["train"][0]))


def test_unknown_kind_is_a_user_error(tmp_path, photos):
    with pytest.raises(UserError, match="unknown defect kinds"):
        make_inspection_set(tmp_path, kinds=("dent",), photos=photos)
