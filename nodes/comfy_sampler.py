"""The SAMPLER object behind FewStep Blended Sampler (imports ComfyUI; loaded when the node runs)."""
from __future__ import annotations

import comfy.samplers
import torch

from ..core.blend import clear_hole
from ..core.masks import check_finite
from ..core.samplers import sample_fewstep_blended
from ._api import HOLE_INITS, KNOWN_NOISES, check_option


def mask_function(model_wrap, model_options: dict):
    """Adapt a MODEL's ``denoise_mask_function`` (e.g. Differential Diffusion) to core's ``mask_fn``."""
    fn = model_options.get("denoise_mask_function")
    if fn is None:
        return None
    return lambda sigma, mask, sigmas: fn(sigma, mask, extra_options={"model": model_wrap, "sigmas": sigmas})


def k_diffusion_callback(callback, sigmas):
    """Adapt ComfyUI's sampler callback ``(step, x0, x, total_steps)`` (previews, progress) to the k-diffusion
    callback of core's samplers (a dict with ``i``, ``denoised``, ``x``); None stays None."""
    if callback is None:
        return None
    total = len(sigmas) - 1
    return lambda d: callback(d["i"], d["denoised"], d["x"], total)


class FewStepBlendedKSampler(comfy.samplers.Sampler):
    """Owns the inpaint blend: consumes ``denoise_mask`` itself so KSamplerX0Inpaint never blends too."""

    def __init__(self, hole_init: str = "source", known_noise: str = "fresh"):
        self.hole_init = check_option("hole_init", hole_init, HOLE_INITS)
        self.known_noise = check_option("known_noise", known_noise, KNOWN_NOISES)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None,
               denoise_mask=None, disable_pbar=False):
        sampling = model_wrap.inner_model.model_sampling
        source = latent_image if latent_image is not None else torch.zeros_like(noise)
        check_finite(source, "latent_image")
        check_finite(noise, "noise")
        if denoise_mask is not None:
            check_finite(denoise_mask, "latent noise_mask")
        start = source
        if denoise_mask is not None and self.hole_init == "noise":
            start = clear_hole(source, denoise_mask)
        max_denoise = self.max_denoise(model_wrap, sigmas)
        x = sampling.noise_scaling(sigmas[0], noise, start, max_denoise)
        known = None
        if self.known_noise == "start" and denoise_mask is not None and len(sigmas) > 1:
            known = noise  # the start NOISE re-noises the known region, as KSamplerX0Inpaint does with it
        samples = sample_fewstep_blended(
            model_wrap, x, sigmas, extra_args, k_diffusion_callback(callback, sigmas), disable_pbar,
            source=source if denoise_mask is not None else None,
            mask=denoise_mask,
            renoise=lambda sigma, eps, x0: sampling.noise_scaling(sigma, eps, x0),
            mask_fn=mask_function(model_wrap, extra_args.get("model_options", {})),
            known_noise=known,
        )
        return sampling.inverse_noise_scaling(sigmas[-1], samples)

