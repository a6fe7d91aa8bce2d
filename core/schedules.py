"""Discrete DDPM schedules, flow-matching grids, and the few-step timestep lists distilled models were trained on."""
from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000


def scaled_linear_alphas_cumprod(
    num_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """ᾱ_t of the SD/SDXL "scaled_linear" DDPM schedule (Rombach et al. 2022), float64."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """VE noise level σ_t = √((1 − ᾱ_t)/ᾱ_t) of each discrete timestep (Karras et al. 2022, Eq. 4)."""
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


def _per_sample(alphas_cumprod_t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t of each sample (B,) shaped to broadcast over ``like`` (B, C, …), in its dtype and device."""
    return alphas_cumprod_t.reshape(-1, *([1] * (like.ndim - 1))).to(like)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod_t: torch.Tensor) -> torch.Tensor:
    """The VP forward process x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (Ho et al. 2020, Eq. 4), one ᾱ_t per sample (B,)."""
    a = _per_sample(alphas_cumprod_t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alphas_cumprod_t: torch.Tensor | float) -> torch.Tensor:
    """x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (Ho et al. 2020, Eq. 15; DMD2 ``get_x0_from_noise``); ᾱ_t a float or one per
    sample (B,)."""
    if not torch.is_tensor(alphas_cumprod_t):
        return (x_t - math.sqrt(1.0 - alphas_cumprod_t) * eps) / math.sqrt(alphas_cumprod_t)
    a = _per_sample(alphas_cumprod_t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def trailing_timesteps(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """"trailing" spacing (Lin et al. 2024, Table 2): 4 steps → 999, 749, 499, 249 (DMD2, SDXL-Turbo,
    SDXL-Lightning, Hyper-SD)."""
    _check_steps(steps, num_train_timesteps)
    # numpy.arange(T, 0, -T/N) fills start + i·((start + step) − start); diffusers rounds that, and
    # so do we, so that ties (e.g. 48 steps) land on the same integer.
    delta = (num_train_timesteps - num_train_timesteps / steps) - num_train_timesteps
    return [round(num_train_timesteps + i * delta) - 1 for i in range(steps)]


def lcm_timesteps(
    steps: int, original_steps: int = 50, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> list[int]:
    """LCM skipping-step timesteps (Luo et al. 2023, Sec. 4.3): 4 steps → 999, 759, 499, 259."""
    _check_steps(steps, original_steps)
    k = num_train_timesteps // original_steps
    origin = [(i + 1) * k - 1 for i in reversed(range(original_steps))]
    return [origin[(i * original_steps) // steps] for i in range(steps)]


def _decreasing_integers(text: str, low: int, high: int, where: str) -> list[int]:
    """A user's "999, 749, 499" (commas, semicolons or spaces) as strictly decreasing integers in low..high."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"timesteps: {text!r} is not a comma-separated list of integers") from err
    if not values:
        raise ValueError("timesteps: the list is empty")
    if any(t < low or t > high for t in values):
        raise ValueError(f"timesteps: {where} {low}..{high}, got {values}")
    if any(a <= b for a, b in zip(values, values[1:])):
        raise ValueError(f"timesteps: values must be strictly decreasing, got {values}")
    return values


def parse_timesteps(text: str, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """Parse a user list such as "999, 749, 499, 249" into strictly decreasing integer timesteps."""
    return _decreasing_integers(text, 0, num_train_timesteps - 1, "every value must lie in")


def fewstep_sigmas(timesteps: list[int], sigma_table: torch.Tensor) -> torch.Tensor:
    """SIGMAS for exact discrete timesteps: σ(t_0), …, σ(t_{N−1}), 0 (k-diffusion convention)."""
    if len(timesteps) == 0:
        raise ValueError("timesteps: the list is empty")
    if max(timesteps) >= sigma_table.shape[0] or min(timesteps) < 0:
        raise ValueError(
            f"timesteps {timesteps} fall outside the model's schedule of {sigma_table.shape[0]} steps"
        )
    picked = sigma_table.to(torch.float32)[torch.tensor(timesteps, dtype=torch.long)]
    return torch.cat([picked, picked.new_zeros(1)])


def timestep_from_sigma(sigma: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """Fractional timestep of any-shaped σ by linear interpolation in log σ (k-diffusion's DiscreteSchedule)."""
    log_table = sigma_table.detach().cpu().to(torch.float64).log()
    log_sigma = sigma.detach().cpu().to(torch.float64).clamp_min(float(sigma_table.min())).log()
    flat = log_sigma.reshape(-1)
    high = torch.searchsorted(log_table, flat).clamp(1, log_table.shape[0] - 1)
    low = high - 1
    frac = (flat - log_table[low]) / (log_table[high] - log_table[low])
    t = low.to(torch.float64) + frac.clamp(0.0, 1.0)
    return t.reshape(sigma.shape).to(device=sigma.device, dtype=torch.float32)


FLOW_TIMESTEPS = 1000  # diffusers' flow-matching timesteps are t × 1000 (FlowMatchEulerDiscreteScheduler)


def flow_grid(steps: int) -> list[float]:
    """Unshifted flow times t_k = 1 − k/N, k = 0..N−1: diffusers' FluxPipeline grid linspace(1, 1/N, N), what
    FLUX.1-schnell (1–4 steps, no shift) and Qwen-Image-Lightning (4/8 steps, then its shift 3) sample on."""
    _check_steps(steps, FLOW_TIMESTEPS)
    return [1.0 - k / steps for k in range(steps)]


def parse_flow_timesteps(text: str) -> list[float]:
    """A user list of flow timesteps, "1000, 750, 500, 250" (t × 1000, as diffusers prints them), as times t."""
    values = _decreasing_integers(text, 1, FLOW_TIMESTEPS, "a flow model's timesteps (t × 1000) lie in")
    return [t / FLOW_TIMESTEPS for t in values]


def flow_sigmas(times: list[float], sigma_of_time) -> torch.Tensor:
    """SIGMAS of a flow model at times t_k: σ(t_0), …, σ(t_{N−1}), 0, where ``sigma_of_time`` is the model's own
    shift (σ = t unshifted; SD3's shift·t/(1 + (shift−1)·t), Esser et al. 2024 §5.3.2)."""
    if not times:
        raise ValueError("timesteps: the list is empty")
    picked = torch.tensor([float(sigma_of_time(t)) for t in times], dtype=torch.float32)
    return torch.cat([picked, picked.new_zeros(1)])


def _check_steps(steps: int, limit: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= limit:
        raise ValueError(f"steps must be an integer in 1..{limit}, got {steps!r}")


__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "scaled_linear_alphas_cumprod",
    "sigmas_from_alphas_cumprod",
    "trailing_timesteps",
    "lcm_timesteps",
    "parse_timesteps",
    "fewstep_sigmas",
    "timestep_from_sigma",
    "FLOW_TIMESTEPS",
    "flow_grid",
    "parse_flow_timesteps",
    "flow_sigmas",
]
