"""TurboEdit nodes against real ComfyUI objects (COMFYUI_DIR importable; skipped otherwise)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from .conftest import pack_module, requires_comfyui

pytestmark = requires_comfyui
CAPTION = "a photo of a red car parked on a quiet street"


def node(name: str):
    return getattr(pack_module("nodes.turboedit"), name)


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
    with pytest.raises(ValueError, match="edit: 'green' does not occur in the caption"):
        node("CaptionEditor").execute(clip=sd15[1], caption=CAPTION, edit="green → blue")
    with pytest.raises(ValueError, match="caption: empty"):
        node("CaptionEditor").execute(clip=sd15[1], caption="  ", edit="red → blue")
    with pytest.raises(ValueError, match="edit: the caption names several colors"):
        node("CaptionEditor").execute(clip=sd15[1], caption="a red car and a green bus", edit="color: blue")


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
    sampler = node("TurboEditSampler").execute(inversion=inversion, mask=mask, blur=0).result[0]
    out = edit(model, captions[1], sampler, sigmas, latent)
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear").expand_as(z)
    # The sampler returns the source exactly outside the mask (model space); ComfyUI then scales the LATENT out
    # (÷ scale_factor), whose float round trip is the only difference left, as for every ComfyUI sampler.
    scaled = model.model.process_latent_out(model.model.process_latent_in(z))
    assert torch.equal(out[m == 0], scaled[m == 0])
    assert rel(out[m == 1], z[m == 1]) > 1e-3


@pytest.mark.parametrize("source", ["mask", "noise_mask"])
def test_every_local_mask_is_blurred_by_default_and_blur_zero_keeps_it_sharp(sd15, captions, inverted, source):
    """TurboEdit blurs its local mask (Gaussian, then resized): a MASK input or the LATENT's noise mask too, not only
    the attention mask. By default the edit reaches a halo just outside the hard mask; with blur = 0 it does not;
    beyond the blur everything stays the source."""
    from scipy.ndimage import binary_dilation

    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    mask = torch.zeros(1, 128, 128)
    mask[:, 48:80, 48:80] = 1
    hard = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear")[0, 0] > 0
    halo = torch.from_numpy(binary_dilation(hard.numpy(), iterations=1)) & ~hard
    far = ~torch.from_numpy(binary_dilation(hard.numpy(), iterations=4))
    scaled = model.model.process_latent_out(model.model.process_latent_in(z))
    changed = {}
    for blur in (-1, 0):
        args = {"mask": mask} if source == "mask" else {}
        run_latent = latent if source == "mask" else {**latent, "noise_mask": mask}
        sampler = node("TurboEditSampler").execute(inversion=inversion, blur=blur, **args).result[0]
        out = edit(model, captions[1], sampler, sigmas, run_latent)
        changed[blur] = (out - scaled).abs().amax(1)[0]
        assert torch.equal(out[..., far], scaled[..., far]), blur
    assert float(changed[-1][halo].max()) > 0 and float(changed[0][halo].max()) == 0


def test_attention_mask_from_the_changed_tokens(sd15, captions, inverted):
    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    sampler = node("TurboEditSampler").execute(inversion=inversion, tokens=captions[4], threshold=0.5).result[0]
    out = edit(model, captions[1], sampler, sigmas, latent)
    full = edit(model, captions[1], node("TurboEditSampler").execute(inversion=inversion, local_mask="off").result[0],
                sigmas, latent)
    assert not torch.allclose(out, full), "a local mask was applied"
    assert not torch.allclose(out, z), "the edit changed something"


@pytest.mark.parametrize("caption, edit_text, source, target", [
    ("a photo of a red car", "red →", [5], []),  # a deletion: the removed word, nothing in the target
    ("a (red) car", "(red) → [blue]", [2], [2, 3, 4]),  # "[blue]" is three tokens; "(red)" is a weighted "red"
    ("a photo of a red car", "car → big truck", [6], [6, 7]),
])
def test_changed_tokens_are_real_tokens_never_padding(sd15, caption, edit_text, source, target):
    tokens = node("CaptionEditor").execute(clip=sd15[1], caption=caption, edit=edit_text).result[4]
    assert (tokens["source"], tokens["target"]) == (source, target)


def test_changed_tokens_count_positions_across_77_token_chunks(sd15):
    long = " ".join(["a photo of a quiet street"] * 16) + " with a red car"  # > 75 words: a second chunk
    tokens = node("CaptionEditor").execute(clip=sd15[1], caption=long, edit="red → blue").result[4]
    words = len(long.split())
    assert tokens["source"] == tokens["target"] == [77 + 1 + (words - 2 - 75)], "position in the 2nd chunk"


def test_a_deletion_edits_the_whole_image_instead_of_nothing(sd15, inverted, caplog):
    model = sd15[0]
    z, inversion, _, sigmas, latent = inverted
    conds = node("CaptionEditor").execute(clip=sd15[1], caption=CAPTION, edit="red →").result
    assert conds[4]["target"] == []
    sampler = node("TurboEditSampler").execute(inversion=inversion, tokens=conds[4]).result[0]
    with caplog.at_level("WARNING"):
        out = edit(model, conds[1], sampler, sigmas, latent)
    full = edit(model, conds[1], node("TurboEditSampler").execute(inversion=inversion, local_mask="off").result[0],
                sigmas, latent)
    assert torch.equal(out, full) and "only deletes words" in caplog.text


@pytest.mark.parametrize("case, message", [
    ("steps", "sigmas: 2 steps, the inversion has 4"),
    ("resolution", "inversion: was computed for a latent of shape"),
    ("mask", r"mask: 64×32 px \(2:1\) does not match the image behind the latent"),
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
    weights.save_weights(folder / "tiny_broken.safetensors",
                         {k: v for k, v in sd.items() if not k.startswith("mid_block")}, meta)
    weights.save_weights(folder / "tiny_inverfill.safetensors", sd, {**meta, "kind": "inverfill"})
    return folder


def test_trained_encoder_loads_and_inverts(sd15, captions, encoder_dir, tiny_turboedit_run, image_folder):
    """The tiny trainer's output loads unchanged into another SD1.5-layout MODEL and runs its 8-pass inversion."""
    model, _, vae = sd15
    encoder = node("TurboEditEncoderLoader").execute(model=model, encoder_name="tiny_encoder.safetensors").result[0]
    from PIL import Image
    import numpy as np

    image = torch.from_numpy(np.asarray(Image.open(image_folder / "coffee.png").convert("RGB").resize((128, 128)),
                                        dtype=np.float32) / 255)[None]
    inversion, recon, sigmas, latent = node("IterativeInverter").execute(
        model=model, conditioning=captions[0], steps=4, method="encoder", seed=0, image=image, vae=vae,
        encoder=encoder).result
    assert inversion.method == "encoder" and recon["samples"].shape == latent["samples"].shape == (1, 4, 16, 16)
    assert len(inversion.trajectory.noises) == 4
    with pytest.raises(ValueError, match=r"encoder: tiny_encoder\.safetensors was trained for timesteps"):
        node("IterativeInverter").execute(model=model, conditioning=captions[0], steps=2, method="encoder", seed=0,
                                          latent=latent, encoder=encoder)


@pytest.mark.parametrize("name, message", [
    ("tiny_sdxl.safetensors", r"encoder_name: tiny_sdxl\.safetensors: was trained for a sdxl base "
                              r"but the MODEL is sd15"),
    ("tiny_broken.safetensors", r"encoder_name: tiny_broken\.safetensors: does not match the MODEL's UNet"),
    ("tiny_inverfill.safetensors", r"encoder_name: tiny_inverfill\.safetensors: is a 'inverfill' weight"),
    ("absent.safetensors", r"encoder_name: turboedit weight 'absent\.safetensors' was not found in .*turboedit_models"),
])
def test_encoder_loader_refuses_bad_files_naming_input_and_file(sd15, encoder_dir, name, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        node("TurboEditEncoderLoader").execute(model=sd15[0], encoder_name=name)


@pytest.fixture(scope="module")
def trained_base(tiny_bases):
    """The base the tiny encoder was trained on: its UNet's weights in a ComfyUI MODEL of the same layout (the tiny
    checkpoint's, through ComfyUI's own key map), its text encoder and VAE (diffusers)."""
    import comfy.sd
    import comfy.utils

    from trainers.common.base_model import load_base_model

    from .support.comfy_server import tiny_checkpoint

    base = load_base_model(tiny_bases["sd15"])
    model, _, _, _ = comfy.sd.load_checkpoint_guess_config(
        str(tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")), output_vae=False, output_clip=False)
    mapping = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    trained = base.unet.state_dict()
    model.model.diffusion_model.load_state_dict({ldm: trained[key] for key, ldm in mapping.items()
                                                 if key in trained}, strict=True)
    return model, base


def test_trained_encoder_replays_held_out_images_as_the_trainer_measured_them(
        trained_base, encoder_dir, tiny_turboedit_run, image_folder):
    """Through the nodes, on the MODEL it was trained for, the encoder's 8-pass reconstruction of the trainer's
    held-out images (1) equals the trainer's own reconstruction (core.invert_with_encoder on the diffusers
    encoder and base, what its held-out metric measures) to ≤ 1e-3 relative, and (2) is at most half as far
    from the image latent as that of the encoder it started from (the trainer's done-when, here in ComfyUI).

    On this random-weight base the reconstruction stays far from the image in absolute terms, and part of the
    gain comes from the encoder's learned output statistics rather than from reading the image (docs/trainers.md,
    TurboEdit trainer): (1) is what pins the ComfyUI path to what was trained."""
    from diffusers import UNet2DConditionModel

    from core.schedules import fewstep_sigmas, sigmas_from_alphas_cumprod, trailing_timesteps
    from core.turboedit import invert_with_encoder
    from trainers.common.images import load_image
    from trainers.turboedit import encoder_fn, encoder_from_base, generator_denoiser

    model, base = trained_base
    weights = pack_module("core.weights")
    trained_sd, meta = weights.load_weights(tiny_turboedit_run["weights"])
    weights.save_weights(encoder_dir / "untrained.safetensors", encoder_from_base(base.unet).state_dict(), meta)
    loader, inverter = node("TurboEditEncoderLoader"), node("IterativeInverter")
    held_out = ["immunohistochemistry", "page", "retina", "rocket"]  # turboedit_tiny.yaml: the last 4 by name
    with torch.no_grad():
        images = torch.stack([load_image(image_folder / f"{n}.png", 64) for n in held_out])
        z = base.vae.encode(images * 2 - 1).latent_dist.mean  # a ComfyUI LATENT (unscaled)
        cond = base.encode_prompts(["a photo"] * len(held_out), "cpu", (64, 64))
    errors, recons = {}, {}
    for name in ("tiny_encoder.safetensors", "untrained.safetensors"):
        encoder = loader.execute(model=model, encoder_name=name).result[0]
        _, recon, _, _ = inverter.execute(model=model, conditioning=[[cond["encoder_hidden_states"], {}]], steps=4,
                                          method="encoder", seed=0, latent={"samples": z}, encoder=encoder).result
        recons[name], errors[name] = recon["samples"], rel(recon["samples"], z)

    trained = UNet2DConditionModel.from_config(meta["unet_config"]).eval()
    trained.load_state_dict(trained_sd)
    table = sigmas_from_alphas_cumprod(base.alphas_cumprod).float()
    with torch.no_grad():
        traj = invert_with_encoder(generator_denoiser(base, torch.float32),
                                   encoder_fn(trained, table, cond, torch.float32),
                                   z * base.scaling_factor, fewstep_sigmas(trailing_timesteps(4), table), cond,
                                   disable=True)
    assert rel(recons["tiny_encoder.safetensors"], traj.x0s[-1] / base.scaling_factor) <= 1e-3
    assert errors["tiny_encoder.safetensors"] <= 0.5 * errors["untrained.safetensors"], errors
