"""Re-Blend: a NOISE whose hole is fresh seeded Gaussian noise and whose known region is another NOISE."""
from __future__ import annotations

import torch

from ..core.blend import reblend_noise
from ..core.masks import check_finite, mask_for_latent
from ._api import CATEGORY_INPAINT, SEED_MAX, io



class ReBlendNoise:
    """NOISE protocol object (``.seed``, ``generate_noise(latent)``) implementing InverFill Re-Blend.

    ``seed`` stays the wrapped noise's seed, so samplers that seed their own per-step noise from
    it behave as without Re-Blend; ``hole_seed`` seeds the fresh hole noise.
    """

    def __init__(self, inner, mask: torch.Tensor, hole_seed: int):
        self.inner = inner
        self.mask = mask
        self.hole_seed = hole_seed
        self.seed = getattr(inner, "seed", hole_seed)

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        if hasattr(self.inner, "raw_noise") and hasattr(self.inner, "to_sampler_noise"):
            # an exact-start NOISE (Inverse Noise Init): blend its start noise, then let it compensate
            return self.inner.to_sampler_noise(self.raw_noise(input_latent), input_latent)
        return self.raw_noise(input_latent)

    def blend_parts(self, input_latent: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kept, hole noise, mask) of one Re-Blend. Around a NOISE that blends itself (Inverse Noise Init, another
        Re-Blend) the parts merge: its kept noise, blended once against the union of both holes, whose noise is
        this node's inside its mask and the inner one's elsewhere (no soft edge is normalised twice)."""
        import comfy.sample

        inner = self.inner
        parts = inner.blend_parts(input_latent) if hasattr(inner, "blend_parts") else None
        kept = parts[0] if parts is not None else inner.generate_noise(input_latent)
        framed = kept.ndim == 5 and kept.shape[2] == 1  # an image latent with a time axis of 1 (Qwen-Image, Wan VAE)
        if kept.ndim != 4 and not framed:
            raise ValueError("Re-Blend noise: supports image latents (B,C,H,W) or (B,C,1,H,W), got shape "
                             f"{tuple(kept.shape)}")
        check_finite(kept, "Re-Blend noise")
        fresh = comfy.sample.prepare_noise(kept, self.hole_seed, input_latent.get("batch_index"))
        mask = mask_for_latent(self.mask, kept.shape, "Re-Blend mask")
        mask = mask[:, :, None] if framed else mask
        if parts is None:
            return kept, fresh, mask
        _, inner_fresh, inner_mask = parts
        union = torch.maximum(inner_mask.to(mask), mask)
        share = torch.where(union > 0, mask / union.clamp_min(1e-12), torch.zeros_like(mask))
        return kept, reblend_noise(inner_fresh.to(fresh), fresh, share), union

    def raw_noise(self, input_latent: dict) -> torch.Tensor:
        return reblend_noise(*self.blend_parts(input_latent))

    def to_sampler_noise(self, vp_start: torch.Tensor, input_latent: dict) -> torch.Tensor:
        if hasattr(self.inner, "to_sampler_noise"):
            return self.inner.to_sampler_noise(vp_start, input_latent)
        return vp_start


class ReBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepReBlend",
            display_name="Re-Blend",
            category=CATEGORY_INPAINT,
            description=(
                "InverFill Re-Blend: the hole (mask = 1) gets fresh Gaussian noise, the known region keeps the "
                "wrapped noise (RandomNoise, or Inverse Noise Init whose exact start it keeps). Soft mask edges keep "
                "unit variance."
            ),
            inputs=[
                io.Noise.Input("noise", tooltip="The NOISE kept outside the hole, e.g. RandomNoise."),
                io.Mask.Input(
                    "mask",
                    tooltip=(
                        "1 = hole to regenerate, 0 = keep. Resized bilinearly to the latent; a batch of 1 applies to "
                        "every image."
                    ),
                ),
                io.Int.Input(
                    "seed", default=0, min=0, max=SEED_MAX, control_after_generate=True,
                    tooltip="Seed of the fresh noise placed in the hole.",
                ),
            ],
            outputs=[io.Noise.Output(tooltip="NOISE for SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, noise, mask: torch.Tensor, seed: int) -> io.NodeOutput:
        check_finite(mask, "mask")
        return io.NodeOutput(ReBlendNoise(noise, mask, seed))
