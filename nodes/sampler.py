"""FewStep Blended Sampler: a SAMPLER for SamplerCustomAdvanced that owns the inpaint blend."""
from __future__ import annotations

from ._api import CATEGORY_SAMPLING, io

HOLE_INIT_OPTIONS = ["source", "noise"]


class FewStepBlendedSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepBlendedSampler",
            display_name="FewStep Blended Sampler",
            category=CATEGORY_SAMPLING,
            description=(
                "Few-step (LCM/DMD2-style) sampler that blends the predicted clean latent with the source outside the "
                "latent's noise_mask every step, re-noises with fresh noise, and pastes the clean source at the end. "
                "It consumes the noise_mask itself, so core's per-step inpaint blend is not applied a second time."
            ),
            inputs=[
                io.Combo.Input(
                    "hole_init", options=HOLE_INIT_OPTIONS, default="source",
                    tooltip=(
                        "source: the hole starts as the noised source (like core; keeps a faint trace of what was there). "
                        "noise: the hole starts from pure noise (better for removing objects)."
                    ),
                ),
            ],
            outputs=[io.Sampler.Output(tooltip="SAMPLER for SamplerCustomAdvanced; give the LATENT a noise_mask.")],
        )

    @classmethod
    def execute(cls, hole_init: str = "source") -> io.NodeOutput:
        from .comfy_sampler import FewStepBlendedKSampler

        return io.NodeOutput(FewStepBlendedKSampler(hole_init))
