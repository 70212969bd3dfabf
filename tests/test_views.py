import torch

from selfsight.views import MultiViewConfig, ViewConfig, ViewPipeline, ops, simclr_views


def images(b=16, c=1, s=28):
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8, generator=gen)


def run(pipe, x, seed):
    return pipe(x, torch.Generator().manual_seed(seed))


def test_views_keep_shapes_and_dtypes():
    for c in (1, 3):
        pipe = ViewPipeline(simclr_views(24), (0.5,) * c, (0.25,) * c)
        views = run(pipe, images(c=c), 0)
        assert len(views) == 2
        for v in views:
            assert v.shape == (16, c, 24, 24) and v.dtype == torch.float32
            assert torch.isfinite(v).all()


def test_views_are_deterministic_under_a_seed_and_differ_across_seeds():
    pipe = ViewPipeline(simclr_views(28), (0.5,) * 3, (0.25,) * 3)
    x = images(c=3)
    a, b, c = run(pipe, x, 7), run(pipe, x, 7), run(pipe, x, 8)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_parameters_are_drawn_per_sample():
    """The same image repeated B times must come out as B different views."""
    x = images(b=1, c=3).repeat(8, 1, 1, 1)
    pipe = ViewPipeline(simclr_views(28), (0.5,) * 3, (0.25,) * 3)
    v = run(pipe, x, 0)[0]
    distinct = {tuple(v[i].flatten()[:50].tolist()) for i in range(8)}
    assert len(distinct) == 8


def test_full_crop_with_certain_flip_is_a_mirror():
    x = images(c=1).float() / 255
    gen = torch.Generator().manual_seed(0)
    out = ops.resized_crop_flip(x, 28, (1.0, 1.0), (1.0, 1.0), 1.0, gen)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)
    out = ops.resized_crop_flip(x, 28, (1.0, 1.0), (1.0, 1.0), 0.0, gen)
    assert torch.allclose(out, x, atol=1e-5)


def test_crop_scale_zooms_in():
    """A crop of 1/4 of the area shows a 2x magnified quarter: a centred square grows."""
    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0
    gen = torch.Generator().manual_seed(0)
    small = ops.resized_crop_flip(x.repeat(64, 1, 1, 1), 32, (0.25, 0.25), (1, 1), 0.0, gen)
    assert small.mean() > x.mean() * 1.5  # the bright square covers more of each view


def test_solarize_grayscale_jitter_and_blur_semantics():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=gen)
    sol = ops.solarize(x, 1.0, gen)
    assert torch.allclose(sol, torch.where(x >= 0.5, 1 - x, x))
    gray = ops.random_grayscale(x, 1.0, gen)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    flat = torch.full((4, 1, 16, 16), 0.3)
    assert torch.allclose(ops.gaussian_blur(flat, (1.0, 2.0), 1.0, gen), flat, atol=1e-5)
    same = ops.color_jitter(x, 0.4, 0.4, 0.4, 0.1, 0.0, gen)  # p = 0: untouched
    assert torch.equal(same, x)
    jit = ops.color_jitter(x[:, :1], 0.4, 0.4, 0.4, 0.1, 1.0, gen)  # grayscale input works
    assert jit.shape == (4, 1, 16, 16) and not torch.equal(jit, x[:, :1])


def test_hue_rotation_keeps_gray_pixels_gray():
    gray = torch.full((2, 3, 4, 4), 0.5)
    out = ops._rotate_hue(gray, torch.tensor([0.5, 2.0]))
    assert torch.allclose(out, gray, atol=1e-5)


def test_multi_crop_sizes():
    cfg = MultiViewConfig(views=[ViewConfig(size=24), ViewConfig(size=12)])
    views = run(ViewPipeline(cfg, (0.5,), (0.25,)), images(), 0)
    assert [v.shape[-1] for v in views] == [24, 12]


def test_rotations_turn_each_image_as_labelled():
    """Against np.rot90 image by image: four_rotations in order 0..3, random_rotations turning
    every view of image i by the same k_i."""
    import numpy as np

    from selfsight.views.ops import four_rotations, random_rotations

    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    turned, labels = four_rotations(x)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for j, k in enumerate(labels.tolist()):
        assert np.array_equal(turned[j].numpy(), np.rot90(x[j % 2].numpy(), k, axes=(1, 2)))
    views = [x.repeat(8, 1, 1, 1), x.repeat(8, 1, 1, 1) + 1000]
    out, k = random_rotations(views, torch.Generator().manual_seed(0))
    assert k.shape == (16,) and set(k.tolist()) == {0, 1, 2, 3}  # all four drawn at this seed
    for view, turned_view in zip(views, out):
        for i in range(16):
            assert np.array_equal(turned_view[i].numpy(),
                                  np.rot90(view[i].numpy(), int(k[i]), axes=(1, 2)))
