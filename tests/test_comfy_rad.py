"""RAD patch and Region-Aware Sampler against real ComfyUI objects (COMFYUI_DIR importable; else skipped)."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from .conftest import pack_module, requires_comfyui

pytestmark = requires_comfyui


def init_weights(module, seed=0):
    """ComfyUI's ops leave weights uninitialised: give every tensor a finite, fan-in scaled value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 0:
                continue
            if name.endswith("bias"):
                p.normal_(0, 0.1, generator=g)
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
    return module.eval()


UNETS = {
    "sd15-like": dict(image_size=32, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                      channel_mult=[1, 2], num_heads=4, use_spatial_transformer=True, transformer_depth=[0, 1],
                      transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1, context_dim=32,
                      use_linear_in_transformer=False),
    "sdxl-like": dict(image_size=32, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
                      channel_mult=[1, 2], num_head_channels=16, use_spatial_transformer=True,
                      transformer_depth=[0, 2], transformer_depth_output=[0, 0, 2, 2], transformer_depth_middle=2,
                      context_dim=64, use_linear_in_transformer=True, num_classes="sequential", adm_in_channels=48),
}


@pytest.mark.parametrize("arch", sorted(UNETS))
def test_uniform_time_map_equals_the_unpatched_comfyui_unet(arch):
    """Done-when: ComfyUI's UNetModel run with a uniform per-pixel map equals its own forward."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    rad = pack_module("nodes.comfy_rad")
    unet = init_weights(UNetModel(**UNETS[arch]))
    x = torch.randn(2, 4, 16, 16)
    ctx = torch.randn(2, 5, UNETS[arch]["context_dim"])
    y = torch.randn(2, 48) if "adm_in_channels" in UNETS[arch] else None
    with torch.no_grad():
        for t in (0.0, 321.0, 999.0):
            ref = unet(x, torch.tensor([t, t]), context=ctx, y=y, transformer_options={})
            out = rad.spatial_forward(unet, x, torch.full((2, 1, 16, 16), t), ctx, y, None, {})
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        varied = torch.full((2, 1, 16, 16), 999.0)
        varied[..., 8:] = 0.0
        assert not torch.allclose(rad.spatial_forward(unet, x, varied, ctx, y, None, {}), ref)


def test_patched_model_with_a_uniform_sigma_map_equals_the_model(sd15, conds):
    """At σ on the model's table (every schedule's σ; the hole's level) the uniform map equals the unpatched model.
    Between table entries the map keeps the fractional timestep (test above) where ComfyUI rounds its global t."""
    import comfy.model_management as mm

    rad = pack_module("nodes.comfy_rad")
    model, _, _ = sd15
    patched = rad.patch(model)
    mm.load_models_gpu([patched])
    base = patched.model
    level = float(base.model_sampling.sigmas[749])  # ≈ 4.08
    x, sigma = torch.randn(1, 4, 16, 16), torch.tensor([level])
    ctx = conds[0][0]
    ref = base.apply_model(x, sigma, c_crossattn=ctx, transformer_options={})
    options = {"wrappers": patched.wrappers}  # what ComfyUI merges in before sampling
    out = base.apply_model(x, sigma, c_crossattn=ctx, transformer_options={
        **options, rad.SIGMA_MAP: torch.full((1, 1, 16, 16), level)})
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    half = torch.full((1, 1, 16, 16), level)
    half[..., :8] = 0
    masked = base.apply_model(x, sigma, c_crossattn=ctx, transformer_options={**options, rad.SIGMA_MAP: half})
    assert torch.equal(masked[..., :8], x[..., :8]), "σ = 0 pixels come back exactly"


def test_node_and_trainer_give_a_soft_mask_the_same_fractional_timesteps(sd15):
    """One definition of the per-pixel timestep (RAD §3.2): the node's map equals core.rad.timestep_map, which the
    trainer uses (fractional, e.g. ≈ 352.5 at m = 0.5, t = 999, not ComfyUI's rounded 352)."""
    from core.rad import sigma_map, timestep_map

    rad = pack_module("nodes.comfy_rad")
    model, _, _ = sd15
    base = model.model
    alphas = 1 / (1 + base.model_sampling.sigmas.double() ** 2)  # ComfyUI keeps σ; ᾱ = 1/(1+σ²)
    mask = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    smap = sigma_map(alphas, 999, mask)
    seen = {}

    class Executor:
        class_obj = base

        def __call__(self, x, t, c_concat, c_crossattn, control, options, **kw):
            seen["tmap"] = options[rad.TIME_MAP]
            return x

    rad.apply_model_wrapper(Executor(), torch.zeros(1, 4, 8, 8), torch.tensor([1.0]),
                            transformer_options={rad.SIGMA_MAP: smap})
    abar = 1 / (1 + smap.double() ** 2)
    expected = timestep_map(abar, alphas)
    torch.testing.assert_close(seen["tmap"].float(), expected.float(), atol=1e-3, rtol=0)
    assert (expected != expected.round()).any(), "soft values fall between integer timesteps"


def run(model, conds, latent, **kw):
    node = pack_module("nodes.rad").RegionAwareSampler
    args = dict(model=model, positive=conds, latent=latent, steps=4, seed=1)
    args.update(kw)
    return node.execute(**args).result[0]["samples"]


def scene():
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, 128, 128)
    mask[:, 40:100, 24:88] = 1
    return z, mask


def test_known_latent_pixels_are_bit_identical(sd15, conds):
    """Done-when: known latent pixels equal the input exactly after sampling (no paste-back per step)."""
    model, _, _ = sd15
    z, mask = scene()
    out = run(model, conds, {"samples": z, "noise_mask": mask})
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear").expand_as(z)
    assert torch.equal(out[m == 0], z[m == 0]) and not torch.equal(out[m == 1], z[m == 1])
    assert torch.isfinite(out).all()


def test_soft_empty_and_full_masks(sd15, conds):
    model, _, _ = sd15
    z, mask = scene()
    soft = run(model, conds, {"samples": z}, mask=mask * 0.4)
    assert torch.isfinite(soft).all() and not torch.equal(soft, z)
    assert torch.equal(run(model, conds, {"samples": z}, mask=torch.zeros(1, 64, 64)), z)
    full = run(model, conds, {"samples": z}, mask=torch.ones(1, 128, 128))
    assert torch.isfinite(full).all() and not torch.allclose(full, z)


def test_bad_inputs_are_named(sd15, conds):
    model, _, _ = sd15
    z, mask = scene()
    with pytest.raises(ValueError, match="connect mask, or give the latent a noise_mask"):
        run(model, conds, {"samples": z})
    with pytest.raises(ValueError, match=r"mask: 64×32 px \(2:1\) does not match the image behind the latent "
                                         r"\(1:1; a 16×16 latent"):
        run(model, conds, {"samples": z}, mask=torch.rand(1, 32, 64))
    with pytest.raises(ValueError, match="steps must be an integer in 1..1000"):
        run(model, conds, {"samples": z}, mask=mask, steps=1001)
    same_aspect = run(model, conds, {"samples": z},
                      mask=torch.nn.functional.interpolate(mask[:, None], size=(64, 64))[:, 0])
    assert same_aspect.shape == z.shape, "a mask of another size with the same aspect is resized"


@pytest.mark.parametrize("kind, message", [
    ("v_prediction", r"model: the Region-Aware Sampler supports ε-prediction models .*; this is a v-prediction model"),
    ("flow", r"model: the Region-Aware Sampler supports ε-prediction models .*; this is a flow-matching \(CONST\)"),
    ("not_a_unet", "model: the Region-Aware Sampler needs a UNet model .* got Linear"),
])
def test_unsupported_models_are_refused_naming_model(sd15, conds, kind, message):
    """v-prediction and flow models (patched by core's ModelSamplingDiscrete / ModelSamplingSD3), and a MODEL
    whose diffusion model is not a UNet: docs/nodes.md's refusals, raised before anything is sampled."""
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete, ModelSamplingSD3

    model, _, _ = sd15
    if kind == "v_prediction":
        (model,) = ModelSamplingDiscrete().patch(model, "v_prediction", False)
    elif kind == "flow":
        (model,) = ModelSamplingSD3().patch(model, 3.0)
    else:
        model = model.clone()
        model.add_object_patch("diffusion_model", torch.nn.Linear(2, 2))
    z, mask = scene()
    with pytest.raises(ValueError, match=message):
        run(model, conds, {"samples": z}, mask=mask)


@pytest.fixture(scope="module")
def rad_files(tiny_rad_run, tmp_path_factory):
    import folder_paths

    weights = pack_module("core.weights")
    folder = tmp_path_factory.mktemp("rad_models")
    pack_module("nodes.paths").register_model_folders()
    folder_paths.add_model_folder_path("fewstep_rad", str(folder))
    folder_paths.add_model_folder_path("loras", str(folder))
    sd, meta = weights.load_weights(tiny_rad_run["weights"])
    weights.save_weights(folder / "tiny_rad.safetensors", sd, meta)
    weights.save_weights(folder / "tiny_rad_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    return folder, sd


def test_rad_lora_loads_through_core_loraloader_completely(sd15, rad_files, caplog):
    """Every tensor of the trainer's file is used by core LoraLoaderModelOnly (no 'lora key not loaded')."""
    import nodes as comfy_nodes

    model, _, _ = sd15
    folder, sd = rad_files
    with caplog.at_level(logging.WARNING):
        (loaded,) = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(model, "tiny_rad.safetensors", 1.0)
    assert "lora key not loaded" not in caplog.text
    modules = {k.rsplit(".", 1)[0] if not k.endswith((".lora_down.weight", ".lora_up.weight")) else
               k.rsplit(".", 2)[0] for k in sd}
    assert len(loaded.patches) >= len([k for k in sd if k.endswith((".lora_down.weight", ".diff", ".diff_b"))])
    assert len(modules) > 10


def test_rad_lora_in_our_node(sd15, conds, rad_files):
    model, _, _ = sd15
    z, mask = scene()
    latent = {"samples": z, "noise_mask": mask}
    with_lora = run(model, conds, latent, rad_lora="tiny_rad.safetensors")
    without = run(model, conds, latent)
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear").expand_as(z)
    assert not torch.allclose(with_lora, without) and torch.equal(with_lora[m == 0], z[m == 0])
    with pytest.raises(ValueError, match=r"rad_lora: tiny_rad_sdxl\.safetensors was trained for a sdxl base"):
        run(model, conds, latent, rad_lora="tiny_rad_sdxl.safetensors")
    with pytest.raises(FileNotFoundError,
                       match=r"rad_lora: rad weight 'absent\.safetensors' was not found in .*rad_models"):
        run(model, conds, latent, rad_lora="absent.safetensors")
