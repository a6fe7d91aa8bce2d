"""RAD (Kim et al., CVPR 2025): per-pixel noise levels, in latent space for few-step models.

Paper (docs/methods.md §3.1–3.5): a two-phase element-wise schedule where each pixel's cumulative ā
follows from a soft mask; a per-pixel fractional timestep τ from its noise level; a spatial time
embedding (the UNet's time MLP and every ResBlock's time projection applied per pixel, which equals
the pretrained model for a uniform map); an element-wise posterior step.

Our latent, few-step adaptation (docs/methods.md §3.6, our design): per-pixel
ā_{k,i} = ᾱ_{t_k}^{g(m_i)} with g(m) = log(1 − ν·m)/log(1 − ν) and ν = 1 − ᾱ_{T−1}, on the base
model's own schedule and its few-step grid (999, 749, 499, 249). g(1) = 1 (the hole follows the
schedule), g(0) = 0 (known pixels are clean: ā = 1, σ = 0), soft masks give per-pixel strength.
Known pixels are never noised, so sampling keeps them exactly without any paste-back.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import trange

from .samplers import Renoise, ve_renoise
from .schedules import timestep_from_sigma


# ------------------------------------------------------------------ the paper's two-phase schedule


def two_phase_alphas(t1: int = 1000, t2: int = 1000, beta_start: float = 1e-4,
                     beta_end: float = 0.02) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(ᾱ of phase 1, ᾱ′ of phase 2, ν = 1 − ᾱ_{T1−1}) for the linear-β phases of RAD (docs/methods.md §3.1)."""
    phase1 = torch.cumprod(1 - torch.linspace(beta_start, beta_end, t1, dtype=torch.float64), 0)
    phase2 = torch.cumprod(1 - torch.linspace(beta_start, beta_end, t2, dtype=torch.float64), 0)
    return phase1, phase2, float(1 - phase1[-1])


def strength(mask: torch.Tensor, nu: float) -> torch.Tensor:
    """g(m) = log(1 − ν·m)/log(1 − ν) ∈ [0, 1]: the per-pixel exponent of the schedule (RAD Eq. 7)."""
    return torch.log1p(-nu * mask.clamp(0, 1).double()) / math.log1p(-nu)


def abar_phase1(alpha_cumprod_t: float, mask: torch.Tensor, nu: float) -> torch.Tensor:
    """ā_{t,i} = (1 − ν·m_i)^{log ᾱ_t / log(1−ν)} = ᾱ_t^{g(m_i)}: m = 1 → ᾱ_t, m = 0 → 1 (clean)."""
    return torch.pow(torch.as_tensor(alpha_cumprod_t, dtype=torch.float64), strength(mask, nu))


def abar_phase2(alpha_cumprod_phase2_t: float, mask: torch.Tensor, nu: float) -> torch.Tensor:
    """Phase 2 (training only): ā = ((1−ν)/(1−ν·m))^{log ᾱ′_t/log(1−ν)}·(1 − ν·m); m = 1 → 1 − ν, m = 0 → ᾱ′_t."""
    m = mask.clamp(0, 1).double()
    exponent = math.log(alpha_cumprod_phase2_t) / math.log1p(-nu)
    return torch.pow((1 - nu) / (1 - nu * m), exponent) * (1 - nu * m)


def timestep_map(abar: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Per-pixel fractional timestep τ of a noise level on the base schedule (docs/methods.md §3.2; σ = 0 → τ = 0)."""
    sigma = ((1 - abar) / abar).clamp_min(0).sqrt()
    table = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()
    return timestep_map_from_sigma(sigma, table)


def timestep_map_from_sigma(sigma_map: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """τ of a per-pixel σ map on a discrete σ table (the trainer's and the node's one definition): linear in
    log σ between the table's timesteps, so soft masks get fractional timesteps; σ = 0 → τ = 0."""
    tau = timestep_from_sigma(sigma_map.float(), sigma_table.float())
    return torch.where(sigma_map <= 0, torch.zeros_like(tau), tau)


def posterior_step(x_t: torch.Tensor, x0: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
                   noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Element-wise DDPM posterior sample (docs/methods.md §3.5, fixed-small variance); β_cur = 0 pixels do not move."""
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    denom = (1 - abar_t).clamp_min(1e-12)
    mean = abar_prev.sqrt() * beta / denom * x0 + alpha.sqrt() * (1 - abar_prev) / denom * x_t
    mean = torch.where(1 - abar_t <= 0, x_t, mean)
    if noise is None:
        return mean
    var = beta * (1 - abar_prev) / denom
    return mean + var.clamp_min(0).sqrt() * noise


# ------------------------------------------------------------------ latent few-step adaptation


def nu_of(alphas_cumprod: torch.Tensor) -> float:
    """ν = 1 − ᾱ_{T−1} of a base schedule (the noise level a fully masked pixel reaches)."""
    return float(1 - alphas_cumprod[-1])


def sigma_map(alphas_cumprod: torch.Tensor, t: int, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel VE noise level σ_i = √((1 − ā_i)/ā_i) with ā_i = ᾱ_t^{g(m_i)}; exactly 0 where m = 0."""
    abar = abar_phase1(float(alphas_cumprod[t]), mask, nu_of(alphas_cumprod))
    sigma = ((1 - abar) / abar).clamp_min(0).sqrt().to(torch.float32)
    return torch.where(mask <= 0, torch.zeros_like(sigma), sigma)


def sigma_maps(alphas_cumprod: torch.Tensor, timesteps: list[int], mask: torch.Tensor) -> list[torch.Tensor]:
    """σ maps for every step of a few-step grid, followed by the all-zero final map."""
    maps = [sigma_map(alphas_cumprod, t, mask) for t in timesteps]
    return maps + [torch.zeros_like(maps[0])]


def region_aware_denoise(eps_fn: Callable, x: torch.Tensor, smap: torch.Tensor, sigma_table: torch.Tensor,
                         **cond) -> torch.Tensor:
    """x̂0 = x − σ_map⊙ε̂(x/√(σ_map²+1), τ(σ_map)) per pixel (VE form); exactly x where σ = 0."""
    tau = timestep_from_sigma(smap, sigma_table)
    tau = torch.where(smap == 0, torch.zeros_like(tau), tau)
    eps = eps_fn(x / torch.sqrt(smap**2 + 1), tau, **cond)
    return torch.where(smap == 0, x, x - smap * eps)


def flow_sigma_maps(sigmas: list[float], mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-pixel rectified-flow levels σ_{k,i} = σ_k·m_i for each step of a flow grid, then the all-zero map (our
    choice for flow models, docs/methods.md §3.7: a binary mask gives σ_k in the hole and 0 outside, as on UNets)."""
    m = mask.clamp(0, 1).float()
    return [float(s) * m for s in sigmas] + [torch.zeros_like(m)]


def token_levels(pixel_map: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N) per-token values of a (B,1,h,w) map for a DiT that patchifies p×p (row-major tokens, as Flux's
    rearrange): each token takes its patch's largest value, so a token touching the hole is denoised."""
    return F.max_pool2d(pixel_map.float(), patch, ceil_mode=True).flatten(1)


def level_runs(levels: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """(distinct values, runs) of a (N,) token sequence: each run (start, end, index) is a stretch of tokens at
    ``values[index]`` (ComfyUI's ``modulation_dims`` format)."""
    values, inverse = torch.unique(levels, return_inverse=True)
    cuts = (torch.nonzero(inverse[1:] != inverse[:-1]).flatten() + 1).tolist()
    starts, ends = [0] + cuts, cuts + [levels.shape[0]]
    return values, [(s, e, int(inverse[s])) for s, e in zip(starts, ends)]


@torch.no_grad()
def sample_region_aware(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                        callback=None, disable: Optional[bool] = None, *, source: torch.Tensor,
                        maps: list[torch.Tensor], noise_sampler: Callable,
                        renoise: Renoise = ve_renoise) -> torch.Tensor:
    """Few-step region-aware sampling: x = renoise(σ_map, ε, z), x̂0 = model(x, σ_map), re-noise to the next map.

    ``model(x, sigma_map, **extra_args)`` takes a (B,1,h,w) σ map. ``x`` is ignored: the start is built
    from ``source`` and the first map (known pixels: σ = 0, so they are z exactly at every step).
    ``sigmas`` only sets the step count (the grid's scalar σ, kept for ComfyUI's callbacks). ``renoise`` is
    z + σ·ε (VE form) or (1 − σ)·z + σ·ε (flow models).
    """
    extra_args = {} if extra_args is None else extra_args
    if len(maps) != len(sigmas):
        raise ValueError(f"sigmas: {len(sigmas) - 1} steps but {len(maps) - 1} σ maps")
    maps = [m.to(source) for m in maps]
    x = renoise(maps[0], noise_sampler(0), source)
    x0 = source
    for i in trange(len(maps) - 1, disable=disable):
        if not bool((maps[i] > 0).any()):
            x0 = x
        else:
            x0 = model(x, maps[i], **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": x0})
        x = renoise(maps[i + 1], noise_sampler(i + 1), x0)
    return torch.where(maps[0] == 0, source, x)


# ------------------------------------------------------------------ spatial time embedding


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[cos(t·f), sin(t·f)] with f_j = max_period^(−j/half) for any-shaped t → (..., dim) (DDPM/LDM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def spatial_time_embedding(tmap: torch.Tensor, dim: int, mlp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Time MLP applied per pixel to a (B,1,h,w) timestep map → channels-last (B,h,w,E) (docs/methods.md §3.3).

    The MLP runs once per distinct timestep (a binary mask has two), then the result is looked up per pixel with
    ``F.embedding``, whose CPU backward is deterministic (``emb[inverse]``'s is not with several threads, so the same
    training command gave other weights each run).
    """
    values, inverse = torch.unique(tmap.float(), return_inverse=True)
    emb = mlp(sinusoidal_embedding(values, dim))
    return F.embedding(inverse[:, 0], emb)


def time_term(emb_map: torch.Tensor, act: Callable, linear: Callable, size: tuple[int, int]) -> torch.Tensor:
    """A ResBlock's time projection per pixel: act → bilinear resize to ``size`` → linear → (B,C,h′,w′)."""
    e = act(emb_map).permute(0, 3, 1, 2)
    if tuple(e.shape[-2:]) != tuple(size):
        e = F.interpolate(e, size=size, mode="bilinear", align_corners=False)
    return linear(e.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
