"""MaskCut / normalized cut (selfsight.segment.ncut) and mask refinement (selfsight.segment.refine).

Planted truth: patch features drawn around orthonormal cluster centres laid out as regions of
the grid. Slow references: scipy's generalised eigensolver, window loops for the guided filter.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
import torch

from selfsight.segment.ncut import (
    MaskCutConfig,
    affinity,
    bipartition,
    edges_touched,
    grid_proximity,
    keep_candidate,
    maskcut,
    second_eigenvector,
)
from selfsight.segment.overlap import mask_iou
from selfsight.segment.refine import guided_filter, upsample_masks

pytestmark = pytest.mark.usefixtures("single_thread_module")  # one thread (conftest.one_thread)


def planted_features(labels: np.ndarray, dim: int = 16, noise: float = 0.05,
                     seed: int = 0) -> torch.Tensor:
    """(dim, h, w) features: patch (i, j) = orthonormal centre of its label + Gaussian noise."""
    generator = torch.Generator().manual_seed(seed)
    centres, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))  # orthonormal rows
    features = centres[torch.from_numpy(labels).long()]  # (h, w, dim)
    features = features + noise * torch.randn(features.shape, generator=generator)
    return features.permute(2, 0, 1)


def two_blobs(size: int = 16) -> np.ndarray:
    labels = np.zeros((size, size), dtype=int)
    labels[2:7, 2:9] = 1
    labels[9:14, 8:14] = 2
    return labels


def ncut_reference(w: np.ndarray) -> np.ndarray:
    """Second-smallest generalised eigenvector of (D - W) x = lambda D x, straight from scipy."""
    degree = np.diag(w.sum(1))
    _, vectors = scipy.linalg.eigh(degree - w, degree)
    return vectors[:, 1]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of one pair of (h, w) masks."""
    return float(mask_iou(a[None], b[None])[0, 0])


def abs_cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(abs(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- normalized cut

def test_affinity_is_binary_thresholded_cosine():
    features = torch.tensor([[[1.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.0, 0.0]]])  # (1, 4, 2)
    w = affinity(features, tau=0.5, eps=1e-3)[0]
    expected = torch.full((4, 4), 1e-3)
    expected[:2, :2] = 1.0
    expected[2, 2] = 1.0  # the zero vector (index 3) is not even similar to itself
    torch.testing.assert_close(w, expected)


def test_second_eigenvector_matches_scipy_generalised_eigh():
    generator = torch.Generator().manual_seed(1)
    w = affinity(torch.randn(3, 40, 8, generator=generator), tau=0.1)  # (3, 40, 40)
    vectors = second_eigenvector(w, method="dense")
    for image in range(3):
        reference = ncut_reference(w[image].double().numpy())
        assert abs_cosine(vectors[image], reference) > 0.9999


def test_second_eigenvector_batched_equals_per_image():
    generator = torch.Generator().manual_seed(2)
    w = affinity(torch.randn(4, 50, 6, generator=generator), tau=0.2)
    batched = second_eigenvector(w)
    for image in range(4):
        alone = second_eigenvector(w[image:image + 1])[0]
        assert abs_cosine(batched[image], alone) > 0.9999


def test_lobpcg_agrees_with_dense_on_a_larger_grid():
    labels = np.zeros((24, 24), dtype=int)  # 576 patches
    labels[4:16, 6:20] = 1
    features = planted_features(labels, noise=0.3).flatten(1).T[None]  # (1, 576, 16)
    w = affinity(features)
    dense = second_eigenvector(w, method="dense")[0]
    lobpcg = second_eigenvector(w, method="lobpcg")[0]
    assert abs_cosine(dense, lobpcg) > 0.999


def test_second_eigenvector_rejects_unknown_method():
    with pytest.raises(ValueError, match="lobpcg"):
        second_eigenvector(torch.ones(1, 4, 4), method="arpack")  # type: ignore[arg-type]


@pytest.mark.parametrize("labels", [
    np.pad(np.ones((6, 7), dtype=int), ((3, 5), (4, 3))),  # one object on a background
    np.where(two_blobs() == 2, 0, two_blobs()),  # one object, other region background
])
def test_bipartition_recovers_planted_object(labels):
    features = planted_features(labels).flatten(1).T[None]
    vector = second_eigenvector(affinity(features))[0]
    component, seed = bipartition(vector, labels.shape)
    assert iou(component, labels == 1) > 0.9
    assert component.flat[seed]


def test_bipartition_with_three_clusters_returns_one_object():
    labels = two_blobs()
    features = planted_features(labels).flatten(1).T[None]
    component, _ = bipartition(second_eigenvector(affinity(features))[0], labels.shape)
    assert max(iou(component, labels == k) for k in (1, 2)) > 0.9


def test_bipartition_keeps_only_the_seed_component():
    vector = torch.zeros(6, 6)
    vector[0:2, 1:3] = 1.0  # a small object
    vector[3:6, 3:6] = 2.0  # a larger one, holding the peak: the seed
    vector[2, 2] = 1.0  # touches the larger one only at a corner
    component, seed = bipartition(vector.flatten(), (6, 6))
    expected = np.zeros((6, 6), dtype=bool)
    expected[3:6, 3:6] = True
    np.testing.assert_array_equal(component, expected)
    assert seed == np.ravel_multi_index((3, 3), (6, 6))


def test_bipartition_uses_four_connectivity():
    vector = torch.zeros(5, 5)
    vector[1, 1] = 2.0  # the seed
    vector[2, 2] = 1.0  # diagonal neighbour only
    component, _ = bipartition(vector.flatten(), (5, 5))
    assert component.sum() == 1 and component[1, 1]


def test_flip_when_three_corners_are_foreground():
    # The border is above the mean and holds the peak |value|, so only the corner rule flips.
    vector = torch.ones(6, 6)
    vector[2:4, 2:4] = -0.5
    vector[0, 3] = 3.0  # mean 0.89: the border stays above it
    component, seed = bipartition(vector.flatten(), (6, 6))
    expected = np.zeros((6, 6), dtype=bool)
    expected[2:4, 2:4] = True
    np.testing.assert_array_equal(component, expected)
    assert expected.flat[seed]


def test_no_flip_with_two_foreground_corners_and_peak_inside():
    vector = -torch.ones(6, 6)
    vector[:, :2] = 1.0  # left strip (2 corners) above the mean, holding the peak
    vector[2, 0] = 5.0
    component, seed = bipartition(vector.flatten(), (6, 6))
    assert component[:, :2].all() and component.sum() == 12
    assert seed == np.ravel_multi_index((2, 0), (6, 6))


def test_flip_when_peak_is_outside_the_foreground():
    vector = torch.ones(6, 6)
    vector[:, :3] = -4.0  # left half below the mean, holding the peak |value|: the object
    vector[0, 5] = vector[5, 5] = 2.0  # only 2 corners foreground before the flip
    component, _ = bipartition(vector.flatten(), (6, 6))
    assert component[:, :3].all() and component.sum() == 18


# ---------------------------------------------------------------- MaskCut

def test_maskcut_finds_planted_objects_as_separate_masks():
    labels = two_blobs()
    batch = torch.stack([planted_features(labels, seed=s) for s in range(3)])  # (3, D, 16, 16)
    for masks in maskcut(batch):
        assert len(masks) == 2
        matched = sorted(max(range(2), key=lambda k: iou(m, labels == k + 1)) for m in masks)
        assert matched == [0, 1]
        for mask in masks:
            assert max(iou(mask, labels == k) for k in (1, 2)) > 0.9


def test_maskcut_masks_are_disjoint_and_shaped():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(5, 24, 10, 12, generator=generator)  # unstructured: stress the rules
    config = MaskCutConfig(n_masks=4, tau=0.1)
    results = maskcut(features, config)
    assert len(results) == 5
    for masks in results:
        assert masks.dtype == bool and masks.shape[1:] == (10, 12) and len(masks) <= 4
        assert (masks.sum(0) <= 1).all()
        assert (masks.mean((1, 2)) > config.min_area).all()


def test_maskcut_min_area_rejects_a_speck():
    labels = np.zeros((12, 12), dtype=int)
    labels[9, 2] = 1  # one patch: 1/144 < 1% of the grid
    features = planted_features(labels)[None]
    assert len(maskcut(features)[0]) == 0
    kept = maskcut(features, MaskCutConfig(min_area=0.0))[0]
    np.testing.assert_array_equal(kept[0], labels == 1)


def test_maskcut_rejects_the_repeat_of_a_found_object():
    # With the object's features zeroed, the next cut isolates those same patches again.
    labels = np.zeros((12, 12), dtype=int)
    labels[3:9, 3:9] = 1
    masks = maskcut(planted_features(labels)[None], MaskCutConfig(n_masks=3))[0]
    assert len(masks) == 1
    assert iou(masks[0], labels == 1) > 0.9


def test_keep_candidate_overlap_and_area_rules():
    previous = np.zeros((10, 10), dtype=bool)
    previous[0:5, 0:10] = True
    candidate = np.zeros((10, 10), dtype=bool)
    candidate[1:7, 0:10] = True  # IoU 40 / 60 with previous
    remainder = candidate & ~previous  # 20 patches
    assert not keep_candidate(candidate, remainder, [previous], MaskCutConfig(max_overlap=0.5))
    assert keep_candidate(candidate, remainder, [previous], MaskCutConfig(max_overlap=0.7))
    assert not keep_candidate(candidate, remainder, [previous],
                              MaskCutConfig(max_overlap=0.7, min_area=0.2))  # exactly 20%
    assert keep_candidate(candidate, remainder, [], MaskCutConfig(max_overlap=0.5))


def test_border_rule_drops_a_corner_blob_and_keeps_the_object():
    labels = np.zeros((12, 12), dtype=int)
    labels[4:9, 4:9] = 1  # the object, clear of every edge
    labels[0:3, 0:3] = 2  # a corner blob of other texture: touches the top and left edges
    features = planted_features(labels)[None]
    found = maskcut(features, MaskCutConfig(n_masks=3))[0]
    assert any(iou(mask, labels == 2) > 0.9 for mask in found)  # CutLER keeps the blob
    kept = maskcut(features, MaskCutConfig(n_masks=3, max_edges=2))[0]
    assert len(kept) >= 1 and not any(iou(mask, labels == 2) > 0.5 for mask in kept)
    assert any(iou(mask, labels == 1) > 0.9 for mask in kept)
    assert [edges_touched(labels == k) for k in (0, 1, 2)] == [4, 0, 2]



def test_mask_iou_of_every_pair_with_empty_masks_at_zero():
    a = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2] = True  # 8 pixels; a[1] is empty
    b = np.zeros((3, 4, 4), dtype=bool)
    b[0, :1] = True  # 4 pixels, inside a[0]
    b[1, 1:3] = True  # 8 pixels, 4 shared with a[0]; b[2] is empty
    np.testing.assert_array_equal(mask_iou(a, b), [[4 / 8, 4 / 12, 0.0], [0.0, 0.0, 0.0]])
    assert iou(a[0], b[1]) == 4 / 12

# ---------------------------------------------------------------- refinement

def box_mean_loop(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the in-image part of each (2r+1)^2 window, by explicit loops."""
    height, width = x.shape
    out = np.empty_like(x)
    for i, j in itertools.product(range(height), range(width)):
        out[i, j] = x[max(i - radius, 0):i + radius + 1, max(j - radius, 0):j + radius + 1].mean()
    return out


def guided_filter_loop(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s filter by definition: per window, ridge fit src ≈ a * guide + b by lstsq."""
    height, width = guide.shape
    slope, offset = np.empty_like(guide), np.empty_like(guide)
    for i, j in itertools.product(range(height), range(width)):
        window = np.s_[max(i - radius, 0):i + radius + 1, max(j - radius, 0):j + radius + 1]
        g, p = guide[window].ravel(), src[window].ravel()
        # minimise sum((a g + b - p)^2 + eps a^2): one extra row sqrt(n eps) * a = 0
        design = np.vstack([np.stack([g, np.ones_like(g)], 1), [np.sqrt(len(g) * eps), 0.0]])
        (slope[i, j], offset[i, j]), *_ = np.linalg.lstsq(design, np.append(p, 0.0), rcond=None)
    return box_mean_loop(slope, radius) * guide + box_mean_loop(offset, radius)


def test_guided_filter_with_constant_guide_is_a_box_mean():
    rng = np.random.default_rng(0)
    src = rng.random((9, 11))
    guide = np.full_like(src, 0.3)
    out = guided_filter(torch.from_numpy(guide)[None, None], torch.from_numpy(src)[None, None],
                        radius=2, eps=1e-2)[0, 0].numpy()
    np.testing.assert_allclose(out, box_mean_loop(box_mean_loop(src, 2), 2), atol=1e-10)


@pytest.mark.parametrize("radius", [1, 3])
def test_guided_filter_matches_windowed_ridge_fit(radius):
    rng = np.random.default_rng(radius)
    guide, src = rng.random((8, 10)), rng.random((8, 10))
    out = guided_filter(torch.from_numpy(guide)[None, None], torch.from_numpy(src)[None, None],
                        radius=radius, eps=0.05)[0, 0].numpy()
    np.testing.assert_allclose(out, guided_filter_loop(guide, src, radius, 0.05), atol=1e-8)


def square_scene(size: int = 64, patch: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image with a bright square whose edges lie mid-patch, its pixel mask, its patch mask."""
    truth = np.zeros((size, size), dtype=bool)
    truth[19:45, 19:45] = True  # edges 3 px into a patch
    rng = np.random.default_rng(0)
    image = np.where(truth, 200, 50) + rng.integers(-5, 6, truth.shape)
    grid = size // patch
    coverage = truth.reshape(grid, patch, grid, patch).mean((1, 3))
    return image.astype(np.uint8), truth, coverage > 0.5


def test_refinement_snaps_a_blocky_mask_to_the_image_edge():
    image, truth, patch_mask = square_scene()
    coarse = upsample_masks(patch_mask[None], (64, 64), refine=False)[0]
    refined = upsample_masks(patch_mask[None], (64, 64), image=image, radius=8)[0]
    assert iou(refined, truth) > iou(coarse, truth) + 0.1
    assert iou(refined, truth) > 0.9
    colour = np.repeat(image[..., None], 3, axis=2)
    np.testing.assert_array_equal(
        upsample_masks(patch_mask[None], (64, 64), image=colour, radius=8)[0], refined)


def test_upsample_masks_shape_and_disjointness():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 6, 5)) > 0.4  # overlapping on purpose
    image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    for kwargs in ({"refine": False}, {"image": image}):
        pixels = upsample_masks(masks, (48, 40), **kwargs)
        assert pixels.shape == (3, 48, 40) and pixels.dtype == bool
        assert (pixels.sum(0) <= 1).all()
        assert pixels.any()
    assert upsample_masks(np.zeros((0, 6, 5), dtype=bool), (48, 40)).shape == (0, 48, 40)


def test_recursive_split_separates_touching_objects():
    labels = np.zeros((16, 16), dtype=int)
    labels[4:12, 2:8] = 1
    labels[4:12, 8:14] = 2  # touching side by side: one connected foreground
    features = planted_features(labels)[None]
    merged = maskcut(features, MaskCutConfig(n_masks=1))[0][0]
    assert iou(merged, labels > 0) > 0.9  # a single cut keeps both together
    split = maskcut(features, MaskCutConfig(n_masks=1, split_ncut=0.5))[0][0]
    assert max(iou(split, labels == k) for k in (1, 2)) > 0.9
    # One object's own patches are one clique: it is not split further.
    single = np.where(labels == 2, 0, labels)
    whole = maskcut(planted_features(single)[None], MaskCutConfig(n_masks=1, split_ncut=0.5))
    assert iou(whole[0][0], single == 1) > 0.9


def test_grid_proximity_matches_pairwise_distances():
    grid = (3, 4)
    cells = [(r, c) for r in range(3) for c in range(4)]
    expected = np.array([[np.exp(-((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (2 * 1.5 ** 2))
                          for b in cells] for a in cells])
    np.testing.assert_allclose(grid_proximity(grid, 1.5).numpy(), expected, rtol=1e-6)


def twins(size: int = 16) -> np.ndarray:
    """Two 6x6 objects of the same kind joined by a 2-cell neck: one region of equal features."""
    labels = np.zeros((size, size), dtype=int)
    labels[3:9, 1:7] = 1
    labels[7:13, 9:15] = 2
    labels[7:9, 7:9] = 1  # the neck: a narrow bridge that belongs to the first
    return labels


def test_spatial_split_separates_twins_with_equal_features():
    labels = twins()
    features = planted_features(np.minimum(labels, 1))[None]  # twins look the same
    config = MaskCutConfig(n_masks=3, exclude_found=True, split_ncut=0.45)
    merged = maskcut(features, config)[0]  # the feature graph alone cannot tell them apart
    assert max(iou(m, labels > 0) for m in merged) > 0.9
    split = maskcut(features, replace(config, split_sigma=0.1))[0]
    for k in (1, 2):
        assert max(iou(m, labels == k) for m in split) > 0.8
    # A single compact object is not cut in two by the proximity weights.
    single = np.zeros((16, 16), dtype=int)
    single[4:11, 4:11] = 1
    whole = maskcut(planted_features(single)[None], replace(config, split_sigma=0.1))[0]
    assert iou(whole[0], single == 1) > 0.9
    for bad in (replace(config, split_sigma=0.0), replace(config, split_ncut=None,
                                                         split_sigma=0.1)):
        with pytest.raises(ValueError, match="split_sigma"):
            maskcut(features, bad)


def test_centering_removes_a_shared_component():
    labels = two_blobs()
    shared = 3 * torch.ones(16, 1, 1)  # every patch far along one direction: cosines near 1
    features = (planted_features(labels) + shared)[None]
    assert (affinity(features.flatten(2).transpose(1, 2)) == 1).all()  # a complete graph
    uncentred = maskcut(features, MaskCutConfig(n_masks=2))[0]
    assert not any(iou(m, labels == 1) > 0.9 for m in uncentred)
    found = maskcut(features, MaskCutConfig(n_masks=2, center=True))[0]
    for k in (1, 2):
        assert max(iou(m, labels == k) for m in found) > 0.9


def test_bipartition_never_returns_unavailable_patches():
    labels = two_blobs()
    vector = torch.from_numpy(np.where(labels > 0, 1.0, -0.2).reshape(-1))
    available = labels != 1  # blob 1 was found before
    component, seed = bipartition(vector, labels.shape, available)
    assert not (component & ~available).any()
    assert iou(component, labels == 2) > 0.9 and available.flat[seed]
