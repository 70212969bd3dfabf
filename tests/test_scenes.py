"""The scene generator: masks exact by construction, twins side by side, COCO round trip."""

import numpy as np
import pytest
from PIL import Image

from selfsight.data.defects import FOREGROUND
from selfsight.data.fashion_mnist import load_fashion_mnist
from selfsight.data.scenes import SceneConfig, make_scenes, read_coco, write_coco


@pytest.fixture(scope="module")
def fashion_mnist_root():
    """None (the Debian package's files); skips where the package is absent."""
    try:
        load_fashion_mnist("test")
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def scenes(fashion_mnist_root):
    return make_scenes(40, "train", seed=3, root=fashion_mnist_root)


def test_masks_are_exactly_the_pixels_of_each_item(scenes, fashion_mnist_root):
    items = load_fashion_mnist("train", fashion_mnist_root)
    for scene in scenes:
        assert scene.masks.shape[0] == len(scene.categories) >= 2
        # Amodal masks: the resized source item's foreground at its box.
        for k, (top, left, side) in enumerate(scene.boxes):
            resized = np.asarray(Image.fromarray(items.images[scene.sources[k], ..., 0]).resize(
                (side, side), Image.BILINEAR))
            expected = np.zeros_like(scene.amodal[k])
            expected[top:top + side, left:left + side] = resized > FOREGROUND
            np.testing.assert_array_equal(scene.amodal[k], expected)
            assert scene.categories[k] == items.labels[scene.sources[k]]
        # Visible masks: disjoint, each the part not covered by a later item, showing its pixels.
        assert scene.masks.sum(0).max() <= 1
        for k in range(len(scene.masks)):
            later = scene.amodal[k + 1:].any(0)
            np.testing.assert_array_equal(scene.masks[k], scene.amodal[k] & ~later)
            np.testing.assert_array_equal(scene.image[scene.masks[k]],
                                          scene.layers[k][scene.masks[k]])
            assert scene.masks[k].sum() >= SceneConfig().min_visible * scene.amodal[k].sum()
        free = ~scene.masks.any(0)
        np.testing.assert_array_equal(scene.image[free], scene.background[free])


def test_same_category_instances_touch_or_overlap(scenes):
    def touching(a, b):
        grown = a.copy()
        grown[1:] |= a[:-1]
        grown[:-1] |= a[1:]
        grown[:, 1:] |= a[:, :-1]
        grown[:, :-1] |= a[:, 1:]
        return (grown & b).any()

    with_twins = sum(any(touching(s.masks[i], s.masks[j])
                         for i in range(len(s.masks)) for j in range(i + 1, len(s.masks))
                         if s.categories[i] == s.categories[j]) for s in scenes)
    assert with_twins >= 0.25 * len(scenes)


def test_splits_and_seeds(fashion_mnist_root):
    a = make_scenes(3, "test", seed=1, root=fashion_mnist_root)
    b = make_scenes(3, "test", seed=1, root=fashion_mnist_root)
    c = make_scenes(3, "test", seed=2, root=fashion_mnist_root)
    assert all((x.image == y.image).all() for x, y in zip(a, b))
    assert any((x.image != y.image).any() for x, y in zip(a, c))
    test_items = load_fashion_mnist("test", fashion_mnist_root)
    assert all(s.sources.max() < len(test_items.images) for s in a)


def test_coco_round_trip(scenes, tmp_path):
    from pycocotools.coco import COCO

    path = write_coco(scenes[:6], tmp_path / "coco")
    images, masks, classes = read_coco(tmp_path / "coco")
    for scene, image, m, c in zip(scenes, images, masks, classes):
        np.testing.assert_array_equal(image, scene.image)
        np.testing.assert_array_equal(m, scene.masks)
        np.testing.assert_array_equal(c, scene.categories)
    coco = COCO(str(path))
    assert len(coco.getAnnIds()) == sum(len(s.masks) for s in scenes[:6])
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert ann["area"] == coco.annToMask(ann).sum() == scenes[0].masks[0].sum()
