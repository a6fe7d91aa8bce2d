"""SAM2 nodes: load a SAM2 / SAM2.1 checkpoint, and turn clicks and boxes into an inpainting MASK.

``sam2`` is optional and imported only when a node runs (core/segment/). Batch rule of SAM2 Mask:
each prompt input holds one set (applied to every image of the batch) or a list of sets, exactly one
per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.segment import MULTIMASK
from ._api import CATEGORY_MASKS, io
from .paths import sam2_files

SAM2Model = io.Custom("FEWSTEP_SAM2")
POINTS_HELP = ('JSON clicks in image pixels: [{"x": 120, "y": 80}, …] (KJNodes Points Editor output, normalize off) '
               'or [[120, 80], …]. One set applies to every image; a list of sets gives one per image.')


class SAM2Network(torch.nn.Module):
    """Holds the SAM2 model for ComfyUI's ModelPatcher, which writes ``.device`` (read-only on SAM2Base)."""

    def __init__(self, sam2: torch.nn.Module):
        super().__init__()
        self.sam2 = sam2
        self.device = None


@dataclass
class SAM2Handle:
    """What SAM2 Loader passes on: the network in a ModelPatcher, and where it came from."""

    patcher: object
    name: str
    config: str


class SAM2Loader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepSAM2Loader",
            display_name="SAM2 Loader",
            category=CATEGORY_MASKS,
            description=(
                "Loads a SAM2 or SAM2.1 image model (tiny / small / base+ / large, detected from the weights) from "
                "models/sam2 or models/sams: Meta's .pt checkpoints (tensors only) or .safetensors. "
                "Needs the sam2 package: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
            ),
            inputs=[
                io.Combo.Input("sam2_name", options=sam2_files(),
                               tooltip="Checkpoint in models/sam2 or models/sams, e.g. sam2.1_hiera_tiny.pt from "
                                       "facebookresearch/sam2."),
            ],
            outputs=[SAM2Model.Output(display_name="sam2", tooltip="For SAM2 Mask.")],
        )

    @classmethod
    def validate_inputs(cls, sam2_name: str) -> bool | str:
        from .paths import sam2_path

        try:
            sam2_path(sam2_name)
        except FileNotFoundError as err:
            return str(err)
        return True

    @classmethod
    def execute(cls, sam2_name: str) -> io.NodeOutput:
        from ..core.segment import load_sam2
        from .paths import check_against_manifest, input_named, sam2_path, wrap_network

        with input_named("sam2_name"):
            path = sam2_path(sam2_name)
            check_against_manifest("sam2", sam2_name, path)
            model = load_sam2(path, device="cpu")
        patcher = wrap_network(SAM2Network(model), dtype=torch.float32)
        return io.NodeOutput(SAM2Handle(patcher, sam2_name, model.sam2_config))


class SAM2Mask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FewStepSAM2Mask",
            display_name="SAM2 Mask",
            category=CATEGORY_MASKS,
            description=(
                "Segments the clicked / boxed object with SAM2 and returns it as the hole to inpaint (1 = object). "
                "Each box is one object and every click joins each box's prompt; without boxes all clicks form one "
                "object; the mask is the union of the objects."
            ),
            inputs=[
                SAM2Model.Input("sam2", tooltip="From SAM2 Loader."),
                io.Image.Input("image", tooltip="Image batch (B,H,W,C); the masks come out at its size."),
                io.String.Input("positive_points", default="[]", tooltip="Clicks on the object. " + POINTS_HELP),
                io.Combo.Input("multimask", options=list(MULTIMASK), default="best",
                               tooltip="Which of SAM's 3 candidate masks: best = highest predicted IoU, largest, "
                                       "union of all 3, single = SAM's one-mask mode (good for boxes and several "
                                       "clicks), or candidate 0 / 1 / 2 (small part → whole object)."),
                io.String.Input("negative_points", default="[]", optional=True,
                                tooltip="Clicks outside the object (same format as positive_points). " + POINTS_HELP),
                io.String.Input("boxes", default="[]", optional=True,
                                tooltip="JSON boxes in image pixels [[x0, y0, x1, y1], …]; each box is one object. "
                                        "One set applies to every image; a list of sets gives one per image."),
            ],
            outputs=[io.Mask.Output(tooltip="(B,H,W) at the image size: 1 = the object = the hole to inpaint.")],
        )

    @classmethod
    def execute(cls, sam2: SAM2Handle, image: torch.Tensor, positive_points: str, multimask: str = "best",
                negative_points: str = "[]", boxes: str = "[]") -> io.NodeOutput:
        from ..core.segment import segment
        from .sam2_prompts import prompts_from_json

        if image.ndim != 4:
            raise ValueError(f"image: expected an IMAGE batch (B,H,W,C), got shape {tuple(image.shape)}")
        prompts = prompts_from_json(positive_points, negative_points, boxes, image.shape[0])
        masks = segment(device_model(sam2), image, prompts, multimask, callback=progress(image.shape[0]))
        return io.NodeOutput(masks.to(output_device()))


def device_model(sam2: SAM2Handle) -> torch.nn.Module:
    """The SAM2 network loaded on ComfyUI's device (ComfyUI may offload it again later)."""
    import comfy.model_management as mm

    mm.load_models_gpu([sam2.patcher])
    return sam2.patcher.model.sam2


def output_device() -> torch.device:
    import comfy.model_management as mm

    return mm.intermediate_device()


def progress(total: int):
    """A per-image callback updating ComfyUI's progress bar (which also raises on cancel)."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)
    return lambda done, total: bar.update_absolute(done, total)
