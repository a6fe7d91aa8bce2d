"""VE-form denoiser wrappers shared by samplers, trainers, tests and benchmarks."""
from __future__ import annotations

from typing import Callable

import torch

from .schedules import (
    scaled_linear_alphas_cumprod,
    sigmas_from_alphas_cumprod,
    timestep_from_sigma,
)

EpsFn = Callable[..., torch.Tensor]


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a (B,) tensor broadcasts against (B,C,H,W)."""
    return t.reshape(*t.shape, *([1] * (ndim - t.ndim)))


class EpsDenoiser:
    """Wrap an ε-prediction network as ``model(x, σ) -> x̂0`` (Karras et al. 2022, Table 1, VP→VE).

    ``eps_fn(x_scaled, t, **cond)`` receives the VP-scaled input x/√(σ²+1) and the fractional
    discrete timestep t(σ); the wrapper returns x − σ·ε̂. ``seed`` (sampler metadata in
    ``extra_args``) is accepted and ignored.
    """

    def __init__(self, eps_fn: EpsFn, alphas_cumprod: torch.Tensor | None = None):
        if alphas_cumprod is None:
            alphas_cumprod = scaled_linear_alphas_cumprod()
        self.eps_fn = eps_fn
        self.sigma_table = sigmas_from_alphas_cumprod(alphas_cumprod).to(torch.float32)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, *, seed=None, **cond) -> torch.Tensor:
        sigma = sigma.to(x.dtype)
        c_in = append_dims(1.0 / torch.sqrt(sigma**2 + 1.0), x.ndim)
        t = timestep_from_sigma(sigma, self.sigma_table)
        eps = self.eps_fn(x * c_in, t, **cond)
        return x - append_dims(sigma, x.ndim) * eps
