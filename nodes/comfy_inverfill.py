"""InverFill inversion networks as ComfyUI models, and the NOISE that starts sampling from them.

Imports ComfyUI; loaded when an InverFill node runs. The network is the base MODEL's own UNet
architecture (built from the MODEL's config, in its dtype) wrapped in a ModelPatcher, so ComfyUI
loads and offloads it like any other model.
"""
from __future__ import annotations

import hashlib

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sample
import comfy.supported_models as supported
import comfy.utils
import torch

from ..core.blend import is_empty_mask
from ..core.inverfill import black_out, blended_start, invert, sampler_noise_for_start
from ..core.masks import as_b1hw, check_finite, check_mask_range, fit_mask, mask_for_latent, match_batch
from ..core.weights import WeightFileError

FAMILY_CONFIGS = (("sdxl", supported.SDXL), ("sd21", supported.SD20), ("sd15", supported.SD15))


def model_family(model) -> str:
    """sd15 / sd21 / sdxl of a ComfyUI MODEL, or the config class name for anything else."""
    config = model.model.model_config
    for family, cls in FAMILY_CONFIGS:
        if isinstance(config, cls):
            return family
    return type(config).__name__


def to_ldm_keys(state_dict: dict, unet_config: dict, key_format: str) -> dict:
    """Diffusers UNet keys → ComfyUI's LDM keys with ComfyUI's own map; LDM keys pass through."""
    if key_format == "ldm" or "input_blocks.0.0.weight" in state_dict:
        return dict(state_dict)
    mapping = comfy.utils.unet_to_diffusers(unet_config)
    unknown = [k for k in state_dict if k not in mapping]
    if unknown:
        raise WeightFileError(
            f"{len(unknown)} weights of the network have no place in this MODEL's UNet (e.g. {unknown[:3]}): "
            "it was trained for another architecture"
        )
    return {mapping[k]: v for k, v in state_dict.items()}


def shape_problems(expected: dict, given: dict) -> list[str]:
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    wrong = [f"{k} {tuple(given[k].shape)}≠{tuple(expected[k].shape)}" for k in expected
             if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[:3]})")
    if wrong:
        problems.append(f"{len(wrong)} of another shape (e.g. {wrong[:3]})")
    return problems


class InversionNetwork:
    """F_θ for one MODEL: a ModelPatcher around a UNet of the MODEL's architecture, plus metadata."""

    def __init__(self, patcher, metadata: dict, family: str, name: str):
        self.patcher, self.metadata, self.family, self.name = patcher, metadata, family, name
        self.masking = metadata.get("masking", "pixel")

    @torch.no_grad()
    def __call__(self, masked_latent: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """ẑ_T for model-space masked latents (B,C,h,w); runs on ComfyUI's device in the model's dtype."""
        mm.load_models_gpu([self.patcher])
        net = self.patcher.model
        device = self.patcher.load_device
        dtype = net.manual_cast_dtype or net.get_dtype()

        def eps_fn(x, t, context, y):
            return net.diffusion_model(x.to(device, dtype), t.to(device).float(), context=context.to(device, dtype),
                                       y=None if y is None else y.to(device, dtype))

        out = invert(eps_fn, masked_latent, context=context, y=y)
        mm.throw_exception_if_processing_interrupted()
        return out.float().cpu()

    def adm(self, cond: dict, batch: int, width: int, height: int) -> torch.Tensor | None:
        """SDXL's pooled-text + size vector ``y`` (None for SD1.x/2.x), as ComfyUI builds it."""
        kwargs = {"width": width, "height": height, "target_width": width, "target_height": height, **cond}
        y = self.patcher.model.encode_adm(**kwargs)
        return None if y is None else match_batch(y, batch, "positive", target="latent")


def build_network(model, state_dict: dict, metadata: dict, name: str) -> InversionNetwork:
    """Check family and shapes against ``model`` and build the network (errors name the file)."""
    if metadata.get("kind", "inverfill") != "inverfill":
        raise WeightFileError(f"{name}: is a '{metadata['kind']}' weight, not an InverFill network")
    family, trained = model_family(model), metadata.get("base_family")
    if trained in ("sd15", "sd21", "sdxl") and trained != family:
        raise WeightFileError(f"{name}: was trained for a {trained} base but the MODEL is {family}; "
                              "load the network trained for this model family")
    config = model.model.model_config
    ldm = to_ldm_keys(state_dict, config.unet_config, metadata.get("key_format", "diffusers"))
    net = config.get_model(ldm, "", device=mm.unet_offload_device())
    expected = net.diffusion_model.state_dict()
    problems = shape_problems(expected, ldm)
    if problems:
        raise WeightFileError(f"{name}: does not match the MODEL's UNet ({'; '.join(problems)}); "
                              f"it was trained for another architecture ({trained or 'unknown family'})")
    net.diffusion_model.load_state_dict({k: v.to(expected[k].dtype) for k, v in ldm.items()}, strict=True)
    patcher = comfy.model_patcher.ModelPatcher(net, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return InversionNetwork(patcher, metadata, family, name)


def first_conditioning(positive, batch: int) -> tuple[torch.Tensor, dict]:
    """(context, extra dict) of the first CONDITIONING entry, batch-matched to the latent."""
    if not positive:
        raise ValueError("positive: empty CONDITIONING")
    context, extra = positive[0][0], dict(positive[0][1])
    check_finite(context, "positive")
    return match_batch(context, batch, "positive", target="latent"), extra


class InverseNoise:
    """NOISE whose start latent is exactly ẑ_T^blend = m⊙ε′ + (1−m)⊙F(z0^m) (InverFill Sec. 3).

    ``generate_noise`` compensates for how ComfyUI builds the start (x = n·√(1+σ0²) + z or
    x = n·σ0 + z). ``raw_noise`` / ``to_sampler_noise`` let Re-Blend wrap it and stay exact.
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

    def raw_noise(self, input_latent: dict) -> torch.Tensor:
        """ẑ_T^blend (VP units, CPU float32); plain seeded noise when the mask is empty."""
        samples = input_latent["samples"]
        check_finite(samples, "latent")
        fresh = comfy.sample.prepare_noise(samples, self.seed, input_latent.get("batch_index")).float()
        mask = mask_for_latent(self.mask, samples.shape, "Inverse Noise Init mask")
        if is_empty_mask(mask):
            return fresh
        key = hashlib.sha1(samples.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
        if key not in self._cache:
            self._cache = {key: self._invert(samples, mask)}
        return blended_start(self._cache[key], fresh, mask)

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
        """The NOISE tensor that makes the sampler start exactly at ``vp_start``."""
        latent_in = self._latent_in(input_latent["samples"]).float()
        max_denoise = abs(self.sigma0 - self.sigma_max) <= 1e-5 * self.sigma_max or self.sigma0 > self.sigma_max
        return sampler_noise_for_start(vp_start, latent_in, self.sigma0, max_denoise)

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return self.to_sampler_noise(self.raw_noise(input_latent), input_latent)


def encode_masked_image(vae, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """VAE latent (raw, not model space) of the image with its hole blacked out in pixel space."""
    check_finite(image, "image")
    m = fit_mask(check_mask_range(as_b1hw(mask, "mask"), "mask"), (image.shape[1], image.shape[2]), "mask")
    m = match_batch(m, image.shape[0], "mask")
    masked = black_out(image[..., :3], m.permute(0, 2, 3, 1))
    return vae.encode(masked)

