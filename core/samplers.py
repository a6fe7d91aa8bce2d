"""Samplers with the k-diffusion signature ``fn(model, x, sigmas, extra_args, callback, disable, **opts)``.

``model(x, sigma, **extra_args)`` returns the x̂0 prediction (VE form, as in k-diffusion and ComfyUI).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from tqdm.auto import trange

from .blend import blend_known, is_empty_mask, reblend_noise

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Renoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ve_renoise(sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Forward-diffuse a clean sample to σ in VE form: x = x0 + σ·ε (Karras et al. 2022, Eq. 1)."""
    return x0 + sigma * noise


def flow_renoise(sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The rectified-flow state at σ: x = (1 − σ)·x0 + σ·ε (Liu et al. 2023; ComfyUI's CONST noise_scaling)."""
    return (1 - sigma) * x0 + sigma * noise


def seeded_noise_sampler(x: torch.Tensor, seed: Optional[int], *, offset: int = 1) -> NoiseSampler:
    """Fresh N(0, I) draws from a CPU generator seeded with ``seed + offset`` (device independent).

    The offset keeps re-noising draws distinct from a start noise drawn with the same seed.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed((int(seed or 0) + offset) % 2**64)

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device="cpu")
        return noise.to(device=x.device, dtype=x.dtype)

    return sample


@torch.no_grad()
def sample_fewstep_blended(
    model,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: Optional[dict] = None,
    callback=None,
    disable: Optional[bool] = None,
    *,
    source: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    noise_sampler: Optional[NoiseSampler] = None,
    renoise: Renoise = ve_renoise,
    mask_fn: Optional[MaskFn] = None,
    known_noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Blended few-step sampling for x0-predicting distilled models (InverFill Sec. 3.3; BLD at x̂0).

    Each step: x̂0 = model(x, σ_i); x̂0 ← m⊙x̂0 + (1−m)⊙source; x ← renoise(σ_{i+1}, ε_fresh, x̂0).
    With σ_N = 0 the result is the last blended x̂0, and the known region (m = 0) is pasted from
    ``source`` exactly. ``mask_fn(σ·1_B, mask, sigmas)`` may reshape the mask per step (e.g. ComfyUI's
    Differential Diffusion); an empty mask returns ``source`` without calling the model.
    ``known_noise`` (unit variance) re-noises the known region before every model call, the first
    included, as z_src + σ_i·known_noise instead of fresh noise, as InverFill does with its inverted
    noise ẑ_T (Sec. 3.3) and ComfyUI's KSamplerX0Inpaint with the start NOISE; the hole always gets
    fresh noise.
    """
    extra_args = {} if extra_args is None else extra_args
    if mask is not None:
        if source is None:
            raise ValueError("sample_fewstep_blended: a mask needs the source latent")
        if is_empty_mask(mask):
            return source.clone()
    if noise_sampler is None:
        noise_sampler = seeded_noise_sampler(x, extra_args.get("seed"))
    s_in = x.new_ones([x.shape[0]])
    if known_noise is not None and mask is not None and len(sigmas) > 1:
        x = blend_known(x, renoise(sigmas[0], known_noise.to(x), source.to(x)), mask)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if mask is not None:
            step_mask = mask if mask_fn is None else mask_fn(sigmas[i] * s_in, mask, sigmas)
            denoised = blend_known(denoised, source, step_mask)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            eps = noise_sampler(sigmas[i], sigmas[i + 1])
            if known_noise is not None and mask is not None:
                eps = reblend_noise(known_noise.to(eps), eps, mask)
            x = renoise(sigmas[i + 1], eps, denoised)
    if mask is not None and len(sigmas) > 1 and float(sigmas[-1]) == 0.0:
        x = torch.where(mask == 0, source.to(x.dtype), x)
    return x
