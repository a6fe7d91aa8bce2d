"""core.random_masks: reproducible brush, shape and Perlin holes."""
import pytest
import torch

from core.random_masks import brush_mask, perlin_mask, perlin_noise, pixel_mask, random_hole_masks, shape_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("make", [brush_mask, shape_mask, perlin_mask, pixel_mask])
def test_masks_are_binary_nonempty_and_reproducible(make):
    a = make(64, 48, gen(3))
    b = make(64, 48, gen(3))
    assert a.shape == (1, 64, 48) and torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert 0 < float(a.mean()) < 1


def test_shape_mask_area_is_in_range():
    fracs = [float(shape_mask(96, 96, gen(s)).mean()) for s in range(40)]
    assert 0.05 < min(fracs) and max(fracs) < 0.6


def test_perlin_mask_masks_the_drawn_fraction_and_is_spatially_coherent():
    m = perlin_mask(64, 64, gen(1), fraction=(0.3, 0.3))
    assert abs(float(m.mean()) - 0.3) < 0.01
    neighbours_equal = float((m[..., 1:, :] == m[..., :-1, :]).float().mean())
    assert neighbours_equal > 0.8, "Perlin holes are blobs, not salt-and-pepper"


def test_pixel_mask_masks_the_drawn_fraction_as_independent_pixels():
    m = pixel_mask(64, 64, gen(1), fraction=(0.3, 0.3))
    assert float(m.sum()) == round(0.3 * 64 * 64)
    neighbours_equal = float((m[..., 1:, :] == m[..., :-1, :]).float().mean())
    assert abs(neighbours_equal - (0.3 ** 2 + 0.7 ** 2)) < 0.03, "no spatial coherence: salt and pepper"


def test_perlin_noise_scale():
    n = perlin_noise(64, 64, 4, gen(0))
    assert n.shape == (64, 64) and float(n.abs().max()) <= 1.5 and float(n.std()) > 0.05


def test_random_hole_masks_mix_and_validate():
    masks = random_hole_masks(8, 32, 32, gen(0))
    assert masks.shape == (8, 1, 32, 32)
    assert torch.equal(masks, random_hole_masks(8, 32, 32, gen(0)))
    only_perlin = random_hole_masks(2, 32, 32, gen(0), {"perlin": 1.0})
    assert only_perlin.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="unknown"):
        random_hole_masks(1, 8, 8, gen(0), {"lasso": 1.0})
    with pytest.raises(ValueError, match="positive"):
        random_hole_masks(1, 8, 8, gen(0), {"brush": 0.0})
