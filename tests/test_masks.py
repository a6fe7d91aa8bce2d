"""core.masks: shape, batch and size rules for MASK inputs."""
import pytest
import torch

from core.masks import (
    as_b1hw,
    border_band,
    check_finite,
    encode_crop_box,
    feather_inward,
    fit_mask,
    grow,
    mask_for_latent,
    match_batch,
)


@pytest.mark.parametrize("shape", [(8, 6), (2, 8, 6), (2, 1, 8, 6)])
def test_as_b1hw_accepts_mask_layouts(shape):
    out = as_b1hw(torch.zeros(shape))
    assert out.shape[1:] == (1, 8, 6) and out.dtype == torch.float32


@pytest.mark.parametrize("shape", [(8,), (1, 3, 8, 6), (1, 1, 1, 8, 6), (0, 8, 6)])
def test_as_b1hw_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match="my_mask"):
        as_b1hw(torch.zeros(shape), "my_mask")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_check_finite_names_input(bad):
    with pytest.raises(ValueError, match="latent: contains 1 NaN/inf"):
        check_finite(torch.tensor([0.0, float(bad)]), "latent")
    check_finite(torch.tensor([0.0, 1e38]), "latent")  # large but finite passes


def test_match_batch_rules():
    one = torch.rand(1, 1, 4, 4)
    assert match_batch(one, 3, "mask").shape[0] == 3
    two = torch.rand(2, 1, 4, 4)
    cycled = match_batch(two, 4, "mask")
    assert torch.equal(cycled[2], two[0]) and torch.equal(cycled[3], two[1])
    with pytest.raises(ValueError, match="mask: batch of 3 does not fit the image batch of 2"):
        match_batch(torch.rand(3, 1, 4, 4), 2, "mask")
    with pytest.raises(ValueError, match="batch of 2"):
        match_batch(two, 3, "mask")
    with pytest.raises(ValueError, match="the image batch of 6; use a mask batch of 1, 2, 3 or 6 "):
        match_batch(torch.rand(4, 1, 4, 4), 6, "mask")
    with pytest.raises(ValueError, match="the latent batch of 1; give one mask, or repeat the latent 3 times"):
        match_batch(torch.rand(3, 1, 4, 4), 1, "mask", target="latent")


def test_fit_mask_resizes_bilinearly_with_soft_edges():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:44, 20:44] = 1
    out = fit_mask(mask, (8, 8))
    # bilinear, half-pixel centres: latent pixel i samples source 8i + 3.5, the mean of rows 8i+3 and 8i+4,
    # so the box 20:44 gives 0.5 where it covers one of the two (i = 2, 5) and 1 where both (i = 3, 4)
    profile = torch.tensor([0, 0, 0.5, 1, 1, 0.5, 0, 0])
    assert torch.equal(out, torch.outer(profile, profile)[None, None])
    assert ((out > 0) & (out < 1)).any(), "a box not aligned to 8 px gives soft latent edges"


def test_fit_mask_crops_like_the_vae_encoder():
    """A 70×53 image encodes to 8×6 latents from its centred 64×48 crop; the mask must follow."""
    assert encode_crop_box((70, 53), (8, 6)) == (3, 2, 64, 48)
    mask = torch.zeros(1, 1, 70, 53)
    mask[..., 3:67, 2:50] = 1  # exactly the crop region
    assert torch.equal(fit_mask(mask, (8, 6)), torch.ones(1, 1, 8, 6))


def test_fit_mask_rejects_other_aspect_ratio():
    with pytest.raises(ValueError, match=r"mask: 64×32 px \(2:1\) does not match the image's 8×8 px"):
        fit_mask(torch.rand(1, 1, 32, 64), (8, 8))


def test_fit_mask_accepts_same_aspect_other_resolution():
    assert fit_mask(torch.ones(1, 1, 32, 48), (8, 12)).shape == (1, 1, 8, 12)


def test_mask_for_latent_clamps_and_batches():
    mask = torch.full((1, 16, 16), 1.5)
    out = mask_for_latent(mask, torch.Size([3, 4, 2, 2]))
    assert out.shape == (3, 1, 2, 2) and float(out.max()) == 1.0


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_mask_for_latent_rejects_nan_and_inf(bad):
    with pytest.raises(ValueError, match="mask: contains 256 NaN/inf"):
        mask_for_latent(torch.full((1, 16, 16), float(bad)), torch.Size([1, 4, 2, 2]))


def test_grow_and_shrink():
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 4, 4] = 1
    assert int(grow(mask, 2).sum()) == 25
    assert int(grow(grow(mask, 2), -2).sum()) == 1
    assert torch.equal(grow(mask, 0), mask)


def test_feather_inward_never_touches_known_pixels():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    soft = feather_inward(mask, 4)
    assert torch.equal(soft[mask == 0], torch.zeros_like(soft[mask == 0]))
    assert float(soft[0, 0, 16, 16]) == pytest.approx(1.0, abs=1e-4)
    assert 0.3 < float(soft[0, 0, 8, 16]) < 0.8


def test_border_band_is_outside_hole():
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 12:20, 12:20] = 1
    band = border_band(hole, 3, skip=2)
    assert not band[hole > 0].any()
    assert not band[0, 0, 10:22, 10:22][2:10, 2:10].any()
    assert band[0, 0, 9, 16] and not band[0, 0, 11, 16]


def test_constant_masks_fit_any_size():
    """Load Image gives a 64×64 zero mask for pictures without alpha, whatever their size."""
    assert torch.equal(fit_mask(torch.zeros(2, 1, 64, 64), (48, 80)), torch.zeros(2, 1, 48, 80))
    assert torch.equal(fit_mask(torch.ones(1, 1, 64, 64), (8, 30)), torch.ones(1, 1, 8, 30))
