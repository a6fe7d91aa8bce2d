"""InverFill nodes against real ComfyUI objects (COMFYUI_DIR importable; skipped otherwise)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from .conftest import pack_module, requires_comfyui
from .support.recorders import InputRecorder

pytestmark = requires_comfyui


@pytest.fixture(scope="module")
def inverfill_dir(tiny_inverfill_run, tmp_path_factory):
    """A registered models/fewstep/inverfill folder holding the tiny run's output and variants of it."""
    import folder_paths

    weights = pack_module("core.weights")
    folder = tmp_path_factory.mktemp("inverfill_models")
    pack_module("nodes.paths").register_model_folders()
    folder_paths.add_model_folder_path("fewstep_inverfill", str(folder))
    sd, meta = weights.load_weights(tiny_inverfill_run["weights"])
    weights.save_weights(folder / "tiny_latent.safetensors", sd, meta)
    weights.save_weights(folder / "tiny_pixel.safetensors", sd, {**meta, "masking": "pixel"})
    weights.save_weights(folder / "tiny_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    small = {k: v for k, v in sd.items() if not k.startswith("mid_block")}
    weights.save_weights(folder / "tiny_broken.safetensors", small, meta)
    data = (folder / "tiny_latent.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "pickle.safetensors").write_bytes(b"\x80\x04\x95 not safetensors at all" * 10)
    return folder


def load(model, name):
    return pack_module("nodes.inverfill").InverFillLoader.execute(model=model, network_name=name).result[0]


def scene(batch=1):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(batch, 4, 16, 16, generator=g)
    mask = torch.zeros(batch, 128, 128)
    mask[:, 32:96, 40:104] = 1
    return z, mask


def test_loader_builds_the_network_and_matches_the_trained_unet(sd15, conds, inverfill_dir, tiny_inverfill_run):
    """ComfyUI's copy of F computes what the trainer's diffusers UNet computes (key map and timestep)."""
    from diffusers import UNet2DConditionModel

    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    assert net.family == "sd15" and net.masking == "latent"
    sd, _ = pack_module("core.weights").load_weights(tiny_inverfill_run["weights"])
    reference = UNet2DConditionModel.from_config(pack_module("core.weights").read_metadata(
        tiny_inverfill_run["weights"])["unet_config"])
    reference.load_state_dict(sd)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    context = conds[0][0]
    with torch.no_grad():
        expected = reference(x, torch.tensor([500]), encoder_hidden_states=context).sample
    torch.testing.assert_close(net(x, context, None), expected, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("name, message", [
    ("tiny_sdxl.safetensors", r"network_name: tiny_sdxl\.safetensors: was trained for a sdxl base "
                              r"but the MODEL is sd15"),
    ("tiny_broken.safetensors", r"network_name: tiny_broken\.safetensors: does not match the MODEL's UNet"),
    ("truncated.safetensors", r"network_name: truncated\.safetensors: .*truncated"),
    ("pickle.safetensors", r"network_name: pickle\.safetensors: not a safetensors file"),
    ("absent.safetensors", r"network_name: inverfill weight 'absent\.safetensors' was not found in .*inverfill_models"),
])
def test_loader_refuses_bad_networks_with_clear_errors(sd15, inverfill_dir, name, message):
    """Each refusal names the node input and the file (and, for a missing file, the folders searched)."""
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load(sd15[0], name)


def first_start(model, conds, noise, latent, sampler, sigmas):
    """The sampler's start latent x (model space, VE) via its step-0 callback."""
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    seen = {}

    def callback(step, x0, x, total):
        seen.setdefault(step, x.detach().cpu().clone())

    guider.sample(noise.generate_noise(latent), latent["samples"], sampler, sigmas,
                  denoise_mask=latent.get("noise_mask"), callback=callback, seed=noise.seed)
    return seen[0]


def expected_start(model, net, conds, z, mask, seed):
    """m⊙ε′ + (1−m)⊙ẑ_T computed independently: the network on (1−m)⊙z_in, ε′ = prepare_noise(seed)."""
    import comfy.sample

    core_blend = pack_module("core.blend")
    z_in = model.model.process_latent_in(z)
    m = torch.nn.functional.interpolate(mask[:, None], size=z.shape[-2:], mode="bilinear")
    inverted = net(z_in * (1 - m), conds[0][0].expand(z.shape[0], -1, -1), None)
    return core_blend.reblend_noise(inverted, comfy.sample.prepare_noise(z, seed).float(), m), m


@pytest.mark.parametrize("sampler_kind", ["fewstep", "core_lcm"])
def test_sampler_starts_exactly_at_the_reblended_inverted_noise(sd15, conds, inverfill_dir, sampler_kind):
    import comfy.samplers

    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    z, mask = scene()
    noise = pack_module("nodes.inverfill").InverseNoiseInit.execute(
        model=model, inverfill=net, positive=conds, mask=mask, seed=7).result[0]
    (sigmas,) = pack_module("nodes.schedule").FewStepSchedule.execute(model=model, steps=4, spacing="trailing").result
    sampler = (pack_module("nodes.sampler").FewStepBlendedSampler.execute(known_noise="start").result[0]
               if sampler_kind == "fewstep" else comfy.samplers.sampler_object("lcm"))
    x = first_start(model, conds, noise, {"samples": z, "noise_mask": mask}, sampler, sigmas)
    target, m = expected_start(model, net, conds, z, mask, 7)
    hole = (m == 1).expand_as(z)  # the known region: test_every_model_call_sees_…
    torch.testing.assert_close((x / math.sqrt(1 + float(sigmas[0]) ** 2))[hole], target[hole], atol=1e-4, rtol=1e-4)


def test_exact_start_with_a_lower_first_sigma_and_through_re_blend(sd15, conds, inverfill_dir):
    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    z, mask = scene()
    (sigmas,) = pack_module("nodes.schedule").FewStepSchedule.execute(
        model=model, steps=2, spacing="trailing", timesteps="749, 249").result
    inverse = pack_module("nodes.inverfill").InverseNoiseInit.execute(
        model=model, inverfill=net, positive=conds, mask=mask, seed=7, sigmas=sigmas).result[0]
    second = torch.zeros_like(mask)
    second[:, 0:32, 0:32] = 1
    wrapped = pack_module("nodes.noise").ReBlend.execute(noise=inverse, mask=second, seed=11).result[0]
    sampler = pack_module("nodes.sampler").FewStepBlendedSampler.execute().result[0]
    x = first_start(model, conds, wrapped, {"samples": z, "noise_mask": mask}, sampler, sigmas)
    import comfy.sample

    target, m = expected_start(model, net, conds, z, mask, 7)
    m2 = torch.nn.functional.interpolate(second[:, None], size=(16, 16), mode="bilinear")
    target = pack_module("core.blend").reblend_noise(target, comfy.sample.prepare_noise(z, 11).float(), m2)
    sigma0 = float(sigmas[0])
    hole, known = (m == 1).expand_as(z), (m == 0).expand_as(z)
    torch.testing.assert_close((x / math.sqrt(1 + sigma0 ** 2))[hole], target[hole], atol=1e-4, rtol=1e-4)
    z_in = model.model.process_latent_in(z)  # below the top σ ComfyUI starts from z + σ0·n: n = the start there
    torch.testing.assert_close(x[known], (z_in + sigma0 * target)[known], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler_kind", ["core_lcm", "fewstep"])
@pytest.mark.parametrize("timesteps", ["", "749, 249"], ids=["top_sigma", "lower_first_sigma"])
def test_every_model_call_sees_the_hole_start_and_the_known_region_renoised_with_the_inverted_noise(
        sd15, conds, inverfill_dir, sampler_kind, timesteps):
    """SamplerCustomAdvanced + Inverse Noise Init on a LATENT with a noise mask, with core's lcm (KSamplerX0Inpaint
    re-noises the known region with the NOISE before every call) and with FewStep Blended Sampler
    (known_noise = start): the first call's hole is ẑ_T^blend·√(1+σ0²) (VP start ẑ_T^blend), and every call's
    known region is z + σ_i·ẑ_T^blend (InverFill Sec. 3.3), at the top σ and below it."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced

    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    z, mask = scene()
    steps = 2 if timesteps else 4
    (sigmas,) = pack_module("nodes.schedule").FewStepSchedule.execute(
        model=model, steps=steps, spacing="trailing", timesteps=timesteps).result
    noise = pack_module("nodes.inverfill").InverseNoiseInit.execute(
        model=model, inverfill=net, positive=conds, mask=mask, seed=7, sigmas=sigmas if timesteps else None).result[0]
    sampler = (pack_module("nodes.sampler").FewStepBlendedSampler.execute(known_noise="start").result[0]
               if sampler_kind == "fewstep" else comfy.samplers.sampler_object("lcm"))
    recorder = InputRecorder()
    patched = model.clone()
    patched.set_model_unet_function_wrapper(recorder)
    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, {"samples": z, "noise_mask": mask})

    target, m = expected_start(model, net, conds, z, mask, 7)
    z_in = model.model.process_latent_in(z)
    known, hole = (m == 0).expand_as(z), (m == 1).expand_as(z)
    assert len(recorder.inputs) == steps
    sigma0 = float(sigmas[0])
    torch.testing.assert_close(recorder.inputs[0][hole], (target * math.sqrt(1 + sigma0 ** 2))[hole],
                               atol=1e-4, rtol=1e-4)
    for x, sigma in zip(recorder.inputs, recorder.sigmas):
        torch.testing.assert_close(x[known], (z_in + sigma * target)[known], atol=1e-4, rtol=1e-4)


def test_re_blend_around_inverse_noise_init_blends_once(sd15, conds, inverfill_dir):
    """Re-Blend wrapping Inverse Noise Init with the same soft mask: ẑ_T is blended once against the hole noise
    (weight 1/√2 at m = 0.5), not normalised twice (weight 1/2); inside Re-Blend's mask its seed's noise is used."""
    import comfy.sample

    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    z, _ = scene()
    soft = torch.zeros(1, 128, 128)
    soft[:, 32:96, 40:104] = 0.5
    inner = pack_module("nodes.inverfill").InverseNoiseInit.execute(
        model=model, inverfill=net, positive=conds, mask=soft, seed=7).result[0]
    outer = pack_module("nodes.noise").ReBlend.execute(noise=inner, mask=soft, seed=11).result[0]
    z_in = model.model.process_latent_in(z)
    m = torch.nn.functional.interpolate(soft[:, None], size=(16, 16), mode="bilinear")
    inverted = net(z_in * (1 - m), conds[0][0], None)
    once = pack_module("core.blend").reblend_noise(inverted, comfy.sample.prepare_noise(z, 11).float(), m)
    torch.testing.assert_close(outer.raw_noise({"samples": z}), once, atol=1e-5, rtol=1e-5)


def test_pixel_network_uses_image_and_vae(sd15, conds, inverfill_dir):
    model, _, vae = sd15
    net = load(model, "tiny_pixel.safetensors")
    image = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(2))
    z, mask = vae.encode(image), scene()[1]
    node = pack_module("nodes.inverfill").InverseNoiseInit
    noise = node.execute(model=model, inverfill=net, positive=conds, mask=mask, seed=3, image=image, vae=vae).result[0]
    out = noise.generate_noise({"samples": z})
    masked = vae.encode(image * (1 - mask[..., None]))
    inverted = net(model.model.process_latent_in(masked), conds[0][0], None)
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear")
    keep = (m == 0).expand_as(inverted)
    vp = pack_module("core.inverfill").vp_start_from_sampler_noise(
        out, model.model.process_latent_in(z), float(model.get_model_object("model_sampling").sigma_max), True)
    torch.testing.assert_close(vp[keep], inverted[keep], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="connect image and vae"):
        node.execute(model=model, inverfill=net, positive=conds, mask=mask, seed=3)
    other = node.execute(model=model, inverfill=net, positive=conds, mask=mask, seed=3,
                         image=torch.rand(1, 64, 64, 3), vae=vae).result[0]
    with pytest.raises(ValueError, match="image: encodes to 8×8 latents but the sampled LATENT is 16×16"):
        other.generate_noise({"samples": z})


def test_empty_mask_skips_the_network(sd15, conds, inverfill_dir, monkeypatch):
    import comfy.sample

    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    monkeypatch.setattr(type(net), "__call__", lambda *a, **k: pytest.fail("network ran on an empty mask"))
    z, _ = scene()
    noise = pack_module("nodes.inverfill").InverseNoiseInit.execute(
        model=model, inverfill=net, positive=conds, mask=torch.zeros(1, 64, 64), seed=5).result[0]
    vp = noise.raw_noise({"samples": z})
    assert torch.equal(vp, comfy.sample.prepare_noise(z, 5).float())


def test_batch_mismatches_are_named(sd15, conds, inverfill_dir):
    model, _, _ = sd15
    net = load(model, "tiny_latent.safetensors")
    z, mask = scene(batch=2)
    node = pack_module("nodes.inverfill").InverseNoiseInit
    three = [[conds[0][0].repeat(3, 1, 1), conds[0][1]]]
    noise = node.execute(model=model, inverfill=net, positive=three, mask=mask, seed=1).result[0]
    with pytest.raises(ValueError, match="positive: batch of 3 does not fit the latent batch of 2"):
        noise.generate_noise({"samples": z})
    noise = node.execute(model=model, inverfill=net, positive=conds, mask=mask.repeat(2, 1, 1), seed=1).result[0]
    with pytest.raises(ValueError, match="mask: batch of 4 does not fit the latent batch of 2"):
        noise.generate_noise({"samples": z})
    ok = node.execute(model=model, inverfill=net, positive=conds, mask=mask[:1], seed=1).result[0]
    assert ok.generate_noise({"samples": z}).shape == z.shape


def test_trainer_loads_a_single_file_checkpoint(tiny_bases, tmp_path):
    """A base in the original single-file layout (made here with ComfyUI's own key maps) loads to the
    same weights as its diffusers folder; a run trains from it (``single_file_config`` = the configs)."""
    import json

    import comfy.diffusers_convert
    import comfy.model_detection
    import comfy.utils
    from safetensors.torch import load_file, save_file

    from trainers.common.base_model import load_base_model

    from .conftest import run_module
    from .support.comfy_server import tiny_checkpoint

    folder = Path(tiny_bases["sd15"])
    comfy_sd = load_file(str(tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")))
    unet_config = comfy.model_detection.model_config_from_unet(comfy_sd, "model.diffusion_model.").unet_config
    mapping = comfy.utils.unet_to_diffusers(unet_config)
    single = {f"model.diffusion_model.{mapping[k]}": v
              for k, v in load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors")).items()}
    vae = comfy.diffusers_convert.convert_vae_state_dict(
        load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors")))
    single.update({f"first_stage_model.{k}": v for k, v in vae.items()})
    for k, v in load_file(str(folder / "text_encoder" / "model.safetensors")).items():
        single[f"cond_stage_model.transformer.{k if k.startswith('text_model.') else 'text_model.' + k}"] = v
    path = tmp_path / "tiny_single.safetensors"
    save_file({k: v.contiguous() for k, v in single.items()}, str(path))

    a, b = load_base_model(path, single_file_config=folder), load_base_model(folder)
    assert a.family == b.family == "sd15"
    for x, y in [(a.unet, b.unet), (a.vae, b.vae), (a.text_encoders[0], b.text_encoders[0])]:
        sx, sy = x.state_dict(), y.state_dict()
        assert sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sy)
    with pytest.raises(ValueError, match="single_file_config"):
        load_base_model(path)

    proc = run_module("trainers.inverfill", [
        "--config", "trainers/configs/inverfill_tiny.yaml", f"--base_model={path}", f"--single_file_config={folder}",
        "--max_steps=2", "--eval_every=2", "--preview_every=2", "--checkpoint_every=2",
        f"--output_dir={tmp_path / 'run'}"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 2


DIFFUSERS_CONFIGS = {
    "sdxl": dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, use_linear_projection=True),
    "sd21": dict(sample_size=96, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20),
                 cross_attention_dim=1024, use_linear_projection=True, layers_per_block=2),
    "sd15": dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8,
                 cross_attention_dim=768, layers_per_block=2),
}


@pytest.mark.parametrize("family", sorted(DIFFUSERS_CONFIGS))
def test_full_size_trainer_weights_map_onto_comfyui_unets(family):
    """Every weight of a full-size diffusers UNet (what the trainer exports for SD1.5, SD2.1, SDXL) has
    exactly one place, of the same shape, in ComfyUI's UNet for that model (built on the meta device)."""
    import comfy.model_detection
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from diffusers import UNet2DConditionModel

    comfy_inverfill = pack_module("nodes.comfy_networks")
    with torch.device("meta"):
        exported = UNet2DConditionModel(**DIFFUSERS_CONFIGS[family]).state_dict()
    unet_config = comfy.model_detection.unet_config_from_diffusers_unet(exported)
    with torch.device("meta"):
        comfy_unet = UNetModel(**{k: v for k, v in unet_config.items() if k != "dtype"}, device="meta")
    converted = comfy_inverfill.to_ldm_keys(exported, unet_config, "diffusers")
    assert comfy_inverfill.shape_problems(comfy_unet.state_dict(), converted) == []
    assert comfy_inverfill.shape_problems(comfy_unet.state_dict(), dict(list(converted.items())[:-5]))
