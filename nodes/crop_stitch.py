"""FewStep Crop and FewStep Stitch: sample big photos around the mask at the model's own size, paste back exactly."""
from __future__ import annotations

import torch

from ..core.crop_stitch import PADDINGS, REGION_MODES, TARGET_SIZES, StitchPlan, crop_images, plan_crops
from ..core.crop_stitch import stitch as stitch_crops
from ..core.prefill import PREFILLS
from ..core.prefill import prefill as prefill_hole
from ._api import CATEGORY_INPAINT, check_option, finite_floats, io
from .composite import composite_inputs

Stitch = io.Custom("FEWSTEP_STITCH")
MULTIPLES = ("8", "16", "32", "64")


class FewStepCrop(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepCrop",
            display_name="FewStep Crop",
            category=CATEGORY_INPAINT,
            description=(
                "Cuts the area around the mask out of a big photo and resizes it to the model's own size, so a "
                "few-step model samples only that (FewStep Stitch puts it back exactly). Connect the cropped image "
                "and mask wherever the whole image and mask went."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The full-size photo."),
                io.Mask.Input("mask", tooltip="1 = regenerate. Same aspect ratio as the image (resized if needed)."),
                io.Mask.Input(
                    "context_mask", optional=True,
                    tooltip="Optional: an area to show the model (inside the crop) without regenerating it.",
                ),
                io.Int.Input(
                    "context_px", default=32, min=0, max=4096,
                    tooltip="Pixels of the photo around the mask the model sees, on every side.",
                ),
                io.Float.Input(
                    "context_factor", default=1.0, min=1.0, max=8.0, step=0.05,
                    tooltip="Then scale the context box by this factor about its centre (1 = no more).",
                ),
                io.Combo.Input(
                    "target_size", options=list(TARGET_SIZES), default="1024",
                    tooltip=(
                        "The crop's size: about 512², 768² or 1024² pixels with the box's aspect (SD-Turbo and "
                        "SDXL-Turbo 512; DMD2, Lightning, Hyper-SD 1024), 'keep' = the photo's own pixels, "
                        "'custom' = width × height."
                    ),
                ),
                io.Int.Input("width", default=1024, min=8, max=8192, step=8,
                             tooltip="Crop width for target_size = custom."),
                io.Int.Input("height", default=1024, min=8, max=8192, step=8,
                             tooltip="Crop height for target_size = custom."),
                io.Combo.Input(
                    "multiple", options=list(MULTIPLES), default="8",
                    tooltip="Every side of the crop is a multiple of this (8 for SD VAEs; 64 where a model needs it).",
                ),
                io.Combo.Input(
                    "padding", options=list(PADDINGS), default="edge",
                    tooltip="Where the crop reaches past the photo's sides: repeat the edge, or mirror. Padding is "
                            "known (never regenerated) and is dropped by Stitch.",
                ),
                io.Combo.Input(
                    "regions", options=list(REGION_MODES), default="one",
                    tooltip="'one' = one crop around the whole mask; 'separate' = one crop per connected region "
                            "(regions whose crops overlap are merged), sampled as one batch and stitched in one pass.",
                ),
                io.Combo.Input(
                    "prefill", options=list(PREFILLS), default="none",
                    tooltip="What the hole shows the model before sampling: as is, the mean colour, a smooth fill "
                            "from its border (blur), or OpenCV's Telea inpainting (needs opencv-python-headless).",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The crops, one per image (or per region)."),
                io.Mask.Output(display_name="mask", tooltip="The crops' masks (padding = 0)."),
                Stitch.Output(display_name="stitch", tooltip="Where each crop came from: connect to FewStep Stitch."),
            ],
        )

    @classmethod
    @finite_floats
    def execute(cls, image: torch.Tensor, mask: torch.Tensor, context_mask: torch.Tensor | None = None,
                context_px: int = 32, context_factor: float = 1.0, target_size: str = "1024", width: int = 1024,
                height: int = 1024, multiple: str = "8", padding: str = "edge", regions: str = "one",
                prefill: str = "none") -> io.NodeOutput:
        check_option("multiple", multiple, MULTIPLES)
        check_option("prefill", prefill, PREFILLS)
        plan = plan_crops(image, mask, context_mask, context_px=context_px, context_factor=context_factor,
                          target_size=target_size, custom_hw=(height, width), multiple=int(multiple),
                          padding=padding, regions=regions)
        crops, crop_masks = crop_images(plan)
        return io.NodeOutput(prefill_hole(crops, crop_masks, prefill), crop_masks, plan)


class FewStepStitch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepStitch",
            display_name="FewStep Stitch",
            category=CATEGORY_INPAINT,
            description=(
                "Puts FewStep Crop's generated crops back into the full-size photo: each is resized to its box and "
                "composited like Exact Composite, so wherever the used mask is 0 the output equals the original bit "
                "for bit. With an empty mask the original comes back and nothing upstream is sampled."
            ),
            inputs=[
                Stitch.Input("stitch", tooltip="FewStep Crop's stitch output."),
                io.Image.Input("generated", lazy=True,
                               tooltip="The decoded crops (VAE Decode of the sampled crop latents)."),
                io.Image.Input(
                    "original", optional=True,
                    tooltip="Optional: paste into this image instead of the one Crop cut (same size).",
                ),
                *composite_inputs(),
            ],
            outputs=[
                io.Image.Output(tooltip="The full-size result."),
                io.Mask.Output(display_name="used_mask", tooltip="The full-size mask after grow and feather."),
            ],
        )

    @classmethod
    def check_lazy_status(cls, stitch: StitchPlan, generated=None, **_) -> list[str]:
        """Ask for the generated crops only when something is to be filled (an empty mask samples nothing)."""
        if generated is None and isinstance(stitch, StitchPlan) and not stitch.empty:
            return ["generated"]
        return []

    @classmethod
    @finite_floats
    def execute(cls, stitch: StitchPlan, generated: torch.Tensor | None = None,
                original: torch.Tensor | None = None, grow: int = 0, feather: int = 4,
                color_match: float = 1.0) -> io.NodeOutput:
        if not isinstance(stitch, StitchPlan):
            raise ValueError(f"stitch: expected FewStep Crop's stitch output, got {type(stitch).__name__}")
        if generated is None and not stitch.empty:
            raise ValueError("generated: connect the decoded crops (VAE Decode after sampling FewStep Crop's image)")
        image, used = stitch_crops(stitch, generated, original, grow_px=grow, feather_px=feather,
                                   color_match=color_match)
        return io.NodeOutput(image, used)
