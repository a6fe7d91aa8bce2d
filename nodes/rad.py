"""Region-Aware Sampler (RAD, Kim et al., CVPR 2025): per-pixel noise levels in a few-step sampler."""
from __future__ import annotations

from ._api import CATEGORY_INPAINT, NO_LORA, SEED_MAX, finite_floats, io, weight_files


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
                "embedding (FLUX: per-token modulation). Runs without weights, but good fills need a RAD LoRA trained "
                "for the model (python -m trainers.rad; UNets only)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An ε-prediction few-step UNet model (SD1.x, SDXL and variants) or "
                                                "FLUX.1-schnell (per-token times)."),
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
                io.Mask.Input("mask", optional=True,
                              tooltip="1 = regenerate; resized to the latent (soft values kept)."),
                io.Conditioning.Input("negative", optional=True, tooltip="Only used when cfg > 1."),
            ],
            outputs=[io.Latent.Output(tooltip="Known latent pixels are bit-identical to the input.")],
        )

    @classmethod
    @finite_floats
    def execute(cls, model, positive, latent, steps: int, seed: int, cfg: float = 1.0, rad_lora: str = NO_LORA,
                lora_strength: float = 1.0, mask=None, negative=None) -> io.NodeOutput:
        from .comfy_rad import region_aware_sample

        return io.NodeOutput(region_aware_sample(model, positive, latent, steps, seed, cfg, rad_lora, lora_strength,
                                                 mask, negative))

