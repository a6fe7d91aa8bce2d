"""core.composite.exact_composite: bit-exact known region, alignment, batches, bad input."""
import pytest
import torch

from core.composite import align_generated, exact_composite

from .support.tiny_models import astronaut


def _images(h=64, w=64, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, h, w, 3, generator=g), torch.rand(batch, h, w, 3, generator=g)


def _hole(h=64, w=64, batch=1):
    m = torch.zeros(batch, h, w)
    m[:, h // 4: h // 2, w // 4: 3 * w // 4] = 1
    return m


def test_unmasked_pixels_bit_exact_and_hole_is_generated():
    original, generated = _images()
    out, used = exact_composite(original, generated, _hole(), color_match=0.0)
    keep = _hole() == 0
    assert torch.equal(out[keep], original[keep])
    assert torch.equal(out[~keep], generated[~keep])
    assert torch.equal(used, _hole())


def test_grow_and_feather_never_change_pixels_outside_used_mask():
    original, generated = _images()
    out, used = exact_composite(original, generated, _hole(), grow_px=3, feather_px=4, color_match=1.0)
    outside = used == 0
    assert torch.equal(out[outside], original[outside])
    assert int((used > 0).sum()) > int(_hole().sum()), "grow extends the hole"
    assert ((used > 0) & (used < 1)).any(), "feather softens the edge"


def test_vae_cropped_output_is_realigned():
    """70×53 image → VAE crops to 64×48 centred; the composite is 70×53 with exact unmasked pixels."""
    original = torch.rand(1, 70, 53, 3)
    generated = torch.rand(1, 64, 48, 3)
    mask = _hole(70, 53)
    out, _ = exact_composite(original, generated, mask, color_match=0.0)
    assert out.shape == original.shape
    assert torch.equal(out[mask == 0], original[mask == 0])
    assert torch.equal(out[0, 3:67, 2:50][mask[0, 3:67, 2:50] == 1], generated[0][mask[0, 3:67, 2:50] == 1])


def test_align_generated_resizes_same_aspect_and_rejects_others():
    assert align_generated(torch.rand(1, 32, 32, 3), (256, 256)).shape == (1, 256, 256, 3)
    with pytest.raises(ValueError, match="generated: 512×128 cannot be aligned"):
        align_generated(torch.rand(1, 128, 512, 3), (256, 256))


def test_mask_of_other_size_same_aspect_is_resized():
    original, generated = _images(64, 64)
    out, used = exact_composite(original, generated, _hole(32, 32), color_match=0.0)
    assert used.shape == (1, 64, 64)
    assert torch.equal(out[used == 0], original[used == 0])


def test_mask_of_other_aspect_is_an_error():
    original, generated = _images(64, 64)
    with pytest.raises(ValueError, match=r"mask: 64×32 px \(2:1\) does not match the image's 64×64 px \(1:1\); "
                                         r"give a mask"):
        exact_composite(original, generated, _hole(32, 64))


def test_batch_of_images_with_one_mask_and_with_a_batch_of_masks():
    original, generated = _images(batch=3)
    out, used = exact_composite(original, generated, _hole(), color_match=0.0)
    assert out.shape == (3, 64, 64, 3) and used.shape == (3, 64, 64)
    masks = torch.stack([_hole()[0], torch.zeros(64, 64), torch.ones(64, 64)])
    out, _ = exact_composite(original, generated, masks, color_match=0.0)
    assert torch.equal(out[1], original[1]) and torch.equal(out[2], generated[2])


def test_one_original_many_generations():
    original, _ = _images()
    generated = torch.rand(4, 64, 64, 3)
    out, _ = exact_composite(original, generated, _hole(), color_match=0.0)
    assert out.shape[0] == 4
    keep = _hole()[0] == 0
    assert all(torch.equal(out[b][keep], original[0][keep]) for b in range(4))


def test_mask_batch_larger_than_image_batch_is_an_error():
    original, generated = _images(batch=2)
    with pytest.raises(ValueError, match="mask: batch of 3 does not fit the image batch of 2"):
        exact_composite(original, generated, _hole(batch=3))


def test_empty_mask_returns_original_and_full_mask_the_generation():
    original, generated = _images()
    out, _ = exact_composite(original, generated, torch.zeros(1, 64, 64))
    assert torch.equal(out, original)
    out, _ = exact_composite(original, generated, torch.ones(1, 64, 64), color_match=1.0)
    assert torch.equal(out, generated), "no ring of known pixels: colour match is skipped"


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["original", "generated", "mask"])
def test_nan_and_inf_inputs_are_named(name, bad):
    original, generated = _images()
    inputs = {"original": original, "generated": generated, "mask": _hole()}
    inputs[name] = inputs[name].clone()
    inputs[name].view(-1)[5] = float(bad)
    with pytest.raises(ValueError, match=f"{name}: contains 1 NaN/inf"):
        exact_composite(inputs["original"], inputs["generated"], inputs["mask"])


def test_channel_mismatch_and_bad_strength():
    original, generated = _images()
    with pytest.raises(ValueError, match="generated: has 4 channels"):
        exact_composite(original, torch.rand(1, 64, 64, 4), _hole())
    with pytest.raises(ValueError, match="color_match"):
        exact_composite(original, generated, _hole(), color_match=1.5)


def test_color_match_removes_a_tone_shift():
    """A generation with a global tone shift gets its fill corrected from the ring of known pixels."""
    original = astronaut(128)
    shifted = (original * 0.8 + 0.15).clamp(0, 1)  # what a VAE/model colour shift looks like
    mask = torch.zeros(1, 128, 128)
    mask[:, 40:80, 40:90] = 1
    hole = mask[0] == 1
    raw, _ = exact_composite(original, shifted, mask, color_match=0.0)
    fixed, _ = exact_composite(original, shifted, mask, color_match=1.0)
    err_raw = (raw[0][hole] - original[0][hole]).abs().mean()
    err_fixed = (fixed[0][hole] - original[0][hole]).abs().mean()
    assert err_fixed < 0.35 * err_raw
    assert torch.equal(fixed[0][~hole], original[0][~hole])
