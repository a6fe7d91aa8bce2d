"""The pack inside a real ComfyUI server (runs when COMFYUI_DIR is set, skipped otherwise).

Set ``COMFYUI_DIR`` to a ComfyUI 0.3.64 checkout and, if its Python environment is not this
one, ``COMFYUI_PYTHON`` to its interpreter. The server runs with ``--cpu`` on 127.0.0.1.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from .support.comfy_server import (
    CHECKPOINT,
    PACK_FOLDER,
    TINY_FLUX_NODES,
    ComfyServer,
    comfyui_dir,
    error_message,
    tiny_checkpoint,
)
from .support.node_schemas import load_snapshot, normalise
from .support.tiny_sam2 import requires_sam2

pytestmark = pytest.mark.skipif(comfyui_dir() is None, reason="set COMFYUI_DIR to run real-host tests")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "fewstep_inpaint_no_extra_weights"
SAVE_NODE = "14"  # fewstep_inpaint_no_extra_weights: Save Image


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = Path.home() / ".cache" / "fewstep-tests"
    checkpoint = tiny_checkpoint(cache)
    with ComfyServer(tmp_path_factory.mktemp("comfy"), checkpoint, test_nodes=(TINY_FLUX_NODES,)) as srv:
        yield srv


def rgba_input(server: ComfyServer, name: str, alpha: np.ndarray) -> np.ndarray:
    """Write scikit-image's astronaut (203×150, sides not multiples of 8) with ``alpha`` as a PNG input."""
    from PIL import Image
    from skimage import data
    from skimage.transform import resize

    rgb = (resize(data.astronaut(), (150, 203), anti_aliasing=True) * 255).round().astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(server.input_dir / name)
    return rgb


def hole_alpha(kind: str) -> np.ndarray:
    alpha = np.full((150, 203), 255, np.uint8)
    if kind == "box":
        alpha[40:100, 60:150] = 0  # LoadImage: mask = 1 − alpha, so transparent = hole
    elif kind == "full":
        alpha[:] = 0
    return alpha


def example_prompt(image: str, widgets: dict | None = None, example: str = EXAMPLE) -> dict:
    prompt = json.loads((REPO / "examples_workflows" / f"{example}.api.json").read_text())
    prompt["1"]["inputs"]["ckpt_name"] = CHECKPOINT
    prompt["2"]["inputs"]["image"] = image
    for (node, name), value in (widgets or {}).items():
        prompt[node]["inputs"][name] = value
    return prompt


def output_rgb(server: ComfyServer, entry: dict) -> np.ndarray:
    from PIL import Image

    (png,) = server.output_images(entry, SAVE_NODE)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_pack_loads_without_import_error(server):
    info = server.get_json("/object_info")
    ours = {k for k in info if k.startswith("FewStep")}
    assert ours == set(load_snapshot())
    pack_lines = [line for line in server.log_text().splitlines() if f"custom_nodes/{PACK_FOLDER}" in line]
    assert pack_lines, "the pack's import time line is in the log"
    assert not [line for line in pack_lines if "IMPORT FAILED" in line or "Cannot import" in line], pack_lines


def test_live_schemas_match_the_snapshot(server):
    info = server.get_json("/object_info")
    live = {k: normalise(v) for k, v in info.items() if k.startswith("FewStep")}
    assert live == load_snapshot()


def test_every_template_is_in_the_template_browser(server):
    templates = server.get_json("/api/workflow_templates")
    committed = sorted(p.stem for p in (REPO / "example_workflows").glob("*.json"))
    assert sorted(templates.get(PACK_FOLDER, [])) == committed == sorted(TEMPLATES)
    for name in committed:
        served = server.get_json(f"/api/workflow_templates/{PACK_FOLDER}/{name}.json")
        assert served == json.loads((REPO / "example_workflows" / f"{name}.json").read_text()), name


def test_model_folders_are_registered_with_extra_paths_and_safetensors_only(server):
    extra = server.base / "models" / "extra_inverfill"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "mine.safetensors").write_bytes(b"x")
    (extra / "pickled.ckpt").write_bytes(b"x")
    paths = server.get_json("/internal/folder_paths")["fewstep_inverfill"]
    assert any(Path(p).parts[-2:] == ("fewstep", "inverfill") for p in paths)
    assert str(extra) in paths
    for kind in ("turbofill", "rad", "turboedit"):
        assert any(Path(p).parts[-2:] == ("fewstep", kind)
                   for p in server.get_json("/internal/folder_paths")[f"fewstep_{kind}"])
    listed = server.get_json("/models/fewstep_inverfill")
    on_disk = {p.name for folder in paths if Path(folder).is_dir() for p in Path(folder).glob("*.safetensors")}
    assert "mine.safetensors" in listed and set(listed) == on_disk, "every .safetensors file, no .ckpt"


def save_node(prompt: dict, kind: str = "SaveImage") -> str:
    (node,) = [k for k, v in prompt.items() if v["class_type"] == kind]
    return node


def weights_for(template: str, server: ComfyServer, request) -> dict:
    """Widget values that point a template at the tiny weights the documented tiny trainer runs (or the tiny
    SAM2 builder) produced, installed in the server's extra model folders."""
    if template == "inverfill_inpaint":
        run = request.getfixturevalue("tiny_inverfill_run")
        return {("6", "network_name"): server.install("extra_inverfill", run["weights"], "tiny_inverfill.safetensors")}
    if template == "turbofill_inpaint":
        run = request.getfixturevalue("tiny_turbofill_run")
        return {("6", "adapter_name"): server.install("extra_turbofill", run["weights"], "tiny_turbofill.safetensors")}
    if template == "instant_edit_encoder":
        run = request.getfixturevalue("tiny_turboedit_run")
        return {("11", "encoder_name"): server.install("extra_turboedit", run["weights"],
                                                "tiny_turboedit.safetensors")}
    if template == "sam2_click_inpaint":
        from .support.tiny_sam2 import shared_tiny_sam2

        tiny = shared_tiny_sam2(request.getfixturevalue("tmp_path_factory"))
        return {("15", "sam2_name"): server.install("extra_sam2", tiny.safetensors, "sam2_tiny_random.safetensors")}
    return {}


INPAINT, EDIT, CLICK = "inpaint", "edit", "click"
TEMPLATES = {"fewstep_inpaint_no_extra_weights": INPAINT, "inverfill_inpaint": INPAINT,
             "region_aware_inpaint": INPAINT, "turbofill_inpaint": INPAINT, "sam2_click_inpaint": CLICK,
             "instant_edit_exact": EDIT, "instant_edit_encoder": EDIT, "big_photo_inpaint": INPAINT,
             "flux_schnell_inpaint": INPAINT, "flux_schnell_edit": EDIT}
FLUX_TEMPLATES = ("flux_schnell_inpaint", "flux_schnell_edit")  # run on the tiny FLUX: Load Checkpoint swapped


def test_every_template_has_a_run_below():
    twins = sorted(p.name[: -len(".api.json")] for p in (REPO / "examples_workflows").glob("*.api.json"))
    assert twins == sorted(TEMPLATES), "add the new template to TEMPLATES (and weights_for) so it is submitted"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_runs_on_the_tiny_checkpoint(server, template, request):
    """Each template's API twin, as shipped, with only the checkpoint (FLUX templates: Load Checkpoint itself, for
    the test pack's tiny FLUX), the input image and weight files swapped:
    it runs, and what it promises holds (inpaint: unmasked pixels exact; SAM2: every pixel outside its mask
    exact; edit: a changed image of the VAE-cropped size)."""
    from PIL import Image

    kind = TEMPLATES[template]
    if kind == CLICK and requires_sam2.args[0]:
        pytest.skip(requires_sam2.kwargs["reason"])
    alpha = hole_alpha("box" if kind == INPAINT else "none")
    rgb = rgba_input(server, f"{template}.png", alpha)
    widgets = weights_for(template, server, request)
    # a random SAM2's mask is speckled over most of the image: no growing, so its outside is checkable
    if kind == CLICK:
        widgets.update({("17", "expand"): 0, ("13", "grow"): 0})
    prompt = example_prompt(f"{template}.png", widgets, example=template)
    if template in FLUX_TEMPLATES:
        assert prompt["1"]["class_type"] == "CheckpointLoaderSimple"
        prompt["1"] = {"class_type": "TestTinyFluxCheckpoint", "inputs": {}}
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    (png,) = server.output_images(entry, save_node(prompt))
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if kind == EDIT:
        assert out.shape == (144, 200, 3), "VAE-cropped 203×150 input"
        assert not np.array_equal(out, rgb[3:147, 1:201]), "the edit changed the image"
        return
    assert out.shape == rgb.shape
    if kind == INPAINT:
        keep = alpha == 255
        assert np.array_equal(out[keep], rgb[keep]), "unmasked pixels must equal the input exactly"
        assert not np.array_equal(out[~keep], rgb[~keep]), "the hole is regenerated"
    else:
        (preview,) = server.output_images(entry, save_node(prompt, "PreviewImage"))
        mask = np.asarray(Image.open(io.BytesIO(preview)).convert("L")) > 0
        assert mask.shape == rgb.shape[:2], "SAM2 Mask gives a MASK of the image's size"
        assert mask.any() and not mask.all(), "the check below sees both sides of the mask"
        assert np.array_equal(out[~mask], rgb[~mask]), "every pixel outside the SAM2 mask is the input's"
        assert not np.array_equal(out[mask], rgb[mask]), "the masked pixels are regenerated"


def test_empty_mask_returns_the_input_unchanged(server):
    rgb = rgba_input(server, "nohole.png", hole_alpha("none"))
    entry = server.run(example_prompt("nohole.png"))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    assert np.array_equal(output_rgb(server, entry), rgb)


def test_picture_without_alpha_returns_the_input_unchanged(server):
    """Load Image gives a 64×64 zero MASK for an RGB picture: nothing to inpaint, nothing changes."""
    from PIL import Image

    rgb = rgba_input(server, "rgba.png", hole_alpha("none"))
    Image.fromarray(rgb, "RGB").save(server.input_dir / "rgb.png")
    entry = server.run(example_prompt("rgb.png"))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    assert np.array_equal(output_rgb(server, entry), rgb)


def test_full_mask_regenerates_everything(server):
    rgb = rgba_input(server, "full.png", hole_alpha("full"))
    entry = server.run(example_prompt("full.png", {("13", "color_match"): 0.0}))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    assert out.shape == rgb.shape and not np.array_equal(out, rgb)


@pytest.mark.parametrize("steps", [1, 2, 8])
def test_other_step_counts_and_lcm_spacing(server, steps):
    alpha = hole_alpha("box")
    rgb = rgba_input(server, f"steps{steps}.png", alpha)
    prompt = example_prompt(f"steps{steps}.png", {("10", "steps"): steps, ("9", "hole_init"): "noise",
                                                      ("10", "spacing"): "lcm" if steps == 8 else "trailing"})
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    assert np.array_equal(output_rgb(server, entry)[alpha == 255], rgb[alpha == 255])


def test_bad_widget_value_is_refused_by_validation(server):
    rgba_input(server, "bad.png", hole_alpha("box"))
    status, body = server.submit(example_prompt("bad.png", {("10", "steps"): 0}))
    assert status == 400 and "10" in body.get("node_errors", {})
    assert server.alive()


def with_other_aspect_mask(prompt: dict, new_ids: tuple[str, str], target: str) -> dict:
    """``prompt`` with node ``target``'s mask replaced by a 64×200 one made from the image (ImageScale → ImageToMask,
    as nodes ``new_ids``): a mask of another aspect ratio than the 203×150 picture."""
    scale, to_mask = new_ids
    prompt[scale] = {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest-exact",
                                                             "width": 64, "height": 200, "crop": "disabled"}}
    prompt[to_mask] = {"class_type": "ImageToMask", "inputs": {"image": [scale, 0], "channel": "red"}}
    prompt[target]["inputs"]["mask"] = [to_mask, 0]
    return prompt


def test_bad_input_gives_a_named_error_and_the_server_survives(server):
    rgba_input(server, "bad2.png", hole_alpha("box"))
    entry = server.run(example_prompt("bad2.png", {("10", "timesteps"): "999, oops"}))
    assert entry["status"]["status_str"] == "error"
    assert "timesteps: '999, oops' is not a comma-separated list of integers" in error_message(entry)
    prompt = with_other_aspect_mask(example_prompt("bad2.png"), ("15", "16"), "13")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "mask: 64×200 px (8:25) does not match the image's 203×150 px (1.35:1)" \
        in error_message(entry)
    assert server.alive()
    ok = server.run(example_prompt("bad2.png", {("6", "noise_seed"): 3}))
    assert ok["status"]["status_str"] == "success", error_message(ok)


BIG = "big_photo_inpaint"  # node 20 FewStep Crop, 10 FewStep Schedule, 13 FewStep Stitch, 14 Save Image


def two_hole_alpha() -> np.ndarray:
    """Two holes far apart, one in the bottom-right corner: FewStep Crop's ``separate`` makes two crops."""
    alpha = np.full((150, 203), 255, np.uint8)
    alpha[20:50, 20:60] = 0
    alpha[120:, 160:] = 0
    return alpha


def test_big_photo_template_stitches_two_regions_exactly(server):
    alpha = two_hole_alpha()
    rgb = rgba_input(server, "big2.png", alpha)
    entry = server.run(example_prompt("big2.png", {("20", "context_px"): 8}, example=BIG))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    keep = alpha == 255
    assert out.shape == rgb.shape and np.array_equal(out[keep], rgb[keep])
    assert not np.array_equal(out[20:50, 20:60], rgb[20:50, 20:60]), "both holes are regenerated"
    assert not np.array_equal(out[120:, 160:], rgb[120:, 160:])


def test_big_photo_with_an_empty_mask_samples_nothing(server):
    """Stitch does not ask for the generated crops when there is no hole: a schedule that would fail is never run."""
    rgb = rgba_input(server, "bignohole.png", hole_alpha("none"))
    entry = server.run(example_prompt("bignohole.png", {("10", "timesteps"): "999, oops"}, example=BIG))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    assert np.array_equal(output_rgb(server, entry), rgb)


def test_big_photo_bad_mask_is_named_and_the_server_survives(server):
    rgba_input(server, "bigbad.png", hole_alpha("box"))
    prompt = with_other_aspect_mask(example_prompt("bigbad.png", example=BIG), ("30", "31"), "20")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "mask: 64×200 px (8:25) does not match the image's 203×150 px (1.35:1)" in error_message(entry)
    assert server.alive()
    ok = server.run(example_prompt("bigbad.png", example=BIG))
    assert ok["status"]["status_str"] == "success", error_message(ok)


def test_inverfill_loader_error_reaches_the_user(server):
    rgba_input(server, "inverfill2.png", hole_alpha("box"))
    prompt = example_prompt("inverfill2.png", {("6", "network_name"): "nope.safetensors"}, example="inverfill_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "network_name: inverfill weight 'nope.safetensors' was not found in" in error_message(entry)
    assert server.alive()


def test_region_aware_inpaint_with_the_tiny_trainer_lora(server, tiny_rad_run):
    """The RAD template with the tiny trainer's LoRA (from an extra models/fewstep/rad path) instead of none."""
    alpha = hole_alpha("box")
    rgb = rgba_input(server, "rad.png", alpha)
    name = server.install("extra_rad", tiny_rad_run["weights"], "tiny_rad.safetensors")
    prompt = example_prompt("rad.png", {("6", "rad_lora"): name}, example="region_aware_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    (png,) = server.output_images(entry, save_node(prompt))
    from PIL import Image

    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert out.shape == rgb.shape and np.array_equal(out[alpha == 255], rgb[alpha == 255])


def test_turbofill_adapter_for_another_family_is_refused_and_the_server_survives(server, tiny_turbofill_run):
    from core.weights import load_weights, save_weights

    rgba_input(server, "turbofill_bad.png", hole_alpha("box"))
    folder = server.base / "models" / "extra_turbofill"
    folder.mkdir(parents=True, exist_ok=True)
    sd, meta = load_weights(tiny_turbofill_run["weights"])
    save_weights(folder / "tiny_turbofill_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    prompt = example_prompt("turbofill_bad.png", {("6", "adapter_name"): "tiny_turbofill_sdxl.safetensors"},
                            example="turbofill_inpaint")
    bad = server.run(prompt)
    assert bad["status"]["status_str"] == "error"
    assert "adapter_name: tiny_turbofill_sdxl.safetensors was trained for a sdxl base" in error_message(bad)
    assert server.alive()


@requires_sam2
def test_sam2_click_outside_the_image_is_refused_and_the_server_survives(server, request):
    rgba_input(server, "sam2_bad.png", hole_alpha("none"))
    prompt = example_prompt("sam2_bad.png", weights_for("sam2_click_inpaint", server, request),
                            example="sam2_click_inpaint")
    prompt["16"]["inputs"]["positive_points"] = '[{"x": 500, "y": 70}]'
    bad = server.run(prompt)
    assert bad["status"]["status_str"] == "error" and "positive_points" in error_message(bad) and server.alive()
