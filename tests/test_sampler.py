"""core.samplers.sample_fewstep_blended end to end on a tiny random diffusers UNet and VAE."""
import pytest
import torch

from core.blend import clear_hole
from core.composite import exact_composite
from core.denoiser import EpsDenoiser
from core.masks import mask_for_latent
from core.samplers import sample_fewstep_blended
from core.schedules import fewstep_sigmas, trailing_timesteps

from .support.tiny_models import astronaut, decode, encode, tiny_unet, tiny_vae, unet_eps_fn


class CountingDenoiser:
    """Wraps a denoiser, counting calls and recording each input."""

    def __init__(self, inner):
        self.inner, self.inputs = inner, []

    def __call__(self, x, sigma, **kw):
        self.inputs.append(x.clone())
        return self.inner(x, sigma, **kw)


@pytest.fixture(scope="module")
def setup():
    unet, vae = tiny_unet(), tiny_vae()
    image = astronaut(128)
    context = torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(3))
    denoiser = EpsDenoiser(unet_eps_fn(unet, context))
    pixel_mask = torch.zeros(1, 128, 128)
    pixel_mask[:, 40:90, 30:100] = 1
    source = encode(vae, image)
    return dict(unet=unet, vae=vae, image=image, denoiser=denoiser, pixel_mask=pixel_mask, source=source)


def start_latent(source, sigmas, seed=0, hole_mask=None):
    noise = torch.randn(source.shape, generator=torch.Generator().manual_seed(seed))
    base = source if hole_mask is None else clear_hole(source, hole_mask)
    return base + noise * torch.sqrt(1 + sigmas[0] ** 2)


def run(setup, mask, steps=4, seed=0, **opts):
    sigmas = fewstep_sigmas(trailing_timesteps(steps), setup["denoiser"].sigma_table)
    model = CountingDenoiser(setup["denoiser"])
    x = start_latent(setup["source"], sigmas, seed)
    out = sample_fewstep_blended(model, x, sigmas, {"seed": seed}, disable=True,
                                 source=setup["source"], mask=mask, **opts)
    return out, model, sigmas


def test_known_region_of_final_latent_equals_source(setup):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    out, model, _ = run(setup, mask)
    known = (mask == 0).expand_as(out)
    hole = (mask == 1).expand_as(out)
    assert known.any() and hole.any()
    assert torch.equal(out[known], setup["source"][known])
    assert not torch.allclose(out[hole], setup["source"][hole])
    assert torch.isfinite(out).all()
    assert len(model.inputs) == 4


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_step_counts(setup, steps):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    out, model, _ = run(setup, mask, steps=steps)
    assert len(model.inputs) == steps
    assert torch.equal(out[(mask == 0).expand_as(out)], setup["source"][(mask == 0).expand_as(out)])


def test_known_region_is_renoised_with_fresh_noise_each_step(setup):
    """Model inputs after step 0 hold source + σ·ε_fresh in the known region (no second blend)."""
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    _, model, sigmas = run(setup, mask)
    known = (mask == 0).expand_as(setup["source"])
    first_noise = (model.inputs[0] - setup["source"]) / torch.sqrt(1 + sigmas[0] ** 2)
    for i in (1, 2, 3):
        eps = (model.inputs[i] - setup["source"]) / sigmas[i]
        assert abs(float(eps[known].std()) - 1) < 0.1
        corr = torch.corrcoef(torch.stack([eps[known], first_noise[known]]))[0, 1]
        assert abs(float(corr)) < 0.1


def test_full_mask_equals_unmasked_sampling(setup):
    full = torch.ones(1, 1, *setup["source"].shape[-2:])
    masked, _, _ = run(setup, full)
    plain, _, _ = run(setup, None)
    assert torch.equal(masked, plain)


def test_empty_mask_returns_source_without_model_calls(setup):
    empty = torch.zeros(1, 1, *setup["source"].shape[-2:])
    out, model, _ = run(setup, empty)
    assert torch.equal(out, setup["source"]) and out is not setup["source"]
    assert model.inputs == []


def test_soft_mask_keeps_exact_zeros_and_blends_edges(setup):
    soft = setup["pixel_mask"].clone()
    soft[:, 40:90, 30:100] = 0.6
    mask = mask_for_latent(soft, setup["source"].shape)
    out, _, _ = run(setup, mask)
    known = (mask == 0).expand_as(out)
    assert torch.equal(out[known], setup["source"][known])


def test_seed_controls_the_hole(setup):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    a, _, _ = run(setup, mask, seed=1)
    b, _, _ = run(setup, mask, seed=1)
    c, _, _ = run(setup, mask, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_fn_reshapes_mask_per_step(setup):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    seen = []

    def mask_fn(sigma, m, sigmas):
        seen.append(float(sigma[0]))
        return torch.zeros_like(m)  # keep everything: every step pastes the source

    out, _, sigmas = run(setup, mask, mask_fn=mask_fn)
    assert seen == pytest.approx([float(s) for s in sigmas[:-1]])
    assert torch.equal(out, setup["source"])


def test_stopping_early_leaves_known_region_noised_not_pasted(setup):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    sigmas = fewstep_sigmas(trailing_timesteps(4), setup["denoiser"].sigma_table)[:3]  # stop at σ(499)
    x = start_latent(setup["source"], sigmas)
    out = sample_fewstep_blended(setup["denoiser"], x, sigmas, {"seed": 0}, disable=True,
                                 source=setup["source"], mask=mask)
    known = (mask == 0).expand_as(out)
    eps = (out - setup["source"]) / sigmas[-1]
    assert abs(float(eps[known].std()) - 1) < 0.1


def test_callback_gets_every_step(setup):
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    steps = []
    run(setup, mask, callback=lambda d: steps.append((d["i"], d["denoised"].shape)))
    assert [i for i, _ in steps] == [0, 1, 2, 3]


def test_mask_without_source_is_an_error(setup):
    with pytest.raises(ValueError, match="source latent"):
        sample_fewstep_blended(setup["denoiser"], setup["source"], torch.tensor([1.0, 0.0]),
                               mask=torch.ones(1, 1, 16, 16))


def test_pipeline_image_to_composite_keeps_unmasked_pixels(setup):
    """Image → VAE → blended 4-step sampling → VAE → exact composite: unmasked pixels are the input's."""
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    out, _, _ = run(setup, mask)
    generated = decode(setup["vae"], out)
    composite, used = exact_composite(setup["image"], generated, setup["pixel_mask"], feather_px=4)
    keep = (setup["pixel_mask"] == 0)
    assert torch.equal(composite[keep], setup["image"][keep])
    assert not torch.equal(composite[~keep], setup["image"][~keep])


def test_known_noise_reuses_the_given_noise_in_the_known_region(setup):
    """InverFill re-noises the background with its inverted noise; the hole keeps fresh noise."""
    mask = mask_for_latent(setup["pixel_mask"], setup["source"].shape)
    known = torch.randn(setup["source"].shape, generator=torch.Generator().manual_seed(9))
    _, model, sigmas = run(setup, mask, known_noise=known)
    keep, hole = (mask == 0).expand_as(known), (mask == 1).expand_as(known)
    for i in (1, 2, 3):
        eps = (model.inputs[i] - setup["source"]) / sigmas[i]
        torch.testing.assert_close(eps[keep], known[keep], atol=1e-4, rtol=1e-4)
        assert abs(float(torch.corrcoef(torch.stack([eps[hole], known[hole]]))[0, 1])) < 0.2
