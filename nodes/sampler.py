"""FewStep Blended Sampler: a SAMPLER for SamplerCustomAdvanced that owns the inpaint blend."""
from __future__ import annotations

from ._api import CATEGORY_SAMPLING, HOLE_INITS, KNOWN_NOISES, io


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
                    "hole_init", options=list(HOLE_INITS), default="source",
                    tooltip=(
                        "source: the hole starts as the noised source (like core; keeps a faint trace of what was "
                        "there). noise: the hole starts from pure noise (better for removing objects). With Inverse "
                        "Noise Init keep source: its NOISE already makes the hole pure noise."
                    ),
                ),
                io.Combo.Input(
                    "known_noise", options=list(KNOWN_NOISES), default="fresh", optional=True,
                    tooltip=(
                        "Noise used to re-noise the unmasked region before each step. fresh: new noise each step. "
                        "start: the start NOISE every step (z + σ·n, as core samplers do), as InverFill does with "
                        "Inverse Noise Init."
                    ),
                ),
            ],
            outputs=[io.Sampler.Output(tooltip="SAMPLER for SamplerCustomAdvanced; give the LATENT a noise_mask.")],
        )

    @classmethod
    def execute(cls, hole_init: str = "source", known_noise: str = "fresh") -> io.NodeOutput:
        from .comfy_sampler import FewStepBlendedKSampler

        return io.NodeOutput(FewStepBlendedKSampler(hole_init, known_noise))
