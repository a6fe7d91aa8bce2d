"""The generator of the shipped workflows: one graph description → a UI template and its API twin.

    python -m tools.example_graphs --write     # after changing a graph here or a node's schema

writes ``example_workflows/<name>.json`` (UI format: the templates ComfyUI's template browser lists) and
``examples_workflows/<name>.api.json`` (API format: the graph to script against ``POST /prompt`` and share;
what the real-host tests submit). No file is in both folders. ``tests/test_workflows.py`` fails when the
committed files differ from what this module generates.
"""
from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .workflow_check import input_specs, is_widget, load_object_info, load_pack_schemas

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = REPO / "example_workflows"  # UI templates (ComfyUI discovers <pack>/example_workflows)
API_DIR = REPO / "examples_workflows"  # API-format twins
PACK_ID = "fewstep-fill-edit"
CORE_VERSION = "0.3.64"


@dataclass
class Node:
    id: int
    type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: str | None = None
    size: tuple[int, int] = (300, 100)  # width, and the least height (the layout adds what slots and widgets need)


@dataclass
class Graph:
    name: str
    title: str
    nodes: list[Node]
    note: str = ""


INPAINT_NOTE = """## Few-step inpaint, no extra weights

1. **Load Checkpoint**: a few-step model (SDXL-Turbo, SD-Turbo, DMD2, SDXL-Lightning, Hyper-SD or LCM merges).
2. **Load Image**: right-click → *Open in MaskEditor* and paint the area to regenerate.
3. Write what should appear there, then *Queue*.

**FewStep Schedule** gives the exact distilled timesteps (4 steps = 999/749/499/249; use `lcm` spacing for LCM).
**FewStep Blended Sampler** keeps everything outside the mask from the source latent at every step,
and **Exact Composite** pastes the result back so unmasked pixels are identical to the input.
**Re-Blend** gives the hole fresh noise; swap its RandomNoise for *Inverse Noise Init* once InverFill weights exist."""


SDXL_TURBO = "sd_xl_turbo_1.0_fp16.safetensors"
FLUX_SCHNELL = "flux1-schnell-fp8.safetensors"  # ComfyUI's all-in-one FLUX.1-schnell file (model, CLIP-L + T5, VAE)


def inpaint_inputs(checkpoint: str = SDXL_TURBO) -> list[Node]:
    """Nodes 1–3 of every inpaint template: the few-step checkpoint, the image with its painted mask, the prompt."""
    return [
        Node(1, "CheckpointLoaderSimple", {"ckpt_name": checkpoint}, size=(320, 100)),
        Node(2, "LoadImage", {"image": "example.png"}, size=(320, 330)),
        Node(3, "CLIPTextEncode", {"text": "an empty wooden park bench, soft daylight, detailed"},
             {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
    ]


def masked_latent(mask: tuple[int, int] = (2, 1), pixels: tuple[int, int] = (2, 0)) -> list[Node]:
    """Nodes 4–5: ``pixels`` (default: the loaded image) encoded, with ``mask`` (default: the painted one) as its
    noise mask."""
    return [
        Node(4, "VAEEncode", links={"pixels": pixels, "vae": (1, 2)}, size=(210, 50)),
        Node(5, "SetLatentNoiseMask", links={"samples": (4, 0), "mask": mask}, size=(210, 50)),
    ]


def blended_sampling(*, conditioning: tuple[int, int], noise: tuple[int, int], known_noise: str, prefix: str,
                     mask: tuple[int, int] = (2, 1), grow: int = 0, ids: tuple[int, int, int] = (12, 13, 14),
                     cropped: bool = False) -> list[Node]:
    """Nodes 8–14 of the blended inpaint templates: BasicGuider on ``conditioning``; FewStep Blended Sampler
    (``known_noise``) and FewStep Schedule through SamplerCustomAdvanced from ``noise`` on the masked latent (5);
    then decode, Exact Composite over ``mask`` grown by ``grow`` (``cropped``: FewStep Stitch of the crop, node
    20, instead), save. ``ids`` number the last three."""
    decode, composite, save = ids
    return [
        Node(8, "BasicGuider", links={"model": (1, 0), "conditioning": conditioning}, size=(200, 50)),
        Node(9, "FewStepBlendedSampler", {"hole_init": "source", "known_noise": known_noise},
             size=(260, 90)),
        Node(10, "FewStepSchedule", {"steps": 4, "spacing": "trailing", "timesteps": ""},
             {"model": (1, 0)}, size=(260, 130)),
        Node(11, "SamplerCustomAdvanced", links={
            "noise": noise, "guider": (8, 0), "sampler": (9, 0), "sigmas": (10, 0), "latent_image": (5, 0)},
            size=(240, 110)),
        Node(decode, "VAEDecode", links={"samples": (11, 0), "vae": (1, 2)}, size=(210, 50)),
        paste_back(composite, decode, mask, grow, cropped),
        Node(save, "SaveImage", {"filename_prefix": prefix}, {"images": (composite, 0)},
             size=(400, 450)),
    ]


CROP = 20  # FewStep Crop's node id in the cropped templates


def crop(mask: tuple[int, int] = (2, 1), *, regions: str = "one", prefill: str = "none",
         target_size: str = "512", multiple: str = "8") -> Node:
    """Node 20: FewStep Crop of the loaded image (2) around ``mask``, at SD(XL)-Turbo's 512² (DMD2, Lightning and
    FLUX: 1024)."""
    return Node(CROP, "FewStepCrop", {
        "context_px": 32, "context_factor": 1.0, "target_size": target_size, "width": 1024, "height": 1024,
        "multiple": multiple, "padding": "edge", "regions": regions, "prefill": prefill},
        {"image": (2, 0), "mask": mask}, size=(300, 300))


def paste_back(node_id: int, decode: int, mask: tuple[int, int], grow: int, cropped: bool) -> Node:
    """Exact Composite of the decoded image over the original, or FewStep Stitch of the decoded crops."""
    widgets = {"grow": grow, "feather": 4, "color_match": 1.0}
    if cropped:
        return Node(node_id, "FewStepStitch", widgets, {"stitch": (CROP, 2), "generated": (decode, 0)},
                    size=(280, 170))
    return Node(node_id, "FewStepExactComposite", widgets,
                {"original": (2, 0), "generated": (decode, 0), "mask": mask}, size=(280, 170))


def blended_inpaint(mask: tuple[int, int], grow: int, prefix: str, cropped: bool = False) -> list[Node]:
    """Nodes 4–14 of a no-weights few-step inpaint: encode, noise mask, Re-Blend, then :func:`blended_sampling`
    with fresh known-region noise (checkpoint 1, image 2, prompt 3; ``cropped``: on FewStep Crop's outputs)."""
    pixels, mask_in = ((CROP, 0), (CROP, 1)) if cropped else ((2, 0), mask)
    return [
        *masked_latent(mask_in, pixels),
        Node(6, "RandomNoise", {"noise_seed": 42}, size=(260, 80)),
        Node(7, "FewStepReBlend", {"seed": 7}, {"noise": (6, 0), "mask": mask_in}, size=(260, 100)),
        *blended_sampling(conditioning=(3, 0), noise=(7, 0), known_noise="fresh", prefix=prefix, mask=mask,
                          grow=grow, cropped=cropped),
    ]


def inpaint_graph() -> Graph:
    """Few-step inpainting with only core nodes and ours (issue: no extra weights)."""
    return Graph(
        name="fewstep_inpaint_no_extra_weights",
        title="Few-step inpaint, no extra weights",
        note=INPAINT_NOTE,
        nodes=[
            *inpaint_inputs(),
            *blended_inpaint(mask=(2, 1), grow=0, prefix="fewstep_inpaint"),
        ],
    )


INVERFILL_NOTE = """## InverFill inpaint

Needs an InverFill network for your checkpoint in `models/fewstep/inverfill/`, made with
`python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml --base_model=<your model>`.

**Inverse Noise Init** runs the network once on the image with its hole blacked out and gives a start
noise aligned with the picture; the hole gets fresh noise (Re-Blend). The sampler starts exactly there.
**FewStep Blended Sampler** with `known_noise = start` re-noises the background with that inverted noise
between steps, as the paper does. Paint the mask in *Load Image* (right-click → Open in MaskEditor).
**FewStep Crop** samples only the area around the mask at the model's size; **FewStep Stitch** pastes it back
so every unmasked pixel of the photo is unchanged."""


def inverfill_graph() -> Graph:
    """InverFill: Inverse Noise Init → blended few-step sampling → exact composite."""
    return Graph(
        name="inverfill_inpaint",
        title="InverFill inpaint",
        note=INVERFILL_NOTE,
        nodes=[
            *inpaint_inputs(), crop(), *masked_latent((CROP, 1), (CROP, 0)),
            Node(6, "FewStepInverFillLoader", {"network_name": "inverfill_sdxl_turbo.safetensors"},
                 {"model": (1, 0)}, size=(320, 80)),
            Node(7, "FewStepInverseNoiseInit", {"seed": 7},
                 {"model": (1, 0), "inverfill": (6, 0), "positive": (3, 0), "mask": (CROP, 1), "image": (CROP, 0),
                  "vae": (1, 2)}, size=(300, 230)),
            *blended_sampling(conditioning=(3, 0), noise=(7, 0), known_noise="start", prefix="inverfill_inpaint",
                              cropped=True),
        ],
    )


EDIT_NOTE = """## Instant edit (TurboEdit, {method})

1. Load the image and write a **detailed caption** of it in *Caption Editor* (by hand or from any captioner).
2. Write the edit as `old → new` (or `color: blue`): one attribute changes, everything else is kept.
3. Queue. *Iterative Inverter* finds the noises of a 4-step trajectory that reproduce the image
   ({detail}); *TurboEdit Edit Sampler* replays them with the edited caption. Outside the local
   mask (cross-attention to the changed words, or connect a MASK) the image stays the source.

`strength` in Caption Editor scales the edit; `threshold`/`blur` shape the automatic mask."""


def edit_nodes(method: str, checkpoint: str, prefix: str) -> list[Node]:
    """Nodes 1–10 (11: the encoder's loader) of an edit template: caption edit → inversion → replay → save."""
    encoder = method == "encoder"
    nodes = [
        Node(1, "CheckpointLoaderSimple", {"ckpt_name": checkpoint}, size=(320, 100)),
        Node(2, "LoadImage", {"image": "example.png"}, size=(320, 330)),
        Node(3, "FewStepCaptionEditor", {"caption": "a photo of a red car parked on a quiet street",
                                         "edit": "red → blue", "strength": 1.0, "occurrence": 0, "prefix": ""},
             {"clip": (1, 1)}, size=(400, 260)),
        Node(4, "FewStepIterativeInverter", {"steps": 4, "method": method, "seed": 0},
             {"model": (1, 0), "conditioning": (3, 0), "image": (2, 0), "vae": (1, 2),
              **({"encoder": (11, 0)} if encoder else {})}, size=(320, 250)),
        Node(5, "FewStepTurboEditSampler", {"local_mask": "auto", "threshold": 0.4, "blur": -1},
             {"inversion": (4, 0), "tokens": (3, 4)}, size=(300, 170)),
        Node(6, "DisableNoise", size=(200, 30)),
        Node(7, "BasicGuider", links={"model": (1, 0), "conditioning": (3, 1)}, size=(200, 50)),
        Node(8, "SamplerCustomAdvanced", links={
            "noise": (6, 0), "guider": (7, 0), "sampler": (5, 0), "sigmas": (4, 2), "latent_image": (4, 3)},
            size=(240, 110)),
        Node(9, "VAEDecode", links={"samples": (8, 0), "vae": (1, 2)}, size=(210, 50)),
        Node(10, "SaveImage", {"filename_prefix": prefix}, {"images": (9, 0)}, size=(400, 450)),
    ]
    if encoder:
        nodes.append(Node(11, "FewStepTurboEditLoader", {"encoder_name": "turboedit_sdxl_turbo.safetensors"},
                          {"model": (1, 0)}, size=(320, 80)))
    return nodes


def edit_graph(method: str) -> Graph:
    """TurboEdit: caption edit → inversion → replay with the target caption."""
    encoder = method == "encoder"
    detail = ("a trained TurboEdit encoder predicts them: 8 network passes" if encoder
              else "exact inversion, no extra weights: 4 model passes")
    nodes = edit_nodes(method, SDXL_TURBO, f"instant_edit_{method}")
    return Graph(name=f"instant_edit_{method}",
                 title=f"Instant edit ({'TurboEdit encoder' if encoder else 'exact inversion'})",
                 note=EDIT_NOTE.format(method="TurboEdit encoder" if encoder else "exact inversion", detail=detail),
                 nodes=nodes)


RAD_NOTE = """## Region-aware inpaint (RAD)

*Region-Aware Sampler* gives every latent pixel its own noise level from the mask: known pixels are never
noised (they come out exactly as they went in), the hole follows the few-step schedule, and soft mask
values give per-pixel strength. The UNet sees a per-pixel time embedding.

It runs on any ε-prediction few-step model, but fills are good only with a RAD LoRA trained for the model
(`python -m trainers.rad --config trainers/configs/rad_sdxl.yaml`), picked in `rad_lora`.
**FewStep Crop** / **FewStep Stitch** sample only the area around the mask, at the model's size."""


def rad_graph() -> Graph:
    """RAD: per-pixel noise levels in one sampler node."""
    return Graph(
        name="region_aware_inpaint",
        title="Region-aware inpaint",
        note=RAD_NOTE,
        nodes=[
            *inpaint_inputs(), crop(), *masked_latent((CROP, 1), (CROP, 0)),
            Node(6, "FewStepRegionAwareSampler",
                 {"steps": 4, "seed": 5, "cfg": 1.0, "rad_lora": "none", "lora_strength": 1.0},
                 {"model": (1, 0), "positive": (3, 0), "latent": (5, 0)}, size=(320, 260)),
            Node(7, "VAEDecode", links={"samples": (6, 0), "vae": (1, 2)}, size=(210, 50)),
            paste_back(8, 7, (2, 1), 0, cropped=True),
            Node(9, "SaveImage", {"filename_prefix": "region_aware_inpaint"}, {"images": (8, 0)},
                 size=(400, 450)),
        ],
    )


TURBOFILL_NOTE = """## TurboFill inpaint

Needs a TurboFill adapter for your few-step checkpoint in `models/fewstep/turbofill/`, made with
`python -m trainers.turbofill --config trainers/configs/turbofill_sdxl.yaml --base_model=<SDXL base> \
--fast_unet=<DMD2 UNet>`.

**TurboFill Adapter Apply** attaches the adapter to the conditioning like Apply ControlNet: at every step it
reads the noisy latent, the image with its hole blacked out (encoded by the VAE) and the mask, and adds its
residuals to the UNet. It chains with other ControlNets and leaves model patches (LoRAs) alone.
`strength` 0 = the base model. Paint the mask in *Load Image* (right-click → Open in MaskEditor).
**FewStep Crop** cuts the area around the mask at the model's size, **FewStep Blended Sampler** keeps its
background, **FewStep Stitch** pastes the fill back into the photo exactly."""


def turbofill_graph() -> Graph:
    """TurboFill: adapter on the conditioning → blended few-step sampling → exact composite."""
    return Graph(
        name="turbofill_inpaint",
        title="TurboFill inpaint",
        note=TURBOFILL_NOTE,
        nodes=[
            *inpaint_inputs(), crop(), *masked_latent((CROP, 1), (CROP, 0)),
            Node(6, "FewStepTurboFillLoader", {"adapter_name": "turbofill_sdxl.safetensors"},
                 {"model": (1, 0)}, size=(320, 80)),
            Node(7, "FewStepTurboFillAdapterApply",
                 {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0},
                 {"positive": (3, 0), "negative": (3, 0), "adapter": (6, 0), "vae": (1, 2), "image": (CROP, 0),
                  "mask": (CROP, 1)}, size=(300, 230)),
            Node(12, "RandomNoise", {"noise_seed": 42}, size=(260, 80)),
            *blended_sampling(conditioning=(7, 0), noise=(12, 0), known_noise="fresh", prefix="turbofill_inpaint",
                              ids=(13, 15, 14), cropped=True),
        ],
    )


SAM2_NOTE = """## SAM2 click → few-step inpaint

1. Install SAM2 once: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0`, and put a checkpoint
   (e.g. Meta's `sam2.1_hiera_tiny.pt`) into `models/sam2/`.
2. In **SAM2 Mask**, give the object to replace as clicks in image pixels, `[{"x": 100, "y": 70}]`
   (or connect a Points Editor), and/or a box `[[x0, y0, x1, y1]]`. The mask preview shows what SAM2 picked.
3. Write what should appear instead, then *Queue*.

The mask (1 = hole) drives the same few-step inpaint as the basic example: **Re-Blend** fresh noise in the
hole, **FewStep Blended Sampler** on the exact distilled timesteps around the object (**FewStep Crop**, at the
model's size), **FewStep Stitch** (grown by 4 px so the object's edge is covered) keeps every other pixel
identical to the input."""


def sam2_graph() -> Graph:
    """SAM2: a click gives the mask → few-step blended inpaint → exact composite."""
    return Graph(
        name="sam2_click_inpaint",
        title="SAM2 click → few-step inpaint",
        note=SAM2_NOTE,
        nodes=[
            *inpaint_inputs(),
            Node(15, "FewStepSAM2Loader", {"sam2_name": "sam2.1_hiera_tiny.pt"}, size=(320, 80)),
            Node(16, "FewStepSAM2Mask",
                 {"positive_points": '[{"x": 100, "y": 70}]', "multimask": "best", "negative_points": "[]",
                  "boxes": "[]"}, {"sam2": (15, 0), "image": (2, 0)}, size=(320, 200)),
            Node(17, "GrowMask", {"expand": 4, "tapered_corners": True}, {"mask": (16, 0)},
                 title="Grow the hole a little", size=(240, 90)),
            Node(18, "MaskToImage", links={"mask": (17, 0)}, size=(200, 30)),
            Node(19, "PreviewImage", links={"images": (18, 0)}, title="SAM2 mask", size=(240, 250)),
            crop((17, 0)),
            *blended_inpaint(mask=(17, 0), grow=4, prefix="sam2_click_inpaint", cropped=True),
        ],
    )


BIG_PHOTO_NOTE = """## Big photo: crop, few-step inpaint, stitch

For photos larger than the model's size (2–24 MP) and holes much smaller than the photo.

1. **Load Image**: paint one or several areas to regenerate (right-click → Open in MaskEditor).
2. **FewStep Crop** cuts each painted area with `context_px` of photo around it (`regions = separate`: one crop
   per area, overlapping ones merged), resizes it to about `target_size`² pixels (512 for SD-Turbo and
   SDXL-Turbo, 1024 for DMD2, Lightning and Hyper-SD) and pre-fills the hole from its border (`prefill = blur`).
3. The crops are sampled as one batch in 4 steps; **FewStep Stitch** resizes each back and pastes it in, so
   every unmasked pixel of the photo is unchanged, at the photo's full resolution.

Skip the crop (use the whole-image template) when the hole covers most of the photo, or the photo is already at
the model's size."""


def big_photo_graph() -> Graph:
    """Crop around each painted region → one batched few-step blended inpaint → stitch back exactly."""
    return Graph(
        name="big_photo_inpaint",
        title="Big photo: crop, few-step inpaint, stitch",
        note=BIG_PHOTO_NOTE,
        nodes=[
            *inpaint_inputs(),
            crop(regions="separate", prefill="blur"),
            *blended_inpaint(mask=(2, 1), grow=0, prefix="big_photo_inpaint", cropped=True),
        ],
    )


FLUX_INPAINT_NOTE = """## FLUX.1-schnell inpaint, no extra weights

1. **Load Checkpoint**: `flux1-schnell-fp8.safetensors` (ComfyUI's all-in-one file: model, CLIP-L + T5, VAE), or
   swap in Load Diffusion Model + DualCLIPLoader (flux) + Load VAE.
2. **Load Image**: right-click → *Open in MaskEditor* and paint the area to regenerate; write what goes there.

**FewStep Crop** cuts the area around the mask at FLUX's 1024² (multiples of 16: 2×2 patches of the 8× latent).
**FewStep Schedule** gives schnell's grid, t = 1, 0.75, 0.5, 0.25 through the model's own shift (none for schnell).
**FewStep Blended Sampler** re-noises in flow form, (1 − σ)·x̂0 + σ·ε, keeping the background latent at every
step; **Re-Blend** gives the hole fresh noise; **FewStep Stitch** pastes the fill back so every unmasked pixel of
the photo is unchanged. No CFG: schnell is guidance-distilled (Basic Guider)."""

FLUX_EDIT_NOTE = """## FLUX.1-schnell instant edit (TurboEdit, exact inversion)

1. Load the image and write a **detailed caption** of it in *Caption Editor*; the edit is `old → new`.
2. Queue. *Iterative Inverter* solves the noises of schnell's 4-step flow trajectory, (1 − σ)·z + σ·ñ, that
   reproduce the image (4 model passes, no extra weights); *TurboEdit Edit Sampler* replays them with the edited
   caption.

The local mask comes from FLUX's joint attention: the image tokens' attention to the changed T5 tokens in the
first step (`threshold`, `blur` shape it), or connect a MASK. Outside it the image stays the source."""


def flux_inpaint_graph() -> Graph:
    """FLUX.1-schnell: crop → Re-Blend → blended flow sampling on schnell's grid → stitch."""
    return Graph(
        name="flux_schnell_inpaint",
        title="FLUX.1-schnell inpaint, no extra weights",
        note=FLUX_INPAINT_NOTE,
        nodes=[
            *inpaint_inputs(FLUX_SCHNELL),
            crop(target_size="1024", multiple="16"),
            *blended_inpaint(mask=(2, 1), grow=0, prefix="flux_schnell_inpaint", cropped=True),
        ],
    )


def flux_edit_graph() -> Graph:
    """FLUX.1-schnell: TurboEdit's exact inversion and replay, the local mask from joint attention."""
    return Graph(name="flux_schnell_edit", title="FLUX.1-schnell instant edit (exact inversion)",
                 note=FLUX_EDIT_NOTE, nodes=edit_nodes("exact", FLUX_SCHNELL, "flux_schnell_edit"))


# ---------------------------------------------------------------------------------------------- layout
STAGES = ("1 · Load", "2 · Prompt & mask", "3 · Sample", "4 · Composite & save")
STAGE_OF = {
    "CheckpointLoaderSimple": 0, "LoadImage": 0, "FewStepInverFillLoader": 0, "FewStepTurboFillLoader": 0,
    "FewStepTurboEditLoader": 0, "FewStepSAM2Loader": 0,
    "CLIPTextEncode": 1, "FewStepCaptionEditor": 1, "VAEEncode": 1, "SetLatentNoiseMask": 1, "FewStepSAM2Mask": 1,
    "GrowMask": 1, "MaskToImage": 1, "PreviewImage": 1, "FewStepTurboFillAdapterApply": 1, "FewStepCrop": 1,
    "RandomNoise": 2, "DisableNoise": 2, "FewStepReBlend": 2, "FewStepInverseNoiseInit": 2, "BasicGuider": 2,
    "FewStepBlendedSampler": 2, "FewStepSchedule": 2, "SamplerCustomAdvanced": 2, "FewStepRegionAwareSampler": 2,
    "FewStepIterativeInverter": 2, "FewStepTurboEditSampler": 2,
    "VAEDecode": 3, "FewStepExactComposite": 3, "FewStepStitch": 3, "SaveImage": 3,
}
STAGE_COLOURS = ("#3f789e", "#8A8", "#b58b2a", "#a1309b")
NOTE_WIDTH, NOTE_HEIGHT = 420, 620
GAP_X, GAP_Y, PAD, GROUP_TITLE = 70, 50, 20, 40
TITLE_BAR = 30  # the front end draws a node's title above its pos


def node_height(node: Node, info: dict) -> int:
    """Height the front end needs for the node's slots and widgets (a generous estimate, so nothing overlaps)."""
    specs = input_specs(info)
    widgets = [(n, s) for n, s in specs.items() if is_widget(s) and n not in node.links]
    slots = max(len([n for n, s in specs.items() if not is_widget(s) or n in node.links]), len(info["output"]))
    height = 10 + 22 * slots
    for _, spec in widgets:
        height += 120 if spec[1].get("multiline") else 26
        height += 26 if spec[1].get("control_after_generate") else 0
    return max(node.size[1], height)


def layout(graph: Graph, object_info: dict) -> tuple[dict[int, tuple[list[int], list[int]]], list[dict]]:
    """Left to right in titled groups, one per stage (load → prompt & mask → sample → composite & save), nodes
    stacked in their order with room between them; the how-to note on the left, beside the Load group."""
    columns: list[list[Node]] = [[] for _ in STAGES]
    for node in graph.nodes:
        columns[STAGE_OF[node.type]].append(node)
    boxes, groups = {}, []
    x = NOTE_WIDTH + GAP_X if graph.note else 0
    top = GROUP_TITLE + PAD + TITLE_BAR
    for stage, column in enumerate(columns):
        if not column:
            continue
        width = max(n.size[0] for n in column)
        y = top
        for node in column:
            height = node_height(node, object_info[node.type])
            boxes[node.id] = ([x + PAD, y], [width, height])
            y += height + TITLE_BAR + GAP_Y
        groups.append({"id": stage + 1, "title": STAGES[stage], "bounding": [x, 0, width + 2 * PAD, y - GAP_Y + PAD],
                       "color": STAGE_COLOURS[stage], "font_size": 24, "flags": {}})
        x += width + 2 * PAD + GAP_X
    return boxes, groups


GRAPHS = [inpaint_graph, inverfill_graph, lambda: edit_graph("exact"), lambda: edit_graph("encoder"), rad_graph,
          turbofill_graph, sam2_graph, big_photo_graph, flux_inpaint_graph, flux_edit_graph]


def _widget_values(node: Node, info: dict) -> list:
    values = []
    for name, spec in input_specs(info).items():
        if not is_widget(spec) or name in node.links:
            continue
        values.append(node.widgets[name])
        if spec[1].get("control_after_generate"):
            values.append("fixed")
        if spec[1].get("image_upload"):
            values.append("image")
    return values


def to_ui(graph: Graph, object_info: dict) -> dict:
    """UI-format workflow (schema 0.4) for the frontend and the template browser."""
    links, link_id = [], 0
    outputs: dict[tuple[int, int], list[int]] = {}
    inputs: dict[int, list] = {}
    for node in graph.nodes:
        info = object_info[node.type]
        slots = []
        for name, spec in input_specs(info).items():
            if is_widget(spec) and name not in node.links:
                continue
            link = None
            if name in node.links:
                link_id += 1
                src, slot = node.links[name]
                src_type = object_info[_node(graph, src).type]["output"][slot]
                links.append([link_id, src, slot, node.id, len(slots), src_type])
                outputs.setdefault((src, slot), []).append(link_id)
                link = link_id
            slots.append({"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": link})
        inputs[node.id] = slots
    order = {n.id: i for i, n in enumerate(graph.nodes)}
    boxes, groups = layout(graph, object_info)
    ui_nodes = []
    for node in graph.nodes:
        info = object_info[node.type]
        ours = node.type.startswith("FewStep")
        ui_nodes.append({
            "id": node.id,
            "type": node.type,
            "pos": boxes[node.id][0],
            "size": boxes[node.id][1],
            "flags": {},
            "order": order[node.id],
            "mode": 0,
            "inputs": inputs[node.id],
            "outputs": [
                {"name": name, "type": kind, "links": outputs.get((node.id, i), []), "slot_index": i}
                for i, (name, kind) in enumerate(zip(info["output_name"], info["output"]))
            ],
            **({"title": node.title} if node.title else {}),
            "properties": {"Node name for S&R": node.type, "cnr_id": PACK_ID if ours else "comfy-core",
                           "ver": _pack_version() if ours else CORE_VERSION},
            "widgets_values": _widget_values(node, info),
        })
    if graph.note:
        ui_nodes.append({"id": 100, "type": "MarkdownNote", "pos": [0, GROUP_TITLE + PAD + TITLE_BAR],
                         "size": [NOTE_WIDTH, NOTE_HEIGHT], "flags": {},
                         "order": len(graph.nodes), "mode": 0, "inputs": [], "outputs": [],
                         "title": "How to use", "properties": {}, "widgets_values": [graph.note]})
    return {
        # the front end wants a UUID; stable per name
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fewstep-fill-edit/{graph.name}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in ui_nodes),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": _fit_scale(groups), "offset": [40, 40]}, "fewstep_title": graph.title},
        "version": 0.4,
    }


def _fit_scale(groups: list[dict], view_width: int = 1500) -> float:
    """Zoom at which the whole graph fits a 1500 px wide canvas when the template opens (at most 0.8)."""
    right = max((g["bounding"][0] + g["bounding"][2] for g in groups), default=view_width)
    return round(min(0.8, view_width / (right + 80)), 2)


def to_api(graph: Graph, object_info: dict) -> dict:
    """API-format prompt: what ``POST /prompt`` runs and the tests submit."""
    api = {}
    for node in graph.nodes:
        info = object_info[node.type]
        inputs = {name: node.widgets[name] for name, spec in input_specs(info).items()
                  if is_widget(spec) and name not in node.links}
        inputs.update({name: [str(src), slot] for name, (src, slot) in node.links.items()})
        api[str(node.id)] = {"class_type": node.type, "inputs": inputs,
                             "_meta": {"title": node.title or info.get("display_name") or node.type}}
    return api


def _node(graph: Graph, node_id: int) -> Node:
    return next(n for n in graph.nodes if n.id == node_id)


def _pack_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def rendered_files() -> dict[Path, str]:
    """Every example file this module produces, path → text."""
    object_info = load_object_info(load_pack_schemas())
    files = {}
    for make in GRAPHS:
        graph = make()
        files[TEMPLATE_DIR / f"{graph.name}.json"] = dump(to_ui(graph, object_info))
        files[API_DIR / f"{graph.name}.api.json"] = dump(to_api(graph, object_info))
    return files


def main() -> int:
    files = rendered_files()
    if "--write" not in sys.argv:
        print("\n".join(str(p.relative_to(REPO)) for p in files))
        return 0
    for path, text in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
