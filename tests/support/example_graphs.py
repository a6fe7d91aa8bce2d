"""Source of the example workflows: one graph description → UI workflow + API twin.

    python -m tests.support.example_graphs --write

writes ``examples_workflows/<name>.json`` (UI format, for users), ``examples_workflows/<name>.api.json``
(API format, what tests submit to ``POST /prompt``) and a copy of the UI file in
``example_workflows/`` (the folder ComfyUI's template browser reads). ``tests/test_workflows.py``
fails when the committed files differ from what this module generates.
"""
from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .node_schemas import load_snapshot
from .workflow_check import input_specs, is_widget, load_object_info

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "examples_workflows"
TEMPLATE_DIR = REPO / "example_workflows"
PACK_ID = "fewstep-fill-edit"
CORE_VERSION = "0.3.64"


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: str | None = None
    size: tuple[int, int] = (300, 100)


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


def inpaint_graph() -> Graph:
    """Few-step inpainting with only core nodes and ours (issue: no extra weights)."""
    return Graph(
        name="fewstep_inpaint_no_extra_weights",
        title="Few-step inpaint, no extra weights",
        note=INPAINT_NOTE,
        nodes=[
            Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
            Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
            Node(3, "CLIPTextEncode", (380, 0), {"text": "an empty wooden park bench, soft daylight, detailed"},
                 {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
            Node(4, "VAEEncode", (380, 220), links={"pixels": (2, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(5, "SetLatentNoiseMask", (380, 310), links={"samples": (4, 0), "mask": (2, 1)}, size=(210, 50)),
            Node(6, "RandomNoise", (380, 400), {"noise_seed": 42}, size=(260, 80)),
            Node(7, "FewStepReBlend", (660, 400), {"seed": 7}, {"noise": (6, 0), "mask": (2, 1)}, size=(260, 100)),
            Node(8, "BasicGuider", (820, 0), links={"model": (1, 0), "conditioning": (3, 0)}, size=(200, 50)),
            Node(9, "FewStepBlendedSampler", (820, 100), {"hole_init": "source", "known_noise": "fresh"},
                 size=(260, 90)),
            Node(10, "FewStepSchedule", (820, 200), {"steps": 4, "spacing": "trailing", "timesteps": ""},
                 {"model": (1, 0)}, size=(260, 130)),
            Node(11, "SamplerCustomAdvanced", (1120, 0), links={
                "noise": (7, 0), "guider": (8, 0), "sampler": (9, 0), "sigmas": (10, 0), "latent_image": (5, 0)},
                size=(240, 110)),
            Node(12, "VAEDecode", (1120, 160), links={"samples": (11, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(13, "FewStepExactComposite", (1120, 250), {"grow": 0, "feather": 4, "color_match": 1.0},
                 {"original": (2, 0), "generated": (12, 0), "mask": (2, 1)}, size=(280, 170)),
            Node(14, "SaveImage", (1440, 0), {"filename_prefix": "fewstep_inpaint"}, {"images": (13, 0)},
                 size=(400, 450)),
        ],
    )


INVERFILL_NOTE = """## InverFill inpaint

Needs an InverFill network for your checkpoint in `models/fewstep/inverfill/`, made with
`python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml --base_model=<your model>`.

**Inverse Noise Init** runs the network once on the image with its hole blacked out and gives a start
noise aligned with the picture; the hole gets fresh noise (Re-Blend). The sampler starts exactly there.
**FewStep Blended Sampler** with `known_noise = start` re-noises the background with that inverted noise
between steps, as the paper does. Paint the mask in *Load Image* (right-click → Open in MaskEditor)."""


def inverfill_graph() -> Graph:
    """InverFill: Inverse Noise Init → blended few-step sampling → exact composite."""
    return Graph(
        name="inverfill_inpaint",
        title="InverFill inpaint",
        note=INVERFILL_NOTE,
        nodes=[
            Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
            Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
            Node(3, "CLIPTextEncode", (380, 0), {"text": "an empty wooden park bench, soft daylight, detailed"},
                 {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
            Node(4, "VAEEncode", (380, 220), links={"pixels": (2, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(5, "SetLatentNoiseMask", (380, 310), links={"samples": (4, 0), "mask": (2, 1)}, size=(210, 50)),
            Node(6, "FewStepInverFillLoader", (380, 400), {"network_name": "inverfill_sdxl_turbo.safetensors"},
                 {"model": (1, 0)}, size=(320, 80)),
            Node(7, "FewStepInverseNoiseInit", (720, 300), {"seed": 7},
                 {"model": (1, 0), "inverfill": (6, 0), "positive": (3, 0), "mask": (2, 1), "image": (2, 0),
                  "vae": (1, 2)}, size=(300, 230)),
            Node(8, "BasicGuider", (820, 0), links={"model": (1, 0), "conditioning": (3, 0)}, size=(200, 50)),
            Node(9, "FewStepBlendedSampler", (820, 100), {"hole_init": "source", "known_noise": "start"},
                 size=(260, 90)),
            Node(10, "FewStepSchedule", (1060, 300), {"steps": 4, "spacing": "trailing", "timesteps": ""},
                 {"model": (1, 0)}, size=(260, 130)),
            Node(11, "SamplerCustomAdvanced", (1120, 0), links={
                "noise": (7, 0), "guider": (8, 0), "sampler": (9, 0), "sigmas": (10, 0), "latent_image": (5, 0)},
                size=(240, 110)),
            Node(12, "VAEDecode", (1120, 160), links={"samples": (11, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(13, "FewStepExactComposite", (1380, 160), {"grow": 0, "feather": 4, "color_match": 1.0},
                 {"original": (2, 0), "generated": (12, 0), "mask": (2, 1)}, size=(280, 170)),
            Node(14, "SaveImage", (1700, 0), {"filename_prefix": "inverfill_inpaint"}, {"images": (13, 0)},
                 size=(400, 450)),
        ],
    )


EDIT_NOTE = """## Instant edit (TurboEdit, {method})

1. Load the image and write a **detailed caption** of it in *Caption Editor* (by hand or from any captioner).
2. Write the edit as `old → new` (or `color: blue`): one attribute changes, everything else is kept.
3. Queue. *Iterative Inverter* finds the noises of a 4-step trajectory that reproduce the image
   ({detail}); *TurboEdit Edit Sampler* replays them with the edited caption. Outside the local
   mask (cross-attention to the changed words, or connect a MASK) the image stays the source.

`strength` in Caption Editor scales the edit; `threshold`/`blur` shape the automatic mask."""


def edit_graph(method: str) -> Graph:
    """TurboEdit: caption edit → inversion → replay with the target caption."""
    encoder = method == "encoder"
    detail = ("a trained TurboEdit encoder predicts them: 8 network passes" if encoder
              else "exact inversion, no extra weights: 4 model passes")
    nodes = [
        Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
        Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
        Node(3, "FewStepCaptionEditor", (380, 0), {"caption": "a photo of a red car parked on a quiet street",
                                                   "edit": "red → blue", "strength": 1.0, "occurrence": 0},
             {"clip": (1, 1)}, size=(400, 260)),
        Node(4, "FewStepIterativeInverter", (380, 300), {"steps": 4, "method": method, "seed": 0},
             {"model": (1, 0), "conditioning": (3, 0), "image": (2, 0), "vae": (1, 2),
              **({"encoder": (11, 0)} if encoder else {})}, size=(320, 250)),
        Node(5, "FewStepTurboEditSampler", (820, 300), {"local_mask": "auto", "threshold": 0.4, "blur": -1},
             {"inversion": (4, 0), "tokens": (3, 4)}, size=(300, 170)),
        Node(6, "DisableNoise", (820, 0), size=(200, 30)),
        Node(7, "BasicGuider", (820, 80), links={"model": (1, 0), "conditioning": (3, 1)}, size=(200, 50)),
        Node(8, "SamplerCustomAdvanced", (1140, 0), links={
            "noise": (6, 0), "guider": (7, 0), "sampler": (5, 0), "sigmas": (4, 2), "latent_image": (4, 3)},
            size=(240, 110)),
        Node(9, "VAEDecode", (1140, 160), links={"samples": (8, 0), "vae": (1, 2)}, size=(210, 50)),
        Node(10, "SaveImage", (1420, 0), {"filename_prefix": f"instant_edit_{method}"}, {"images": (9, 0)},
             size=(400, 450)),
    ]
    if encoder:
        nodes.append(Node(11, "FewStepTurboEditLoader", (0, 540), {"encoder_name": "turboedit_sdxl_turbo.safetensors"},
                          {"model": (1, 0)}, size=(320, 80)))
    return Graph(name=f"instant_edit_{method}", title=f"Instant edit ({'TurboEdit encoder' if encoder else 'exact inversion'})",
                 note=EDIT_NOTE.format(method="TurboEdit encoder" if encoder else "exact inversion", detail=detail),
                 nodes=nodes)


RAD_NOTE = """## Region-aware inpaint (RAD)

*Region-Aware Sampler* gives every latent pixel its own noise level from the mask: known pixels are never
noised (they come out exactly as they went in), the hole follows the few-step schedule, and soft mask
values give per-pixel strength. The UNet sees a per-pixel time embedding.

It runs on any ε-prediction few-step model, but fills are good only with a RAD LoRA trained for the model
(`python -m trainers.rad --config trainers/configs/rad_sdxl.yaml`), picked in `rad_lora`."""


def rad_graph() -> Graph:
    """RAD: per-pixel noise levels in one sampler node."""
    return Graph(
        name="region_aware_inpaint",
        title="Region-aware inpaint",
        note=RAD_NOTE,
        nodes=[
            Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
            Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
            Node(3, "CLIPTextEncode", (380, 0), {"text": "an empty wooden park bench, soft daylight, detailed"},
                 {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
            Node(4, "VAEEncode", (380, 220), links={"pixels": (2, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(5, "SetLatentNoiseMask", (380, 310), links={"samples": (4, 0), "mask": (2, 1)}, size=(210, 50)),
            Node(6, "FewStepRegionAwareSampler", (820, 0),
                 {"steps": 4, "seed": 5, "cfg": 1.0, "rad_lora": "none", "lora_strength": 1.0},
                 {"model": (1, 0), "positive": (3, 0), "latent": (5, 0)}, size=(320, 260)),
            Node(7, "VAEDecode", (1160, 0), links={"samples": (6, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(8, "FewStepExactComposite", (1160, 100), {"grow": 0, "feather": 4, "color_match": 1.0},
                 {"original": (2, 0), "generated": (7, 0), "mask": (2, 1)}, size=(280, 170)),
            Node(9, "SaveImage", (1480, 0), {"filename_prefix": "region_aware_inpaint"}, {"images": (8, 0)},
                 size=(400, 450)),
        ],
    )


TURBOFILL_NOTE = """## TurboFill inpaint

Needs a TurboFill adapter for your few-step checkpoint in `models/fewstep/turbofill/`, made with
`python -m trainers.turbofill --config trainers/configs/turbofill_sdxl.yaml --base_model=<SDXL base> --fast_unet=<DMD2 UNet>`.

**TurboFill Adapter Apply** attaches the adapter to the conditioning like Apply ControlNet: at every step it
reads the noisy latent, the image with its hole blacked out (encoded by the VAE) and the mask, and adds its
residuals to the UNet. It chains with other ControlNets and leaves model patches (LoRAs) alone.
`strength` 0 = the base model. Paint the mask in *Load Image* (right-click → Open in MaskEditor).
**FewStep Blended Sampler** keeps the background, **Exact Composite** pastes the fill back exactly."""


def turbofill_graph() -> Graph:
    """TurboFill: adapter on the conditioning → blended few-step sampling → exact composite."""
    return Graph(
        name="turbofill_inpaint",
        title="TurboFill inpaint",
        note=TURBOFILL_NOTE,
        nodes=[
            Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
            Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
            Node(3, "CLIPTextEncode", (380, 0), {"text": "an empty wooden park bench, soft daylight, detailed"},
                 {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
            Node(4, "VAEEncode", (380, 220), links={"pixels": (2, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(5, "SetLatentNoiseMask", (380, 310), links={"samples": (4, 0), "mask": (2, 1)}, size=(210, 50)),
            Node(6, "FewStepTurboFillLoader", (380, 400), {"adapter_name": "turbofill_sdxl.safetensors"},
                 {"model": (1, 0)}, size=(320, 80)),
            Node(7, "FewStepTurboFillAdapterApply", (720, 220),
                 {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0},
                 {"positive": (3, 0), "negative": (3, 0), "adapter": (6, 0), "vae": (1, 2), "image": (2, 0),
                  "mask": (2, 1)}, size=(300, 230)),
            Node(8, "BasicGuider", (1060, 0), links={"model": (1, 0), "conditioning": (7, 0)}, size=(200, 50)),
            Node(9, "FewStepBlendedSampler", (1060, 100), {"hole_init": "source", "known_noise": "fresh"},
                 size=(260, 90)),
            Node(10, "FewStepSchedule", (1060, 220), {"steps": 4, "spacing": "trailing", "timesteps": ""},
                 {"model": (1, 0)}, size=(260, 130)),
            Node(11, "SamplerCustomAdvanced", (1340, 0), links={
                "noise": (12, 0), "guider": (8, 0), "sampler": (9, 0), "sigmas": (10, 0), "latent_image": (5, 0)},
                size=(240, 110)),
            Node(12, "RandomNoise", (1060, 380), {"noise_seed": 42}, size=(260, 80)),
            Node(13, "VAEDecode", (1340, 160), links={"samples": (11, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(15, "FewStepExactComposite", (1340, 250), {"grow": 0, "feather": 4, "color_match": 1.0},
                 {"original": (2, 0), "generated": (13, 0), "mask": (2, 1)}, size=(280, 170)),
            Node(14, "SaveImage", (1660, 0), {"filename_prefix": "turbofill_inpaint"}, {"images": (15, 0)},
                 size=(400, 450)),
        ],
    )


SAM2_NOTE = """## SAM2 click → few-step inpaint

1. Install SAM2 once: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0`, and put a checkpoint
   (e.g. Meta's `sam2.1_hiera_tiny.pt`) into `models/sam2/`.
2. In **SAM2 Mask**, give the object to replace as clicks in image pixels, `[{"x": 100, "y": 70}]`
   (or connect a Points Editor), and/or a box `[[x0, y0, x1, y1]]`. The mask preview shows what SAM2 picked.
3. Write what should appear instead, then *Queue*.

The mask (1 = hole) drives the same few-step inpaint as the basic example: **Re-Blend** fresh noise in the
hole, **FewStep Blended Sampler** on the exact distilled timesteps, **Exact Composite** (grown by 8 px so the
object's edge is covered) keeps every other pixel identical to the input."""


def sam2_graph() -> Graph:
    """SAM2: a click gives the mask → few-step blended inpaint → exact composite."""
    return Graph(
        name="sam2_click_inpaint",
        title="SAM2 click → few-step inpaint",
        note=SAM2_NOTE,
        nodes=[
            Node(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": "sd_xl_turbo_1.0_fp16.safetensors"}, size=(320, 100)),
            Node(2, "LoadImage", (0, 160), {"image": "example.png"}, size=(320, 330)),
            Node(3, "CLIPTextEncode", (380, 0), {"text": "an empty wooden park bench, soft daylight, detailed"},
                 {"clip": (1, 1)}, title="Prompt for the masked area", size=(400, 160)),
            Node(15, "FewStepSAM2Loader", (0, 540), {"sam2_name": "sam2.1_hiera_tiny.pt"}, size=(320, 80)),
            Node(16, "FewStepSAM2Mask", (380, 420),
                 {"positive_points": '[{"x": 100, "y": 70}]', "multimask": "best", "negative_points": "[]",
                  "boxes": "[]"}, {"sam2": (15, 0), "image": (2, 0)}, size=(320, 200)),
            Node(17, "GrowMask", (720, 420), {"expand": 4, "tapered_corners": True}, {"mask": (16, 0)},
                 title="Grow the hole a little", size=(240, 90)),
            Node(18, "MaskToImage", (720, 540), links={"mask": (17, 0)}, size=(200, 30)),
            Node(19, "PreviewImage", (720, 600), links={"images": (18, 0)}, title="SAM2 mask", size=(240, 250)),
            Node(4, "VAEEncode", (380, 220), links={"pixels": (2, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(5, "SetLatentNoiseMask", (720, 220), links={"samples": (4, 0), "mask": (17, 0)}, size=(210, 50)),
            Node(6, "RandomNoise", (720, 300), {"noise_seed": 42}, size=(260, 80)),
            Node(7, "FewStepReBlend", (1000, 300), {"seed": 7}, {"noise": (6, 0), "mask": (17, 0)}, size=(260, 100)),
            Node(8, "BasicGuider", (1000, 0), links={"model": (1, 0), "conditioning": (3, 0)}, size=(200, 50)),
            Node(9, "FewStepBlendedSampler", (1000, 80), {"hole_init": "source", "known_noise": "fresh"},
                 size=(260, 90)),
            Node(10, "FewStepSchedule", (1000, 440), {"steps": 4, "spacing": "trailing", "timesteps": ""},
                 {"model": (1, 0)}, size=(260, 130)),
            Node(11, "SamplerCustomAdvanced", (1300, 0), links={
                "noise": (7, 0), "guider": (8, 0), "sampler": (9, 0), "sigmas": (10, 0), "latent_image": (5, 0)},
                size=(240, 110)),
            Node(12, "VAEDecode", (1300, 160), links={"samples": (11, 0), "vae": (1, 2)}, size=(210, 50)),
            Node(13, "FewStepExactComposite", (1300, 250), {"grow": 4, "feather": 4, "color_match": 1.0},
                 {"original": (2, 0), "generated": (12, 0), "mask": (17, 0)}, size=(280, 170)),
            Node(14, "SaveImage", (1620, 0), {"filename_prefix": "sam2_click_inpaint"}, {"images": (13, 0)},
                 size=(400, 450)),
        ],
    )


GRAPHS = [inpaint_graph, inverfill_graph, lambda: edit_graph("exact"), lambda: edit_graph("encoder"), rad_graph,
          turbofill_graph, sam2_graph]


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
    ui_nodes = []
    for node in graph.nodes:
        info = object_info[node.type]
        ours = node.type.startswith("FewStep")
        ui_nodes.append({
            "id": node.id,
            "type": node.type,
            "pos": list(node.pos),
            "size": list(node.size),
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
        ui_nodes.append({"id": 100, "type": "MarkdownNote", "pos": [0, 540], "size": [640, 300], "flags": {},
                         "order": len(graph.nodes), "mode": 0, "inputs": [], "outputs": [],
                         "title": "How to use", "properties": {}, "widgets_values": [graph.note]})
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fewstep-fill-edit/{graph.name}")),  # the front end wants a UUID; stable per name
        "revision": 0,
        "last_node_id": max(n["id"] for n in ui_nodes),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}, "fewstep_title": graph.title},
        "version": 0.4,
    }


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
    object_info = load_object_info(load_snapshot())
    files = {}
    for make in GRAPHS:
        graph = make()
        ui = dump(to_ui(graph, object_info))
        files[UI_DIR / f"{graph.name}.json"] = ui
        files[TEMPLATE_DIR / f"{graph.name}.json"] = ui
        files[UI_DIR / f"{graph.name}.api.json"] = dump(to_api(graph, object_info))
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
