"""InverFill (Vu et al., CVPR 2026) in latent space: inversion pass, one-step generator, losses, exact start.

Conventions (docs/methods.md §0.1; the method: §1): latents are in model space (VAE latent × scale); noises are VP-unit
(x_T = ε at t = 999). ``eps_fn(x, t, **cond)`` is any ε-prediction UNet forward: the trainer
passes a diffusers UNet, the ComfyUI node ComfyUI's own; the maths here is shared by both.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .blend import reblend_noise
from .schedules import x0_from_eps

INVERSION_TIMESTEP = 500
GENERATOR_TIMESTEP = 999
FLOW_INVERSION_TIME = 0.5  # flow DiTs (FLUX): t = σ ∈ [0, 1]; 0.5 is the UNet's t = 500
EpsFn = Callable[..., torch.Tensor]


def timesteps_like(x: torch.Tensor, t: int) -> torch.Tensor:
    """A (B,) timestep tensor on x's device."""
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


def invert(eps_fn: EpsFn, masked_latent: torch.Tensor, **cond) -> torch.Tensor:
    """F_θ(z0^m, t=500, c) → ẑ_T: the start noise aligned with the masked image (InverFill Sec. 3.1)."""
    return eps_fn(masked_latent, timesteps_like(masked_latent, INVERSION_TIMESTEP), **cond)


def one_step_generate(eps_fn: EpsFn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, **cond) -> torch.Tensor:
    """The one-step generator G: x̂0 from VP noise x_T in a single UNet pass at t = 999."""
    eps = eps_fn(x_T, timesteps_like(x_T, GENERATOR_TIMESTEP), **cond)
    return x0_from_eps(x_T, eps, float(alphas_cumprod[GENERATOR_TIMESTEP]))


def invert_flow(velocity_fn: EpsFn, masked_latent: torch.Tensor, **cond) -> torch.Tensor:
    """F_θ on a flow DiT (docs/methods.md §1.6): its noise estimate ε̂ = x + (1 − t)·v̂(x, t) at t = 0.5 for the masked
    latent, so F initialised from the generator starts from the generator's own noise prediction."""
    t = torch.full((masked_latent.shape[0],), FLOW_INVERSION_TIME, device=masked_latent.device)
    return masked_latent + (1 - FLOW_INVERSION_TIME) * velocity_fn(masked_latent, t, **cond)


def one_step_generate_flow(velocity_fn: EpsFn, x_1: torch.Tensor, **cond) -> torch.Tensor:
    """The one-step generator G of a flow DiT: x̂0 = x_1 − v̂(x_1, 1) from pure noise x_1 (σ = 1)."""
    t = torch.ones((x_1.shape[0],), device=x_1.device)
    return x_1 - velocity_fn(x_1, t, **cond)


def black_out(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked image F sees: pixels in [0, 1] times (1 − m), i.e. the hole is black (InverFill Sec. 3.1)."""
    return image * (1.0 - mask)


def known_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known region (m = 0, soft weights 1 − m) of latents (B,C,h,w)."""
    keep = (1.0 - mask).expand_as(pred)
    return ((pred - target) ** 2 * keep).sum() / keep.sum().clamp_min(1.0)


def moment_loss(z: torch.Tensor) -> torch.Tensor:
    """InverFill Eq. 9: |mean(z)| + |√mean(z²) − 1| per sample, averaged over the batch."""
    flat = z.flatten(1)
    mean = flat.mean(1)
    rms = flat.pow(2).mean(1).clamp_min(1e-12).sqrt()
    return (mean.abs() + (rms - 1.0).abs()).mean()


def blended_start(inverted: torch.Tensor, fresh: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ẑ_T^blend = m⊙ε′ + (1−m)⊙ẑ_T with unit-variance soft edges (Re-Blend, InverFill Sec. 3.2)."""
    return reblend_noise(inverted, fresh, mask)


def sampler_noise_for_start(vp_start: torch.Tensor, latent: torch.Tensor, sigma0: float,
                            max_denoise: bool, regenerate: torch.Tensor | None = None) -> torch.Tensor:
    """The NOISE a k-diffusion sampler must receive so that its start latent is exactly ``vp_start``.

    ComfyUI starts from x = n·√(1+σ0²) + z (σ0 at the schedule's top, "max denoise") or
    x = n·σ0 + z, with z the sampler's latent. InverFill wants x = ẑ·√(1+σ0²) (VP x_T = ẑ), so
    n = ẑ − z/√(1+σ0²), or n = (ẑ·√(1+σ0²) − z)/σ0.

    ``regenerate`` is the sampler's denoise mask (1 = regenerated). Where it is 0 a masked sampler
    re-noises the known region as z + σ·n before every model call (ComfyUI's KSamplerX0Inpaint, and
    FewStep Blended Sampler with known_noise = start), so there n = ẑ itself: InverFill's background
    re-noise z + σ·ẑ_T^blend (Sec. 3.3). Soft values interpolate between the two.
    """
    scale = math.sqrt(1.0 + sigma0 * sigma0)
    if max_denoise:
        compensated = vp_start - latent / scale
    else:
        compensated = (vp_start * scale - latent) / sigma0
    if regenerate is None:
        return compensated
    return torch.lerp(vp_start, compensated, regenerate.to(vp_start.dtype))


def vp_start_from_sampler_noise(noise: torch.Tensor, latent: torch.Tensor, sigma0: float,
                                max_denoise: bool) -> torch.Tensor:
    """Inverse of :func:`sampler_noise_for_start`: the VP start a sampler builds from ``noise``."""
    scale = math.sqrt(1.0 + sigma0 * sigma0)
    x = noise * (scale if max_denoise else sigma0) + latent
    return x / scale


def flow_sampler_noise_for_start(start: torch.Tensor, latent: torch.Tensor, sigma0: float,
                                 regenerate: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`sampler_noise_for_start` for flow models: ComfyUI starts from x = σ0·n + (1 − σ0)·z, so n =
    (ẑ − (1 − σ0)·z)/σ0 where the sampler regenerates (n = ẑ at σ0 = 1, the top of every flow grid), and n = ẑ
    where it re-noises the known region with the start noise."""
    compensated = (start - (1.0 - sigma0) * latent) / sigma0
    if regenerate is None:
        return compensated
    return torch.lerp(start, compensated, regenerate.to(start.dtype))
