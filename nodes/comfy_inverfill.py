"""InverFill inversion networks (the base MODEL's UNet architecture, see comfy_networks) and the NOISE
that starts sampling from them. Imports ComfyUI; loaded when an InverFill node runs."""
from __future__ import annotations

import hashlib

import comfy.sample
import comfy.sampler_helpers
import comfy.utils
import torch

from ..core.blend import is_empty_mask
from ..core.inverfill import (
    black_out,
    blended_start,
    flow_sampler_noise_for_start,
    invert,
    invert_flow,
    sampler_noise_for_start,
)
from ..core.masks import as_b1hw, check_finite, check_mask_range, fit_mask, mask_for_latent, match_batch
from ..core.weights import WeightFileError
from .comfy_networks import FluxNetwork, UNetNetwork, build_flux_network, build_unet_network, first_conditioning
from .schedule import is_flow

FLUX_GUIDANCE = 3.5  # what the trainer feeds a guidance-distilled FLUX (FLUX.1-dev); schnell has no guidance input


class InversionNetwork:
    """F_θ for one MODEL (InverFill): a UNet called at t = 500 on the masked latent, or a FLUX DiT whose noise estimate
    x + (1 − t)·v̂ at t = 0.5 is the start (docs/methods.md §1.6)."""

    def __init__(self, network: UNetNetwork | FluxNetwork):
        self.network = network
        self.patcher, self.metadata = network.patcher, network.metadata
        self.family, self.name = network.family, network.name
        self.masking = network.metadata.get("masking", "pixel")
        self.is_flow = isinstance(network, FluxNetwork)

    def __call__(self, masked_latent: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """ẑ_T for model-space masked latents (B,C,h,w); runs on ComfyUI's device in the model's dtype."""
        with torch.no_grad():
            if self.is_flow:
                guidance = None
                if self.patcher.model.diffusion_model.params.guidance_embed:
                    guidance = torch.full((masked_latent.shape[0],), FLUX_GUIDANCE)
                return invert_flow(lambda x, t: self.network.forward(x, t, context, y, guidance), masked_latent)
            return invert(lambda x, t, context, y: self.network.forward(x, t, context, y), masked_latent,
                          context=context, y=y)

    def adm(self, cond: dict, batch: int, width: int, height: int) -> torch.Tensor | None:
        if self.is_flow:  # FLUX's y is CLIP-L's pooled vector
            pooled = cond.get("pooled_output")
            return None if pooled is None else match_batch(pooled, batch, "positive", target="latent")
        return self.network.adm(cond, batch, width, height)


def check_model(model) -> None:
    """InverFill takes UNets and, among flow models, FLUX (its DiT is the inversion network); others name ``model``."""
    if is_flow(model.get_model_object("model_sampling")) and type(model.model).__name__ not in ("Flux", "FluxSchnell"):
        raise ValueError(f"model: InverFill on flow models takes FLUX (FLUX.1-schnell/-dev); this is "
                         f"{type(model.model).__name__}")


def build_network(model, state_dict: dict, metadata: dict, name: str) -> InversionNetwork:
    """An InverFill network for ``model`` (errors name the file: kind, family, shapes)."""
    check_model(model)
    flux_file = metadata.get("architecture") == "flux" or metadata.get("base_family") == "flux"
    if is_flow(model.get_model_object("model_sampling")):
        return InversionNetwork(build_flux_network(model, state_dict, metadata, name, "inverfill"))
    if flux_file:
        raise WeightFileError(f"{name}: was trained for a flux base but the MODEL is a UNet; load the network "
                              "trained for this model family")
    return InversionNetwork(build_unet_network(model, state_dict, metadata, name, "inverfill"))


class InverseNoise:
    """NOISE whose start latent is exactly ẑ_T^blend = m⊙ε′ + (1−m)⊙F(z0^m) (InverFill Sec. 3).

    ``generate_noise`` compensates for how ComfyUI builds the start (x = n·√(1+σ0²) + z or
    x = n·σ0 + z). ``blend_parts`` / ``to_sampler_noise`` let Re-Blend wrap it, blend once and stay exact.
    """

    def __init__(self, model, network: InversionNetwork, positive, mask: torch.Tensor, seed: int,
                 masked_latent: torch.Tensor | None, sigma0: float | None):
        self.model, self.network, self.positive, self.mask = model, network, positive, mask
        self.seed, self.masked_latent = seed, masked_latent
        sampling = model.get_model_object("model_sampling")
        self.sigma_max = float(sampling.sigma_max)
        self.sigma0 = self.sigma_max if sigma0 is None else sigma0
        self._cache: dict = {}

    def _latent_in(self, samples: torch.Tensor) -> torch.Tensor:
        # SamplerCustomAdvanced scales the latent into model space only when it is not all zeros
        if torch.count_nonzero(samples) == 0:
            return samples
        return self.model.model.process_latent_in(samples)

    def blend_parts(self, input_latent: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ẑ_T, ε′, m) whose Re-Blend is the start (VP units, CPU float32); an empty mask skips the network and
        gives (ε′, ε′, 0). Re-Blend wrapping this NOISE blends with these parts once, not on top of the blend."""
        samples = input_latent["samples"]
        check_finite(samples, "latent")
        fresh = comfy.sample.prepare_noise(samples, self.seed, input_latent.get("batch_index")).float()
        mask = mask_for_latent(self.mask, samples.shape, "Inverse Noise Init mask")
        if is_empty_mask(mask):
            return fresh, fresh, torch.zeros_like(mask)
        key = hashlib.sha1(samples.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
        if key not in self._cache:
            self._cache = {key: self._invert(samples, mask)}
        return self._cache[key], fresh, mask

    def raw_noise(self, input_latent: dict) -> torch.Tensor:
        """ẑ_T^blend (VP units, CPU float32); plain seeded noise when the mask is empty."""
        return blended_start(*self.blend_parts(input_latent))

    def _invert(self, samples: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, (h, w) = samples.shape[0], samples.shape[-2:]
        if self.network.masking == "latent":
            masked = black_out(self._latent_in(samples).float(), mask)
        else:
            masked = self.model.model.process_latent_in(self.masked_latent).float()
            if tuple(masked.shape[-2:]) != (h, w):
                raise ValueError(f"image: encodes to {masked.shape[-1]}×{masked.shape[-2]} latents but the sampled "
                                 f"LATENT is {w}×{h}; use the same image for both")
            masked = match_batch(masked, batch, "image", target="latent")
        context, extra = first_conditioning(self.positive, batch)
        y = self.network.adm(extra, batch, w * 8, h * 8)
        bar = comfy.utils.ProgressBar(1)
        out = self.network(masked, context, y)
        bar.update(1)
        return out

    def to_sampler_noise(self, vp_start: torch.Tensor, input_latent: dict) -> torch.Tensor:
        """The NOISE tensor that makes the sampler start exactly at ``vp_start`` where it regenerates (the LATENT's
        noise mask, as ComfyUI resizes it for the sampler; everywhere without one) and re-noise the known region
        with ``vp_start`` itself."""
        samples = input_latent["samples"]
        latent_in = self._latent_in(samples).float()
        max_denoise = abs(self.sigma0 - self.sigma_max) <= 1e-5 * self.sigma_max or self.sigma0 > self.sigma_max
        regenerate = None
        if input_latent.get("noise_mask") is not None:
            regenerate = comfy.sampler_helpers.prepare_mask(input_latent["noise_mask"], samples.shape, "cpu").float()
        if is_flow(self.model.get_model_object("model_sampling")):  # x = σ0·n + (1 − σ0)·z
            return flow_sampler_noise_for_start(vp_start, latent_in, self.sigma0, regenerate)
        return sampler_noise_for_start(vp_start, latent_in, self.sigma0, max_denoise, regenerate)

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return self.to_sampler_noise(self.raw_noise(input_latent), input_latent)


def encode_masked_image(vae, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """VAE latent (raw, not model space) of the image with its hole blacked out in pixel space."""
    check_finite(image, "image")
    m = fit_mask(check_mask_range(as_b1hw(mask, "mask"), "mask"), (image.shape[1], image.shape[2]), "mask")
    m = match_batch(m, image.shape[0], "mask")
    masked = black_out(image[..., :3], m.permute(0, 2, 3, 1))
    return vae.encode(masked)

