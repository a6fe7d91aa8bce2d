"""RAD in ComfyUI: a MODEL patch that runs the UNet with a per-pixel timestep map, and the sampler.

Imports ComfyUI; loaded when a RAD node runs. Two wrappers (comfy.patcher_extension), no fork of
the UNet and no monkey-patching:
- APPLY_MODEL: if ``transformer_options[SIGMA_MAP]`` is set, feed the UNet x/√(σ_map²+1) per pixel
  (by calling ComfyUI's own ``_apply_model`` with x′ = x·√(σ_s²+1)/√(σ_map²+1) at a scalar σ_s),
  recover ε̂ and return x − σ_map⊙ε̂; pixels with σ = 0 return x exactly.
- DIFFUSION_MODEL: with a timestep map in ``transformer_options[TIME_MAP]``, walk the UNetModel's
  own modules with the time MLP and every ResBlock's time projection applied per pixel (core.rad);
  keeps ControlNet residuals, block patches and transformer indices as ComfyUI's forward does.

FLUX (a flow DiT, docs/methods.md §3.7): the APPLY_MODEL wrapper in flow form (x as it is, x̂0 = x − σ_map⊙v), a
DIFFUSION_MODEL wrapper that turns the time map into per-token modulation vectors (Flux's own time/vector MLPs, one
vector per distinct token level), and ``dit`` block replacements that call each block with them through the
block's own ``modulation_dims`` (the per-token-range modulation ComfyUI's Flux blocks take for HunyuanVideo). Text
tokens and the final layer keep the hole's level.
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
from ..core.rad import (
    flow_sigma_maps,
    level_runs,
    sample_region_aware,
    sigma_maps,
    spatial_time_embedding,
    time_term,
    timestep_map_from_sigma,
    token_levels,
)
from ..core.samplers import flow_renoise, ve_renoise
from ..core.schedules import fewstep_sigmas
from ..core.weights import MODEL_FAMILIES
from ._api import NO_LORA
from .comfy_networks import model_family
from .comfy_sampler import k_diffusion_callback
from .paths import input_named, load_weight_file
from .schedule import discrete_sigma_table, flow_schedule, is_flow, schedule_timesteps

SIGMA_MAP = "fewstep_rad_sigma_map"
TIME_MAP = "fewstep_rad_time_map"
FLUX_TOKENS = "fewstep_rad_flux_tokens"
WRAPPER_KEY = "fewstep_rad"


def prediction_kind(sampling) -> str:
    """What a model_sampling object predicts, in words for an error message."""
    ms = comfy.model_sampling
    for cls, words in ((ms.CONST, "a flow-matching (CONST) model"), (ms.V_PREDICTION, "a v-prediction model"),
                       (ms.EPS, "an ε-prediction model")):
        if isinstance(sampling, cls):
            return words
    return f"a {type(sampling).__name__} model"


def is_flux(model) -> bool:
    """True for a MODEL whose diffusion model is ComfyUI's FLUX DiT (not a derivative with other blocks)."""
    unet = model.get_model_object("diffusion_model")
    return type(unet).__name__ == "Flux" and type(unet).__module__ == "comfy.ldm.flux.model"


def check_model(model) -> None:
    sampling = model.get_model_object("model_sampling")
    unet = model.get_model_object("diffusion_model")
    if isinstance(sampling, comfy.model_sampling.CONST) and type(unet).__name__ != "UNetModel":
        if not is_flux(model):
            raise ValueError(f"model: the Region-Aware Sampler gives flow models per-token timesteps through FLUX's "
                             f"modulation (FLUX.1-schnell); {type(unet).__name__} modulates every token alike inside "
                             "its blocks, which no MODEL patch can change")
        return
    if not isinstance(sampling, comfy.model_sampling.EPS) or isinstance(
            sampling, (comfy.model_sampling.V_PREDICTION, comfy.model_sampling.CONST)):
        raise ValueError(f"model: the Region-Aware Sampler supports ε-prediction models (SD1.x, SDXL and their "
                         f"Turbo/Lightning/DMD2/LCM variants) and FLUX; this is {prediction_kind(sampling)}")
    if type(unet).__name__ != "UNetModel":
        raise ValueError(f"model: the Region-Aware Sampler needs a UNet model (SD1.x/SD2.x/SDXL), "
                         f"got {type(unet).__name__}")


def patch(model):
    """A clone of ``model`` with the RAD wrappers (inactive unless a σ map is passed)."""
    check_model(model)
    patched = model.clone()
    if is_flux(model):
        patched.add_wrapper_with_key(ext.WrappersMP.APPLY_MODEL, WRAPPER_KEY, flow_apply_model_wrapper)
        patched.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, flux_tokens_wrapper)
        flux = model.get_model_object("diffusion_model")
        for kind, blocks in (("double_block", flux.double_blocks), ("single_block", flux.single_blocks)):
            for i in range(len(blocks)):
                patched.set_model_patch_replace(FluxTokenBlock(kind, i), "dit", kind, i)
        return patched
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


def flow_apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                             **kwargs):
    """Flow form of the σ-map call: the model runs at the hole's σ_s with a per-pixel timestep map; its velocity v =
    (x − x̂0_s)/σ_s gives x̂0 = x − σ_map⊙v per pixel, exactly x where σ = 0."""
    transformer_options = {} if transformer_options is None else transformer_options
    smap = transformer_options.get(SIGMA_MAP)
    if smap is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    sampling = executor.class_obj.model_sampling
    smap = _tile(smap.to(x), x.shape[0])
    sigma_s = smap.flatten(1).amax(1).clamp_min(1e-8)
    options = {**transformer_options, TIME_MAP: sampling.timestep(smap)}
    denoised = executor(x, sigma_s, c_concat, c_crossattn, control, options, **kwargs)
    velocity = (x - denoised) / sigma_s.view(-1, 1, 1, 1)
    return torch.where(smap == 0, x, x - smap * velocity)


def flux_tokens_wrapper(executor, x, timestep, context, y=None, guidance=None, ref_latents=None, control=None,
                        transformer_options=None, **kwargs):
    """FLUX's forward with ``transformer_options[FLUX_TOKENS]``: per batch row, the modulation vectors of the hole's
    level (text tokens) and of every distinct token level, and the token runs at each (``FluxTokenBlock``)."""
    transformer_options = {} if transformer_options is None else transformer_options
    tmap = transformer_options.get(TIME_MAP)
    if tmap is None:
        return executor(x, timestep, context, y, guidance, ref_latents, control, transformer_options, **kwargs)
    if ref_latents is not None:
        raise ValueError("model: the Region-Aware Sampler does not take reference latents (FLUX Kontext)")
    flux = executor.class_obj
    levels = token_levels(_tile(tmap, x.shape[0]), flux.patch_size)
    text = context.shape[1]
    rows = []
    for r in range(x.shape[0]):
        values, runs = level_runs(levels[r])
        times = torch.cat([timestep[r:r + 1].float(), values.to(timestep.device)])
        rows.append({
            "vec": flux_vectors(flux, times, x.dtype, None if y is None else y[r:r + 1],
                                None if guidance is None else guidance[r:r + 1])[None],
            "img": [(s, e, k + 1) for s, e, k in runs],
            "txt": [(0, None, 0)],
            "single": [(0, text, 0)] + [(text + s, text + e, k + 1) for s, e, k in runs],
        })
    options = {**transformer_options, FLUX_TOKENS: {"model": flux, "rows": rows}}
    return executor(x, timestep, context, y, guidance, ref_latents, control, options, **kwargs)


def flux_vectors(flux, times: torch.Tensor, dtype, y=None, guidance=None) -> torch.Tensor:
    """(M, D) modulation inputs of FLUX for M timesteps: its time MLP (+ guidance) + its vector MLP of y, the sum
    ``forward_orig`` forms for one timestep."""
    from comfy.ldm.flux.layers import timestep_embedding

    vec = flux.time_in(timestep_embedding(times, 256).to(dtype))
    if flux.params.guidance_embed and guidance is not None:
        vec = vec + flux.guidance_in(timestep_embedding(guidance.expand(times.shape[0]), 256).to(dtype))
    if y is None:
        y = torch.zeros((1, flux.params.vec_in_dim), device=vec.device, dtype=vec.dtype)
    return vec + flux.vector_in(y[:, :flux.params.vec_in_dim])


class FluxTokenBlock:
    """``dit`` block replacement: with FLUX_TOKENS, each batch row runs the block's own forward with its per-token
    modulation vectors and ``modulation_dims`` (one row at a time: ComfyUI's ranges broadcast over one row);
    otherwise the original block. Holds no module (ModelPatcher.clone deep-copies model_options): the block is
    looked up in the model the call runs."""

    def __init__(self, kind: str, index: int):
        self.kind, self.index = kind, index

    def __call__(self, args: dict, extra: dict) -> dict:
        options = args.get("transformer_options") or {}
        tokens = options.get(FLUX_TOKENS)
        if tokens is None:
            return extra["original_block"](args)
        flux, rows = tokens["model"], tokens["rows"]
        block = (flux.double_blocks if self.kind == "double_block" else flux.single_blocks)[self.index]
        pe, mask = args["pe"], args.get("attn_mask")

        def row(t, r):
            return t if t is None or t.shape[0] == 1 else t[r:r + 1]

        outs = []
        for r, row_tokens in enumerate(rows):
            common = {"vec": row_tokens["vec"].to(args["img"]), "pe": row(pe, r), "attn_mask": row(mask, r),
                      "transformer_options": options}
            if self.kind == "double_block":
                outs.append(block(img=args["img"][r:r + 1], txt=args["txt"][r:r + 1],
                                  modulation_dims_img=row_tokens["img"], modulation_dims_txt=row_tokens["txt"],
                                  **common))
            else:
                outs.append(block(args["img"][r:r + 1], modulation_dims=row_tokens["single"], **common))
        if self.kind == "double_block":
            return {"img": torch.cat([o[0] for o in outs]), "txt": torch.cat([o[1] for o in outs])}
        return {"img": torch.cat(outs)}


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
        renoise = flow_renoise if is_flow(model_wrap.inner_model.model_sampling) else ve_renoise
        return sample_region_aware(model, latent_image, sigmas, {}, k_diffusion_callback(callback, sigmas),
                                   disable_pbar, source=latent_image, maps=maps, noise_sampler=noise_sampler,
                                   renoise=renoise)


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
    if is_flow(patched.get_model_object("model_sampling")):
        sigmas = flow_schedule(patched, steps, "trailing", "")
        maps = flow_sigma_maps(sigmas[:-1].tolist(), m)
    else:
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
