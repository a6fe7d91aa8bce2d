"""Region-Aware Sampler (RAD, Kim et al., CVPR 2025): per-pixel noise levels in a few-step sampler."""
from __future__ import annotations

import torch

from ..core.masks import check_finite, mask_for_latent
from ._api import CATEGORY_INPAINT, finite_floats, io, weight_files

SEED_MAX = 0xFFFFFFFFFFFFFFFF
NO_LORA = "none"


class RegionAwareSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepRegionAwareSampler",
            display_name="Region-Aware Sampler",
            category=CATEGORY_INPAINT,
            description=(
                "RAD: every latent pixel gets its own noise level from the mask (soft masks = per-pixel strength). "
                "Known pixels are never noised and come out exactly as they went in; the UNet sees a per-pixel time "
                "embedding. Runs without weights, but good fills need a RAD LoRA trained for the model "
                "(python -m trainers.rad)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An ε-prediction few-step UNet model (SD1.x, SDXL and variants)."),
                io.Conditioning.Input("positive", tooltip="Prompt for the filled region."),
                io.Latent.Input("latent", tooltip="The image latent; its noise_mask is the hole unless mask is given."),
                io.Int.Input("steps", default=4, min=1, max=50,
                             tooltip="Steps on the distilled grid (trailing: 4 → 999/749/499/249)."),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                             tooltip="Seed of the noise in the hole."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance; few-step models want 1 (negative is then unused)."),
                io.Combo.Input("rad_lora", options=[NO_LORA] + weight_files("rad"), default=NO_LORA,
                               tooltip="RAD LoRA + time layers from models/fewstep/rad. 'none' runs the untuned model "
                                       "with per-pixel noise levels: it works, but quality needs the LoRA."),
                io.Float.Input("lora_strength", default=1.0, min=-2.0, max=2.0, step=0.05,
                               tooltip="Strength of the RAD LoRA."),
                io.Mask.Input("mask", optional=True, tooltip="1 = regenerate; resized to the latent (soft values kept)."),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg > 1."),
            ],
            outputs=[io.Latent.Output(tooltip="Known latent pixels are bit-identical to the input.")],
        )

    @classmethod
    @finite_floats
    def execute(cls, model, positive, latent, steps: int, seed: int, cfg: float = 1.0, rad_lora: str = NO_LORA,
                lora_strength: float = 1.0, mask=None, negative=None) -> io.NodeOutput:
        import comfy.sample
        import comfy.utils
        import latent_preview

        from ..core.rad import sigma_maps
        from ..core.schedules import fewstep_sigmas
        from .comfy_rad import RegionAwareSampler as Sampler, patch
        from .schedule import discrete_sigma_table, schedule_timesteps

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
        out = comfy.sample.sample_custom(patched, torch.zeros_like(samples), cfg, Sampler(maps, seed), sigmas, positive,
                                         negative if negative is not None else positive, samples, callback=callback,
                                         disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        keep = (m == 0).expand_as(samples)
        out = torch.where(keep, samples, out.to(samples))  # undo float rounding of ComfyUI's latent scaling only
        return io.NodeOutput({**latent, "samples": out})


def apply_rad_lora(model, name: str, strength: float):
    """Load a RAD weight file (kohya LoRA + time-layer diffs) through ComfyUI's LoRA machinery."""
    import comfy.sd

    from .comfy_networks import model_family
    from .paths import input_named, load_weight_file

    with input_named("rad_lora"):
        state_dict, metadata = load_weight_file("rad", name)
    trained, family = metadata.get("base_family"), model_family(model)
    if trained in ("sd15", "sd21", "sdxl") and trained != family:
        raise ValueError(f"rad_lora: {name} was trained for a {trained} base but the MODEL is {family}")
    patched, _ = comfy.sd.load_lora_for_models(model, None, state_dict, strength, 0)
    return patched
