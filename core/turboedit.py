"""TurboEdit (Wu et al., ECCV 2024) on a few-step x0-predicting sampler: inversion and edit replay.

The few-step sampler (DMD2/LCM loop, VE form): x̂0_k = G(x_k, σ_k); x_{k+1} = x̂0_k + σ_{k+1}·ε_{k+1};
the output is the last x̂0 (flow models: x_{k+1} = (1 − σ_{k+1})·x̂0_k + σ_{k+1}·ε_{k+1}, ``flow_renoise``). An
*inversion* is the set of noises {ε_k} (plus a residual δ added to
the output) that makes this loop reproduce a given latent; an *edit* replays the same noises with
another prompt, keeping x̂0 equal to the source trajectory outside a mask (docs/methods.md §4).

Two ways to get the noises:
- ``exact`` (edit-friendly, Huberman-Spiegelglas et al. 2024): fix states x_k = z + σ_k·ñ_k with
  independent ñ_k, then ε_{k+1} = (x_{k+1} − x̂0_k)/σ_{k+1} and δ = z − x̂0_{N−1}: replaying with the
  source prompt gives z back exactly. No weights.
- ``encoder`` (TurboEdit): a network predicts ε_k from (z, x̂0_{k−1}, t_k, c); 2N network passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from tqdm.auto import trange

from .blend import blend_known
from .samplers import Renoise, flow_renoise, ve_renoise  # noqa: F401 (flow_renoise: TurboEdit's flow form)

EncoderFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def solve_noise(renoise: Renoise, sigma: torch.Tensor, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The ε with renoise(σ, ε, x0) = x; ε's coefficient is σ both in VE form (x0 + σ·ε) and in rectified flow."""
    return (x - renoise(sigma, torch.zeros_like(x), x0)) / sigma


@dataclass
class Trajectory:
    """One inverted few-step trajectory in model space (VE form).

    ``start`` is x_0; ``noises[k]`` (k ≥ 1) re-noises x̂0_{k−1} to σ_k; ``residual`` is added to the
    last x̂0; ``x0s[k]`` is the source x̂0 at step k (what an edit keeps outside its mask).
    """

    sigmas: torch.Tensor
    start: torch.Tensor
    noises: list[torch.Tensor] = field(default_factory=list)
    x0s: list[torch.Tensor] = field(default_factory=list)
    residual: Optional[torch.Tensor] = None
    source: Optional[torch.Tensor] = None
    renoise: Renoise = ve_renoise  # how a step re-noises x̂0 (VE form, or flow_renoise for flow models)

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def to(self, device, dtype=None) -> "Trajectory":
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype or t.dtype)

        return Trajectory(self.sigmas.to(device), move(self.start), [move(n) for n in self.noises],
                          [move(x) for x in self.x0s], move(self.residual), move(self.source), self.renoise)


def _check_sigmas(sigmas: torch.Tensor) -> None:
    if len(sigmas) < 2 or float(sigmas[-1]) != 0.0 or bool((sigmas[:-1] <= 0).any()):
        raise ValueError("sigmas: an inversion needs a schedule of positive sigmas ending in 0")


@torch.no_grad()
def invert_exact(model, source: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                 *, generator: Optional[torch.Generator] = None, disable: Optional[bool] = None,
                 callback=None, renoise: Renoise = ve_renoise) -> Trajectory:
    """Edit-friendly exact inversion: states x_k = renoise(σ_k, ñ_k, z) (z + σ_k·ñ_k in VE form, (1 − σ_k)·z +
    σ_k·ñ_k for flow models), noises solved from the sampler's update."""
    _check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    generator = generator or torch.Generator(device="cpu").manual_seed(int(extra_args.get("seed") or 0))

    def fresh() -> torch.Tensor:
        return torch.randn(source.shape, generator=generator, dtype=torch.float32).to(source)

    s_in = source.new_ones([source.shape[0]])
    states = [renoise(sigmas[k], fresh(), source) for k in range(len(sigmas) - 1)]
    traj = Trajectory(sigmas, states[0], [torch.zeros_like(source)], renoise=renoise)
    for k in trange(len(sigmas) - 1, disable=disable):
        x0 = model(states[k], sigmas[k] * s_in, **extra_args)
        traj.x0s.append(x0)
        if callback is not None:
            callback({"x": states[k], "i": k, "sigma": sigmas[k], "sigma_hat": sigmas[k], "denoised": x0})
        if k + 1 < len(states):
            traj.noises.append(solve_noise(renoise, sigmas[k + 1], states[k + 1], x0))
    traj.residual = source - traj.x0s[-1]
    traj.source = source
    return traj


@torch.no_grad()
def invert_with_encoder(model, encoder: EncoderFn, source: torch.Tensor, sigmas: torch.Tensor,
                        extra_args: Optional[dict] = None, *, exact_residual: bool = False,
                        disable: Optional[bool] = None, callback=None) -> Trajectory:
    """TurboEdit iterative inversion: ε_k = E(z, x̂0_{k−1}, t_k) (x̂0_{−1} = 0), then one G step; 2N passes.

    ``encoder`` returns unit-variance noise; step 0 starts from x_0 = ε_0·√(1+σ0²) (VP x_T = ε_0).
    With ``exact_residual`` the last x̂0's error is stored so the replay reproduces ``source``.
    """
    _check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    s_in = source.new_ones([source.shape[0]])
    previous = torch.zeros_like(source)
    traj: Optional[Trajectory] = None
    x = None
    for k in trange(len(sigmas) - 1, disable=disable):
        eps = encoder(source, previous, sigmas[k] * s_in)
        if k == 0:
            x = eps * torch.sqrt(1.0 + sigmas[0] ** 2)
            traj = Trajectory(sigmas, x, [torch.zeros_like(source)])
        else:
            x = previous + sigmas[k] * eps
            traj.noises.append(eps)
        previous = model(x, sigmas[k] * s_in, **extra_args)
        traj.x0s.append(previous)
        if callback is not None:
            callback({"x": x, "i": k, "sigma": sigmas[k], "sigma_hat": sigmas[k], "denoised": previous})
    traj.residual = source - previous if exact_residual else torch.zeros_like(source)
    traj.source = source
    return traj


@torch.no_grad()
def sample_replay(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None, callback=None,
                  disable: Optional[bool] = None, *, trajectory: Trajectory, mask: Optional[torch.Tensor] = None,
                  mask_at: Optional[Callable[[int, torch.Tensor], Optional[torch.Tensor]]] = None) -> torch.Tensor:
    """Replay an inverted trajectory (TurboEdit edit): same noises, the prompt in ``extra_args``.

    Outside ``mask`` (m = 0) x̂0 is the source trajectory's at every step, so the result equals the
    source there; ``mask_at(k, x̂0)`` may supply the mask lazily (e.g. from step-0 attention).
    ``x`` is ignored in favour of the trajectory's start (k-diffusion signature kept for ComfyUI).
    """
    extra_args = {} if extra_args is None else extra_args
    if len(sigmas) != len(trajectory.sigmas) or not torch.allclose(
            sigmas.float().cpu(), trajectory.sigmas.float().cpu(), rtol=1e-4, atol=1e-6):
        raise ValueError(f"sigmas: {len(sigmas) - 1} steps {sigmas.tolist()} do not match the inversion's "
                         f"{trajectory.steps} steps {trajectory.sigmas.tolist()}")
    traj = trajectory.to(x.device, x.dtype)
    s_in = x.new_ones([x.shape[0]])
    x = traj.start
    edited = x
    for k in trange(len(sigmas) - 1, disable=disable):
        edited = model(x, sigmas[k] * s_in, **extra_args)
        if mask is None and mask_at is not None:
            mask = mask_at(k, edited)
        x0 = edited if mask is None else blend_known(edited, traj.x0s[k], mask)
        if callback is not None:
            callback({"x": x, "i": k, "sigma": sigmas[k], "sigma_hat": sigmas[k], "denoised": x0})
        if k + 1 < len(sigmas) - 1:
            x = traj.renoise(sigmas[k + 1], traj.noises[k + 1], x0)
    if mask is None:
        return x0 + traj.residual
    # The last step blends with the source itself, not its reconstruction x̂0_{N−1}: with the exact inversion
    # (residual = z − x̂0_{N−1}) this is the same output, and with the encoder's (no residual) the edit meets
    # the source continuously at a soft mask's edge instead of jumping by the reconstruction error.
    kept = traj.source if traj.source is not None else traj.x0s[-1] + traj.residual
    return blend_known(edited + traj.residual, kept, mask)


@torch.no_grad()
def invert_ddim(model, source: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                disable: Optional[bool] = None) -> torch.Tensor:
    """Deterministic DDIM inversion (Song et al. 2021, Eq. 13 run backwards), the multi-step baseline.

    ``sigmas`` descend to 0 as for sampling; the walk goes up from the smallest positive σ:
    x_{i+1} = x̂0(x_i) + σ_{i+1}·(x_i − x̂0(x_i))/σ_i, starting at x = source. Returns x at σ_0.
    """
    extra_args = {} if extra_args is None else extra_args
    up = torch.flip(sigmas[sigmas > 0], [0])
    s_in = source.new_ones([source.shape[0]])
    x = source
    for i in trange(len(up) - 1, disable=disable):
        x0 = model(x, up[i] * s_in, **extra_args)
        x = x0 + up[i + 1] * (x - x0) / up[i]
    return x


def encoder_step(eps_fn, source: torch.Tensor, previous: torch.Tensor, t: torch.Tensor,
                 **cond) -> tuple[torch.Tensor, torch.Tensor]:
    """The TurboEdit encoder: UNet on cat[z, x̂0_{k−1}] (2C channels) at t_k → (μ, log σ²), each C channels."""
    out = eps_fn(torch.cat([source, previous], dim=1), t, **cond)
    mean, logvar = out.chunk(2, dim=1)
    return mean, logvar.clamp(-10.0, 4.0)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per element, averaged (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """ε = μ + exp(½ log σ²)·n, n ~ N(0, I) (the encoder's sampled noise)."""
    n = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean)
    return mean + torch.exp(0.5 * logvar) * n
