"""The SAMPLER object behind FewStep Blended Sampler (imports ComfyUI; loaded when the node runs)."""
from __future__ import annotations

import comfy.samplers
import torch

from ..core.blend import clear_hole
from ..core.masks import check_finite
from ..core.samplers import sample_fewstep_blended

HOLE_INITS = ("source", "noise")
KNOWN_NOISES = ("fresh", "start")


def mask_function(model_wrap, model_options: dict):
    """Adapt a MODEL's ``denoise_mask_function`` (e.g. Differential Diffusion) to core's ``mask_fn``."""
    fn = model_options.get("denoise_mask_function")
    if fn is None:
        return None
    return lambda sigma, mask, sigmas: fn(sigma, mask, extra_options={"model": model_wrap, "sigmas": sigmas})


class FewStepBlendedKSampler(comfy.samplers.Sampler):
    """Owns the inpaint blend: consumes ``denoise_mask`` itself so KSamplerX0Inpaint never blends too."""

    def __init__(self, hole_init: str = "source", known_noise: str = "fresh"):
        if hole_init not in HOLE_INITS:
            raise ValueError(f"hole_init: {hole_init!r} is not one of {HOLE_INITS}")
        if known_noise not in KNOWN_NOISES:
            raise ValueError(f"known_noise: {known_noise!r} is not one of {KNOWN_NOISES}")
        self.hole_init, self.known_noise = hole_init, known_noise

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
        k_callback = None
        if callback is not None:
            total = len(sigmas) - 1
            k_callback = lambda d: callback(d["i"], d["denoised"], d["x"], total)  # noqa: E731
        samples = sample_fewstep_blended(
            model_wrap, x, sigmas, extra_args, k_callback, disable_pbar,
            source=source if denoise_mask is not None else None,
            mask=denoise_mask,
            renoise=lambda sigma, eps, x0: sampling.noise_scaling(sigma, eps, x0),
            mask_fn=mask_function(model_wrap, extra_args.get("model_options", {})),
            known_noise=known,
        )
        return sampling.inverse_noise_scaling(sigmas[-1], samples)

