"""Exact Composite: paste the generated fill into the original so unmasked pixels stay bit-exact."""
from __future__ import annotations

import torch

from ..core.composite import exact_composite
from ._api import CATEGORY_INPAINT, finite_floats, io


def composite_inputs() -> list:
    """The grow / feather / color_match inputs of Exact Composite, shared with FewStep Stitch."""
    return [
        io.Int.Input(
            "grow", default=0, min=-64, max=64,
            tooltip="Grow (positive) or shrink (negative) the mask by this many pixels before compositing.",
        ),
        io.Int.Input(
            "feather", default=4, min=0, max=64,
            tooltip=(
                "Soften the mask edge inwards by this many pixels; pixels outside the mask are never "
                "changed."
            ),
        ),
        io.Float.Input(
            "color_match", default=1.0, min=0.0, max=1.0, step=0.05,
            tooltip=(
                "Strength of a colour correction of the filled pixels, measured on a ring of unmasked pixels "
                "where both images should agree (fixes VAE/model colour shift). 0 = off."
            ),
        ),
    ]


class ExactComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepExactComposite",
            display_name="Exact Composite",
            category=CATEGORY_INPAINT,
            description=(
                "Composites the generated image into the original: wherever the (grown) mask is 0 the output equals "
                "the original bit for bit. Optional inward feather and colour match of the filled region."
            ),
            inputs=[
                io.Image.Input(
                    "original",
                    tooltip="The image before inpainting; its unmasked pixels are kept exactly.",
                ),
                io.Image.Input(
                    "generated",
                    tooltip=(
                        "The decoded result. A VAE-cropped size (sides cut to multiples of 8) is re-aligned "
                        "automatically."
                    ),
                ),
                io.Mask.Input(
                    "mask",
                    tooltip="1 = filled region, 0 = keep. Same aspect ratio as the original (resized if needed).",
                ),
                *composite_inputs(),
            ],
            outputs=[
                io.Image.Output(tooltip="The composite."),
                io.Mask.Output(display_name="used_mask", tooltip="The mask after grow and feather."),
            ],
        )

    @classmethod
    @finite_floats
    def execute(cls, original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor, grow: int = 0,
                feather: int = 4, color_match: float = 1.0) -> io.NodeOutput:
        image, used = exact_composite(
            original, generated, mask, grow_px=grow, feather_px=feather, color_match=color_match
        )
        return io.NodeOutput(image, used)
