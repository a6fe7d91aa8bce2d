"""RAD in ComfyUI: a MODEL patch that runs the UNet with a per-pixel timestep map, and the sampler.

Imports ComfyUI; loaded when a RAD node runs. Two wrappers (comfy.patcher_extension), no fork of
the UNet and no monkey-patching:
- APPLY_MODEL: if ``transformer_options[SIGMA_MAP]`` is set, feed the UNet x/√(σ_map²+1) per pixel
  (by calling ComfyUI's own ``_apply_model`` with x′ = x·√(σ_s²+1)/√(σ_map²+1) at a scalar σ_s),
  recover ε̂ and return x − σ_map⊙ε̂; pixels with σ = 0 return x exactly.
- DIFFUSION_MODEL: with a timestep map in ``transformer_options[TIME_MAP]``, walk the UNetModel's
  own modules with the time MLP and every ResBlock's time projection applied per pixel (core.rad);
  keeps ControlNet residuals, block patches and transformer indices as ComfyUI's forward does.
"""
from __future__ import annotations

import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension as ext
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.utils
import latent_preview
import torch
from comfy.ldm.modules.diffusionmodules.openaimodel import (
    ResBlock,
    VideoResBlock,
    apply_control,
    forward_timestep_embed,
)

from ..core.masks import check_finite, mask_for_latent
from ..core.rad import sample_region_aware, sigma_maps, spatial_time_embedding, time_term, timestep_map_from_sigma
from ..core.schedules import fewstep_sigmas
from ..core.weights import MODEL_FAMILIES
from ._api import NO_LORA
from .comfy_networks import model_family
from .comfy_sampler import k_diffusion_callback
from .paths import input_named, load_weight_file
from .schedule import discrete_sigma_table, schedule_timesteps

SIGMA_MAP = "fewstep_rad_sigma_map"
TIME_MAP = "fewstep_rad_time_map"
WRAPPER_KEY = "fewstep_rad"


def prediction_kind(sampling) -> str:
    """What a model_sampling object predicts, in words for an error message."""
    ms = comfy.model_sampling
    for cls, words in ((ms.CONST, "a flow-matching (CONST) model"), (ms.V_PREDICTION, "a v-prediction model"),
                       (ms.EPS, "an ε-prediction model")):
        if isinstance(sampling, cls):
            return words
    return f"a {type(sampling).__name__} model"


def check_model(model) -> None:
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.EPS) or isinstance(
            sampling, (comfy.model_sampling.V_PREDICTION, comfy.model_sampling.CONST)):
        raise ValueError(f"model: the Region-Aware Sampler supports ε-prediction models (SD1.x, SDXL and their "
                         f"Turbo/Lightning/DMD2/LCM variants); this is {prediction_kind(sampling)}")
    unet = model.get_model_object("diffusion_model")
    if type(unet).__name__ != "UNetModel":
        raise ValueError(f"model: the Region-Aware Sampler needs a UNet model (SD1.x/SD2.x/SDXL), "
                         f"got {type(unet).__name__}")


def patch(model):
    """A clone of ``model`` with the two RAD wrappers (inactive unless a σ map is passed)."""
    check_model(model)
    patched = model.clone()
    patched.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, WRAPPER_KEY, apply_model_wrapper)
    patched.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, diffusion_model_wrapper)
    return patched


def _tile(t: torch.Tensor, batch: int) -> torch.Tensor:
    return t if t.shape[0] == batch else t.repeat(batch // t.shape[0], *([1] * (t.ndim - 1)))


def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                        **kwargs):
    transformer_options = {} if transformer_options is None else transformer_options
    smap = transformer_options.get(SIGMA_MAP)
    if smap is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    base_model = executor.class_obj
    smap = _tile(smap.to(x), x.shape[0])
    sigma_s = smap.flatten(1).amax(1).clamp_min(1e-8)  # (B,) the hole's level
    s = sigma_s.view(-1, 1, 1, 1)
    x_scaled = x * torch.sqrt(s**2 + 1) / torch.sqrt(smap**2 + 1)
    options = dict(transformer_options)
    options[TIME_MAP] = timestep_map_from_sigma(smap, base_model.model_sampling.sigmas).to(x.device)
    denoised = executor(x_scaled, sigma_s, c_concat, c_crossattn, control, options, **kwargs)
    eps = (x_scaled - denoised) / s
    return torch.where(smap == 0, x, x - smap * eps)


def diffusion_model_wrapper(executor, x, timesteps=None, context=None, y=None, control=None,
                            transformer_options=None, **kwargs):
    transformer_options = {} if transformer_options is None else transformer_options
    tmap = transformer_options.get(TIME_MAP)
    if tmap is None:
        return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
    return spatial_forward(executor.class_obj, x, _tile(tmap, x.shape[0]), context, y, control,
                           transformer_options, timesteps=timesteps, **kwargs)


def resblock_spatial(block: ResBlock, x: torch.Tensor, emb_map: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ResBlock with its time projection applied per pixel (modules called, weights untouched)."""
    if block.updown or block.use_scale_shift_norm or block.exchange_temb_dims:
        raise ValueError("model: ResBlocks with up/down-sampling or scale-shift norm are not supported by RAD")
    h = block.in_layers(x)
    if not block.skip_t_emb:
        h = h + time_term(emb_map, block.emb_layers[0], block.emb_layers[1], h.shape[-2:]).type(h.dtype)
    h = block.out_layers(h)
    return block.skip_connection(x) + h


def _run_layers(seq, h, emb_map, context, transformer_options, output_shape=None):
    for layer in seq:
        if isinstance(layer, ResBlock) and not isinstance(layer, VideoResBlock):
            h = resblock_spatial(layer, h, emb_map)
        else:
            h = forward_timestep_embed([layer], h, None, context, transformer_options, output_shape)
    return h


def spatial_forward(unet, x, tmap, context=None, y=None, control=None, transformer_options=None, timesteps=None,
                    **kwargs):
    """UNetModel forward with per-pixel timesteps (the order of ComfyUI's ``UNetModel._forward``, with the patch
    points of newer builds: ``middle_block_after_patch``, and output patches that may drop the skip)."""
    transformer_options = {} if transformer_options is None else transformer_options
    transformer_options["original_shape"] = list(x.shape)
    transformer_options["transformer_index"] = 0
    patches = transformer_options.get("patches", {})
    emb = spatial_time_embedding(tmap, unet.model_channels, lambda e: unet.time_embed(e.to(x.dtype)))
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)[:, None, None, :]
    hs = []
    h = x
    for i, module in enumerate(unet.input_blocks):
        transformer_options["block"] = ("input", i)
        h = _run_layers(module, h, emb, context, transformer_options)
        h = apply_control(h, control, "input")
        for p in patches.get("input_block_patch", []):
            h = p(h, transformer_options)
        hs.append(h)
        for p in patches.get("input_block_patch_after_skip", []):
            h = p(h, transformer_options)
    transformer_options["block"] = ("middle", 0)
    if unet.middle_block is not None:
        h = _run_layers(unet.middle_block, h, emb, context, transformer_options)
    h = apply_control(h, control, "middle")
    for p in patches.get("middle_block_after_patch", []):  # ComfyUI ≥ 0.3.7x; the embedding here is per pixel
        h = p({"h": h, "x": x, "emb": emb, "context": context, "y": y, "timesteps": timesteps,
               "transformer_options": transformer_options})["h"]
    for i, module in enumerate(unet.output_blocks):
        transformer_options["block"] = ("output", i)
        hsp = apply_control(hs.pop(), control, "output")
        for p in patches.get("output_block_patch", []):
            h, hsp = p(h, hsp, transformer_options)
        if hsp is not None:  # a newer output patch (e.g. SUPIR's) may consume the skip
            h = torch.cat([h, hsp], dim=1)
        output_shape = hs[-1].shape if hs else None
        h = _run_layers(module, h, emb, context, transformer_options, output_shape)
    return unet.out(h.type(x.dtype))


class RegionAwareSampler(comfy.samplers.Sampler):
    """SAMPLER running core.sample_region_aware on a patched model: per-pixel σ maps, no noise_mask."""

    def __init__(self, maps: list[torch.Tensor], seed: int):
        self.maps, self.seed = maps, seed

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        generator = torch.Generator(device="cpu").manual_seed(self.seed % 2**64)

        def noise_sampler(step: int) -> torch.Tensor:
            return torch.randn(latent_image.shape, generator=generator).to(latent_image)

        base_options = extra_args.get("model_options", {})

        def model(x, smap, **kw):
            options = dict(base_options)
            options["transformer_options"] = {**options.get("transformer_options", {}), SIGMA_MAP: smap}
            sigma_s = _tile(smap, x.shape[0]).flatten(1).amax(1)
            return model_wrap(x, sigma_s, model_options=options, seed=extra_args.get("seed"))

        maps = [_tile(m.to(latent_image), latent_image.shape[0]) for m in self.maps]
        return sample_region_aware(model, latent_image, sigmas, {}, k_diffusion_callback(callback, sigmas),
                                   disable_pbar, source=latent_image, maps=maps, noise_sampler=noise_sampler)


def region_aware_sample(model, positive, latent: dict, steps: int, seed: int, cfg: float, rad_lora: str,
                        lora_strength: float, mask=None, negative=None) -> dict:
    """What the Region-Aware Sampler node runs: patch the MODEL (and apply a RAD LoRA), per-pixel σ maps on the
    trailing grid, ComfyUI's ``sample_custom`` with the RAD SAMPLER; known latent pixels come back bit-identical."""
    samples = latent["samples"]
    check_finite(samples, "latent")
    hole = mask if mask is not None else latent.get("noise_mask")
    if hole is None:
        raise ValueError("Region-Aware Sampler: connect mask, or give the latent a noise_mask (Set Latent Noise Mask)")
    m = mask_for_latent(hole, samples.shape, "mask")
    patched = patch(model)
    if rad_lora != NO_LORA:
        patched = apply_rad_lora(patched, rad_lora, lora_strength)
    table = discrete_sigma_table(patched)
    timesteps = schedule_timesteps(steps, "trailing", "", table.shape[0])
    alphas = 1.0 / (1.0 + table.double() ** 2)
    maps = sigma_maps(alphas, timesteps, m)
    sigmas = fewstep_sigmas(timesteps, table)
    callback = latent_preview.prepare_callback(patched, steps)
    out = comfy.sample.sample_custom(patched, torch.zeros_like(samples), cfg, RegionAwareSampler(maps, seed), sigmas,
                                     positive, negative if negative is not None else positive, samples,
                                     callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    keep = (m == 0).expand_as(samples)
    out = torch.where(keep, samples, out.to(samples))  # undo float rounding of ComfyUI's latent scaling only
    return {**latent, "samples": out}


def apply_rad_lora(model, name: str, strength: float):
    """Load a RAD weight file (kohya LoRA + time-layer diffs) through ComfyUI's LoRA machinery."""
    with input_named("rad_lora"):
        state_dict, metadata = load_weight_file("rad", name)
    trained, family = metadata.get("base_family"), model_family(model)
    if trained in MODEL_FAMILIES and trained != family:
        raise ValueError(f"rad_lora: {name} was trained for a {trained} base but the MODEL is {family}")
    patched, _ = comfy.sd.load_lora_for_models(model, None, state_dict, strength, 0)
    return patched
