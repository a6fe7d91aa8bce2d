"""Text encoding, classifier-free guidance and the samplers the world's build and benchmark use.

The few-step student samples with core's own sampler (``core.samplers.sample_fewstep_blended``, what the
FewStep Blended Sampler node runs); the multi-step teacher with deterministic Euler (DDIM in VE form,
Karras et al. 2022, Alg. 1 with no churn), which is what ComfyUI's ``euler`` sampler does.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from core.denoiser import EpsDenoiser
from core.samplers import sample_fewstep_blended, seeded_noise_sampler
from core.schedules import fewstep_sigmas, scaled_linear_alphas_cumprod, sigmas_from_alphas_cumprod, trailing_timesteps

SIGMA_TABLE = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod()).to(torch.float32)


def grid_sigmas(steps: int) -> torch.Tensor:
    """SIGMAS of the trailing grid (4 steps: t = 999, 749, 499, 249, then 0)."""
    return fewstep_sigmas(trailing_timesteps(steps), SIGMA_TABLE)


def encode_text(text_encoder, tokenizer, captions: list[str], device="cpu") -> torch.Tensor:
    """Per-token hidden states (B, MAX_TOKENS, width) of the CLIP text encoder (SD's conditioning)."""
    ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    return text_encoder(ids)[0]


def unet_denoiser(unet) -> EpsDenoiser:
    """``model(x, σ, encoder_hidden_states=…) -> x̂0`` of an ε-prediction diffusers UNet (core's wrapper around
    the trainers' own ε function)."""
    from trainers.common.base_model import unet_eps_fn

    return EpsDenoiser(unet_eps_fn(unet))


def guided(denoiser: Callable, cond: torch.Tensor, uncond: Optional[torch.Tensor], scale: float) -> Callable:
    """Classifier-free guidance (Ho & Salimans 2022) on x̂0: uncond + s·(cond − uncond), one batched call."""
    if uncond is None or scale == 1.0:
        return lambda x, sigma, **kw: denoiser(x, sigma, encoder_hidden_states=cond)

    def model(x, sigma, **kw):
        both = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]),
                        encoder_hidden_states=torch.cat([cond, uncond.expand_as(cond)]))
        c, u = both.chunk(2)
        return u + scale * (c - u)

    return model


def start_noise(shape, seed: int, sigma0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit noise, start x = √(1+σ0²)·noise): ComfyUI's full-denoise start (noise_scaling, max_denoise)."""
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed)))
    return noise, noise * torch.sqrt(1.0 + sigma0**2)


@torch.no_grad()
def sample_euler(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, record: tuple[int, ...] = (),
                 step_fn: Optional[Callable] = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Deterministic Euler / DDIM: x ← x + (σ_{i+1} − σ_i)·(x − x̂0)/σ_i; returns x(σ_N) and the states at
    step indices ``record``. ``step_fn(i, x) -> x`` may edit the state before each model call (inpaint blends)."""
    states = {}
    s_in = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        if step_fn is not None:
            x = step_fn(i, x)
        if i in record:
            states[i] = x.clone()
        denoised = model(x, sigmas[i] * s_in)
        if step_fn is not None and hasattr(step_fn, "blend"):
            denoised = step_fn.blend(denoised)
        x = denoised if sigmas[i + 1] == 0 else x + (sigmas[i + 1] - sigmas[i]) * (x - denoised) / sigmas[i]
    return x, states


@torch.no_grad()
def sample_student(model: Callable, shape, seed: int, steps: int) -> torch.Tensor:
    """Text-to-image with the few-step student: core's few-step sampler on the trailing grid, no mask."""
    sigmas = grid_sigmas(steps)
    _, x = start_noise(shape, seed, sigmas[0])
    return sample_fewstep_blended(model, x, sigmas, {}, disable=True, noise_sampler=seeded_noise_sampler(x, seed))


@torch.no_grad()
def sample_teacher(model: Callable, shape, seed: int, steps: int = 50) -> torch.Tensor:
    sigmas = grid_sigmas(steps)
    _, x = start_noise(shape, seed, sigmas[0])
    return sample_euler(model, x, sigmas)[0]
