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

from .support.comfy_server import CHECKPOINT, PACK_FOLDER, ComfyServer, comfyui_dir, error_message, tiny_checkpoint
from .support.node_schemas import load_snapshot, normalise
from .support.tiny_sam2 import requires_sam2

pytestmark = pytest.mark.skipif(comfyui_dir() is None, reason="set COMFYUI_DIR to run real-host tests")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "fewstep_inpaint_no_extra_weights"
SAVE_NODE, COMPOSITE_NODE = "14", "13"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = Path.home() / ".cache" / "fewstep-tests"
    checkpoint = tiny_checkpoint(cache)
    with ComfyServer(tmp_path_factory.mktemp("comfy"), checkpoint) as srv:
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
    log = server.log_text()
    assert "IMPORT FAILED" not in log and "Cannot import" not in log
    assert f"custom_nodes/{PACK_FOLDER}" in log


def test_live_schemas_match_the_snapshot_and_the_stand_in(server):
    info = server.get_json("/object_info")
    live = {k: normalise(v) for k, v in info.items() if k.startswith("FewStep")}
    assert live == load_snapshot()


def test_example_workflow_is_in_the_template_browser(server):
    templates = server.get_json("/api/workflow_templates")
    assert {EXAMPLE, "inverfill_inpaint", "instant_edit_exact"} <= set(templates.get(PACK_FOLDER, []))
    served = server.get_json(f"/api/workflow_templates/{PACK_FOLDER}/{EXAMPLE}.json")
    assert served == json.loads((REPO / "example_workflows" / f"{EXAMPLE}.json").read_text())


def test_model_folders_are_registered_with_extra_paths_and_safetensors_only(server):
    extra = server.base / "models" / "extra_inverfill"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "mine.safetensors").write_bytes(b"x")
    (extra / "pickled.ckpt").write_bytes(b"x")
    paths = server.get_json("/internal/folder_paths")["fewstep_inverfill"]
    assert any(Path(p).parts[-2:] == ("fewstep", "inverfill") for p in paths)
    assert str(extra) in paths
    for kind in ("turbofill", "rad", "turboedit"):
        assert any(Path(p).parts[-2:] == ("fewstep", kind) for p in server.get_json("/internal/folder_paths")[f"fewstep_{kind}"])
    assert server.get_json("/models/fewstep_inverfill") == ["mine.safetensors"]


def test_example_workflow_keeps_unmasked_pixels_exactly(server):
    alpha = hole_alpha("box")
    rgb = rgba_input(server, "box.png", alpha)
    entry = server.run(example_prompt("box.png"))
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    assert out.shape == rgb.shape
    keep = alpha == 255
    assert np.array_equal(out[keep], rgb[keep]), "unmasked pixels must equal the input exactly"
    assert not np.array_equal(out[~keep], rgb[~keep]), "the hole is regenerated"


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


def test_bad_input_gives_a_named_error_and_the_server_survives(server):
    rgba_input(server, "bad2.png", hole_alpha("box"))
    entry = server.run(example_prompt("bad2.png", {("10", "timesteps"): "999, oops"}))
    assert entry["status"]["status_str"] == "error"
    assert "timesteps: '999, oops' is not a comma-separated list of integers" in error_message(entry)
    prompt = example_prompt("bad2.png")
    prompt["15"] = {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest-exact",
                                                            "width": 64, "height": 200, "crop": "disabled"}}
    prompt["16"] = {"class_type": "ImageToMask", "inputs": {"image": ["15", 0], "channel": "red"}}
    prompt["13"]["inputs"]["mask"] = ["16", 0]
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "mask: 64×200 does not match the 203×150 target's aspect ratio" in error_message(entry)
    assert server.alive()
    ok = server.run(example_prompt("bad2.png", {("6", "noise_seed"): 3}))
    assert ok["status"]["status_str"] == "success", error_message(ok)


def test_inverfill_example_runs_with_a_trained_tiny_network(server, tiny_inverfill_run):
    """The InverFill workflow with the network the documented tiny trainer run produced, loaded as is."""
    import shutil

    folder = server.base / "models" / "extra_inverfill"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_inverfill_run["weights"], folder / "tiny_inverfill.safetensors")
    assert "tiny_inverfill.safetensors" in server.get_json("/models/fewstep_inverfill")
    alpha = hole_alpha("box")
    rgb = rgba_input(server, "inverfill.png", alpha)
    prompt = example_prompt("inverfill.png", {("6", "network_name"): "tiny_inverfill.safetensors"},
                            example="inverfill_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    assert out.shape == rgb.shape
    assert np.array_equal(out[alpha == 255], rgb[alpha == 255])
    assert not np.array_equal(out[alpha == 0], rgb[alpha == 0])


def test_inverfill_loader_error_reaches_the_user(server):
    rgba_input(server, "inverfill2.png", hole_alpha("box"))
    prompt = example_prompt("inverfill2.png", {("6", "network_name"): "nope.safetensors"}, example="inverfill_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "error"
    assert "nope.safetensors' was not found in" in error_message(entry)
    assert server.alive()


def test_instant_edit_exact_inversion_runs_to_an_edited_image(server):
    """The exact-inversion TurboEdit workflow (no weights) on the tiny checkpoint: an edited image comes out."""
    from PIL import Image

    rgb = rgba_input(server, "edit.png", hole_alpha("none"))
    prompt = example_prompt("edit.png", example="instant_edit_exact")
    prompt["10"]["inputs"]["filename_prefix"] = "instant_edit_test"
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    (png,) = server.output_images(entry, "10")
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert out.shape == (144, 200, 3), "VAE-cropped 203×150 input"
    assert np.isfinite(out).all() and not np.array_equal(out, rgb[3:147, 1:201])
    templates = server.get_json("/api/workflow_templates")[PACK_FOLDER]
    assert {"instant_edit_exact", "instant_edit_encoder"} <= set(templates)


def test_region_aware_inpaint_runs_and_keeps_unmasked_pixels(server, tiny_rad_run):
    """The RAD workflow, without and with the tiny trainer's LoRA (from an extra models/fewstep/rad path)."""
    import shutil

    from PIL import Image

    folder = server.base / "models" / "extra_rad"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_rad_run["weights"], folder / "tiny_rad.safetensors")
    alpha = hole_alpha("box")
    rgb = rgba_input(server, "rad.png", alpha)
    for lora in ("none", "tiny_rad.safetensors"):
        entry = server.run(example_prompt("rad.png", {("6", "rad_lora"): lora}, example="region_aware_inpaint"))
        assert entry["status"]["status_str"] == "success", (lora, error_message(entry))
        (png,) = server.output_images(entry, "9")
        out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert out.shape == rgb.shape and np.array_equal(out[alpha == 255], rgb[alpha == 255])


def test_turbofill_example_runs_with_the_tiny_trainer_adapter(server, tiny_turbofill_run):
    """The TurboFill workflow with the adapter the documented tiny trainer run produced, loaded as is."""
    import shutil

    folder = server.base / "models" / "extra_turbofill"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_turbofill_run["weights"], folder / "tiny_turbofill.safetensors")
    assert "tiny_turbofill.safetensors" in server.get_json("/models/fewstep_turbofill")
    alpha = hole_alpha("box")
    rgb = rgba_input(server, "turbofill.png", alpha)
    prompt = example_prompt("turbofill.png", {("6", "adapter_name"): "tiny_turbofill.safetensors"},
                            example="turbofill_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    assert out.shape == rgb.shape and np.array_equal(out[alpha == 255], rgb[alpha == 255])
    assert not np.array_equal(out[alpha == 0], rgb[alpha == 0])
    from core.weights import load_weights, save_weights

    sd, meta = load_weights(tiny_turbofill_run["weights"])
    save_weights(folder / "tiny_turbofill_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    prompt["6"]["inputs"]["adapter_name"] = "tiny_turbofill_sdxl.safetensors"
    bad = server.run(prompt)
    assert bad["status"]["status_str"] == "error" and "trained for a sdxl base" in error_message(bad)
    assert server.alive()


@requires_sam2
def test_sam2_click_example_runs_to_an_inpainted_image(server, tmp_path_factory):
    """The SAM2 click workflow with a random tiny SAM2.1 (.safetensors in an extra models/sam2 path)."""
    import shutil

    from PIL import Image
    from scipy.ndimage import binary_dilation

    from .support.tiny_sam2 import shared_tiny_sam2

    folder = server.base / "models" / "extra_sam2"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_tiny_sam2(tmp_path_factory).safetensors, folder / "sam2_tiny_random.safetensors")
    rgb = rgba_input(server, "sam2.png", hole_alpha("none"))
    prompt = example_prompt("sam2.png", {("15", "sam2_name"): "sam2_tiny_random.safetensors"},
                            example="sam2_click_inpaint")
    entry = server.run(prompt)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    out = output_rgb(server, entry)
    assert out.shape == rgb.shape
    (preview,) = server.output_images(entry, "19")
    mask = np.asarray(Image.open(io.BytesIO(preview)).convert("L")) > 0
    assert mask.shape == rgb.shape[:2], "SAM2 Mask gives a MASK of the image's size"
    far = ~binary_dilation(mask, iterations=12)
    assert np.array_equal(out[far], rgb[far]), "pixels away from the SAM2 mask are the input's"
    prompt["16"]["inputs"]["positive_points"] = '[{"x": 500, "y": 70}]'
    bad = server.run(prompt)
    assert bad["status"]["status_str"] == "error" and "positive_points" in error_message(bad) and server.alive()
