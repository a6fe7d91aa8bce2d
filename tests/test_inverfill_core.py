"""core.inverfill: one-step generator, losses and the exact sampler start."""
import math

import pytest
import torch

from core.inverfill import (
    black_out,
    blended_start,
    invert,
    known_mse,
    moment_loss,
    one_step_generate,
    sampler_noise_for_start,
    vp_start_from_sampler_noise,
    x0_from_eps,
)
from core.schedules import scaled_linear_alphas_cumprod, sigmas_from_alphas_cumprod

ALPHAS = scaled_linear_alphas_cumprod()


def test_x0_from_eps_inverts_forward_diffusion():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    a = float(ALPHAS[749])
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    torch.testing.assert_close(x0_from_eps(x_t, eps, a), x0, atol=1e-5, rtol=1e-5)


def test_one_step_generator_and_inversion_use_fixed_timesteps():
    seen = []

    def eps_fn(x, t, **cond):
        seen.append((t.tolist(), cond))
        return torch.zeros_like(x)

    x = torch.ones(3, 4, 2, 2)
    out = one_step_generate(eps_fn, x, ALPHAS, context="c")
    torch.testing.assert_close(out, x / math.sqrt(float(ALPHAS[999])))
    invert(eps_fn, x, context="c")
    assert seen == [([999] * 3, {"context": "c"}), ([500] * 3, {"context": "c"})]


def test_black_out_and_known_mse():
    img = torch.ones(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert float(black_out(img, mask)[..., :2, :].abs().sum()) == 0
    pred, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    pred[..., :2, :] = 5.0  # errors only in the hole
    assert float(known_mse(pred, target, mask)) == 0.0
    pred[..., 3, 3] = 2.0
    assert float(known_mse(pred, target, mask)) == pytest.approx(4.0 * 2 / 16)


def test_moment_loss_is_small_for_unit_gaussians_and_large_otherwise():
    g = torch.Generator().manual_seed(0)
    assert float(moment_loss(torch.randn(4, 4, 64, 64, generator=g))) < 0.02
    assert float(moment_loss(torch.randn(4, 4, 64, 64, generator=g) * 3 + 1)) > 2.5


def test_moment_loss_has_gradients():
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    moment_loss(z * 2).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_blended_start_hole_is_fresh():
    inv, fresh = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    m = torch.zeros(1, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    out = blended_start(inv, fresh, m)
    assert torch.equal(out[..., 2:6, 2:6], fresh[..., 2:6, 2:6]) and torch.equal(out[..., 0, :], inv[..., 0, :])


@pytest.mark.parametrize("max_denoise", [True, False])
def test_sampler_noise_compensates_the_latent(max_denoise):
    sigma = float(sigmas_from_alphas_cumprod(ALPHAS)[999]) if max_denoise else 4.08
    g = torch.Generator().manual_seed(1)
    vp, latent = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    noise = sampler_noise_for_start(vp, latent, sigma, max_denoise)
    # what ComfyUI's EPS noise_scaling builds from (noise, latent):
    x = noise * (math.sqrt(1 + sigma**2) if max_denoise else sigma) + latent
    torch.testing.assert_close(x / math.sqrt(1 + sigma**2), vp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vp_start_from_sampler_noise(noise, latent, sigma, max_denoise), vp, atol=1e-5, rtol=1e-5)
