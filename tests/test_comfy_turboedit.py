"""TurboEdit nodes against real ComfyUI objects (COMFYUI_DIR importable; skipped otherwise)."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from .conftest import PACK_NAME, REAL_COMFYUI, load_pack

pytestmark = pytest.mark.skipif(not REAL_COMFYUI, reason="needs COMFYUI_DIR importable in this interpreter")
CAPTION = "a photo of a red car parked on a quiet street"


def pack_module(name: str):
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")


def node(name: str):
    return getattr(pack_module("nodes.turboedit"), name)


@pytest.fixture(scope="module")
def sd15():
    import comfy.sd

    from .support.comfy_server import tiny_checkpoint

    path = tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return model, clip, vae


@pytest.fixture(scope="module")
def captions(sd15):
    return node("CaptionEditor").execute(clip=sd15[1], caption=CAPTION, edit="red → blue").result


@pytest.fixture(scope="module")
def inverted(sd15, captions):
    model = sd15[0]
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    inversion, recon, sigmas, latent = node("IterativeInverter").execute(
        model=model, conditioning=captions[0], steps=4, method="exact", seed=3, latent={"samples": z}).result
    return z, inversion, recon, sigmas, latent


def edit(model, conds, sampler, sigmas, latent):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise, SamplerCustomAdvanced

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    out, _ = SamplerCustomAdvanced().sample(Noise_EmptyNoise(), guider, sampler, sigmas, latent)
    return out["samples"]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_caption_editor_outputs(captions):
    source, target, src_text, tgt_text, tokens, report = captions
    assert tgt_text == CAPTION.replace("red", "blue") and src_text == CAPTION
    assert tokens["target"] == tokens["source"] == [5], "'red'/'blue' are token 5 after <start> a photo of a"
    assert json.loads(report)["occurrences"] == 1
    assert not torch.equal(source[0][0], target[0][0]) and source[0][0].shape == target[0][0].shape
    same = torch.isclose(source[0][0], target[0][0]).all(-1)[0]
    assert not same[5] and same[:5].all(), "tokens before the edit are encoded identically"


def test_caption_editor_strength_interpolates(sd15, captions):
    half = node("CaptionEditor").execute(clip=sd15[1], caption=CAPTION, edit="red → blue", strength=0.5).result
    torch.testing.assert_close(half[1][0][0], torch.lerp(captions[0][0][0], captions[1][0][0], 0.5))
    with pytest.raises(ValueError, match="'green' does not occur"):
        node("CaptionEditor").execute(clip=sd15[1], caption=CAPTION, edit="green → blue")


def test_exact_inversion_reproduces_the_latent(sd15, captions, inverted):
    """Done-when: replaying with the source caption gives the input back to ≤ 1e-4 relative error."""
    model = sd15[0]
    z, inversion, recon, sigmas, latent = inverted
    assert inversion.trajectory.steps == 4 and rel(recon["samples"], z) <= 1e-4
    sampler = node("TurboEditSampler").execute(inversion=inversion, local_mask="off").result[0]
    assert rel(edit(model, captions[0], sampler, sigmas, latent), z) <= 1e-4


def test_masked_edit_keeps_the_outside_and_changes_the_inside(sd15, captions, inverted):
    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    mask = torch.zeros(1, 128, 128)
    mask[:, 32:96, 32:96] = 1
    sampler = node("TurboEditSampler").execute(inversion=inversion, mask=mask).result[0]
    out = edit(model, captions[1], sampler, sigmas, latent)
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear").expand_as(z)
    assert rel(out[m == 0], z[m == 0]) <= 1e-4
    assert rel(out[m == 1], z[m == 1]) > 1e-3


def test_attention_mask_from_the_changed_tokens(sd15, captions, inverted):
    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    sampler = node("TurboEditSampler").execute(inversion=inversion, tokens=captions[4], threshold=0.5).result[0]
    out = edit(model, captions[1], sampler, sigmas, latent)
    full = edit(model, captions[1], node("TurboEditSampler").execute(inversion=inversion, local_mask="off").result[0],
                sigmas, latent)
    assert not torch.allclose(out, full), "a local mask was applied"
    assert not torch.allclose(out, z), "the edit changed something"


@pytest.mark.parametrize("case, message", [
    ("steps", "sigmas: 2 steps, the inversion has 4"),
    ("resolution", "inversion: was computed for a latent of shape"),
    ("mask", "mask: 64×32 does not match"),
])
def test_edit_errors_name_the_input(sd15, captions, inverted, case, message):
    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    args = {"inversion": inversion}
    if case == "steps":
        sigmas = sigmas[[0, 2, 4]]
    if case == "resolution":
        latent = {"samples": torch.randn(1, 4, 8, 8)}
    if case == "mask":
        args["mask"] = torch.rand(1, 32, 64)
    sampler = node("TurboEditSampler").execute(**args).result[0]
    with pytest.raises(ValueError, match=message):
        edit(model, captions[1], sampler, sigmas, latent)


def test_inversion_from_another_model_is_refused(sd15, captions, inverted):
    import comfy.sd

    from .support.comfy_server import tiny_checkpoint

    other, _, _, _ = comfy.sd.load_checkpoint_guess_config(
        str(tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")), output_vae=False, output_clip=False)
    z, inversion, _, sigmas, latent = inverted
    sampler = node("TurboEditSampler").execute(inversion=inversion).result[0]
    with pytest.raises(ValueError, match="another MODEL"):
        edit(other, captions[1], sampler, sigmas, latent)


def test_inverter_needs_an_input_and_an_encoder(sd15, captions):
    with pytest.raises(ValueError, match="connect latent, or image and vae"):
        node("IterativeInverter").execute(model=sd15[0], conditioning=captions[0], steps=4, method="exact", seed=0)
    with pytest.raises(ValueError, match="encoder: method 'encoder' needs"):
        node("IterativeInverter").execute(model=sd15[0], conditioning=captions[0], steps=4, method="encoder",
                                          seed=0, latent={"samples": torch.zeros(1, 4, 8, 8)})


@pytest.fixture(scope="module")
def encoder_dir(tiny_turboedit_run, tmp_path_factory):
    import folder_paths

    weights = pack_module("core.weights")
    folder = tmp_path_factory.mktemp("turboedit_models")
    pack_module("nodes.paths").register_model_folders()
    folder_paths.add_model_folder_path("fewstep_turboedit", str(folder))
    sd, meta = weights.load_weights(tiny_turboedit_run["weights"])
    weights.save_weights(folder / "tiny_encoder.safetensors", sd, meta)
    weights.save_weights(folder / "tiny_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    return folder


def test_trained_encoder_loads_and_inverts(sd15, captions, encoder_dir, tiny_turboedit_run, image_folder):
    """The tiny trainer's output loads unchanged; its 8-pass inversion replays close to the image."""
    model, _, vae = sd15
    encoder = node("TurboEditEncoderLoader").execute(model=model, encoder_name="tiny_encoder.safetensors").result[0]
    from PIL import Image
    import numpy as np

    image = torch.from_numpy(np.asarray(Image.open(image_folder / "coffee.png").convert("RGB").resize((128, 128)),
                                        dtype=np.float32) / 255)[None]
    inversion, recon, sigmas, latent = node("IterativeInverter").execute(
        model=model, conditioning=captions[0], steps=4, method="encoder", seed=0, image=image, vae=vae,
        encoder=encoder).result
    assert inversion.method == "encoder" and torch.isfinite(recon["samples"]).all()
    with pytest.raises(ValueError, match="trained for timesteps"):
        node("IterativeInverter").execute(model=model, conditioning=captions[0], steps=2, method="encoder", seed=0,
                                          latent=latent, encoder=encoder)
    with pytest.raises(ValueError, match="trained for a sdxl base"):
        node("TurboEditEncoderLoader").execute(model=model, encoder_name="tiny_sdxl.safetensors")
