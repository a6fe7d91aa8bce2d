"""TurboFill Loader / Adapter Apply against real ComfyUI objects (COMFYUI_DIR importable; else skipped)."""
from __future__ import annotations


import pytest
import torch

from .conftest import pack_module, requires_comfyui

pytestmark = requires_comfyui


@pytest.fixture(scope="module")
def adapter_dir(tiny_turbofill_run, tmp_path_factory):
    """models/fewstep/turbofill with the tiny run's adapter, a zero-initialised copy and broken variants."""
    import folder_paths

    weights = pack_module("core.weights")
    folder = tmp_path_factory.mktemp("turbofill_models")
    pack_module("nodes.paths").register_model_folders()
    folder_paths.add_model_folder_path("fewstep_turbofill", str(folder))
    sd, meta = weights.load_weights(tiny_turbofill_run["weights"])
    weights.save_weights(folder / "tiny.safetensors", sd, meta)
    zero = {k: (torch.zeros_like(v) if k.startswith(("input_zero", "output_zero", "middle_zero")) else v)
            for k, v in sd.items()}
    weights.save_weights(folder / "zero_init.safetensors", zero, meta)
    weights.save_weights(folder / "tiny_sdxl.safetensors", sd, {**meta, "base_family": "sdxl"})
    wide = {**meta, "adapter_config": {**meta["adapter_config"], "block_out_channels": [320, 640]}}
    weights.save_weights(folder / "tiny_wide.safetensors", sd, wide)
    weights.save_weights(folder / "tiny_rad.safetensors", sd, {**meta, "kind": "rad"})
    weights.save_weights(folder / "tiny_partial.safetensors", {k: v for k, v in sd.items() if "mid" not in k}, meta)
    return folder


def load(model, name):
    return pack_module("nodes.turbofill").TurboFillLoader.execute(model=model, adapter_name=name).result[0]


def apply(conds, adapter, vae, image, mask, **kw):
    node = pack_module("nodes.turbofill").TurboFillAdapterApply
    return node.execute(positive=conds, negative=conds, adapter=adapter, vae=vae, image=image, mask=mask, **kw).result


def scene(batch=1):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 128, 128, 3, generator=g)
    mask = torch.zeros(batch, 128, 128)
    mask[:, 32:96, 40:104] = 1
    return image, mask


def ksample(model, positive, negative, seed=3):
    import nodes as comfy_nodes

    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    return comfy_nodes.common_ksampler(model, seed, 4, 1.0, "lcm", "sgm_uniform", positive, negative,
                                       latent)[0]["samples"]


def test_zero_initialised_adapter_and_strength_zero_equal_the_base_model(sd15, conds, adapter_dir):
    """Done-when: zero convs at zero leave the output unchanged; strength 0 equals the base model (exactly)."""
    model, _, vae = sd15
    image, mask = scene()
    base = ksample(model, conds, conds)
    zero_pos, zero_neg = apply(conds, load(model, "zero_init.safetensors"), vae, image, mask)
    assert "control" in zero_pos[0][1]
    assert torch.equal(ksample(model, zero_pos, zero_neg), base)
    trained = load(model, "tiny.safetensors")
    off_pos, off_neg = apply(conds, trained, vae, image, mask, strength=0.0)
    assert off_pos is conds and torch.equal(ksample(model, off_pos, off_neg), base)
    # strength 0 through ComfyUI's control merge (no shortcut): residuals scaled to zero
    cm = pack_module("nodes.comfy_turbofill")
    hint, hole = cm.hint_inputs(image, mask)
    zeroed = cm.apply_adapter(conds, trained, vae, hint, hole, 0.0, (0.0, 1.0), {})
    assert torch.equal(ksample(model, zeroed, zeroed), base)
    on_pos, on_neg = apply(conds, trained, vae, image, mask)
    assert not torch.allclose(ksample(model, on_pos, on_neg), base), "the trained adapter acts"


def test_comfyui_residual_layout_matches_the_trainers_unet_walk(sd15, conds, adapter_dir, tiny_bases):
    """The trained adapter's control dict gives the same ε̂ in ComfyUI's UNet and in the trainer's walk."""
    import comfy.model_management as mm
    import comfy.utils
    from diffusers import UNet2DConditionModel

    from trainers.common.unet_walk import walk_unet

    model, _, _ = sd15
    mm.load_models_gpu([model])
    diffusion = model.model.diffusion_model
    mapping = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
    ldm = diffusion.state_dict()
    unet = UNet2DConditionModel.from_pretrained(tiny_bases["sd15"] / "unet", local_files_only=True).eval()
    unet.load_state_dict({k: ldm[v].float() for k, v in mapping.items() if v in ldm}, strict=True)
    adapter = load(model, "tiny.safetensors").control_model.float()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 16, 16, generator=g)
    hint = torch.cat([torch.randn(1, 4, 16, 16, generator=g), (torch.rand(1, 1, 16, 16, generator=g) > 0.5).float()], 1)
    ctx = conds[0][0]
    with torch.no_grad():
        for t in (999.0, 249.0):
            control = adapter(x, hint, torch.tensor([t]), context=ctx)
            assert max(float(r.abs().max()) for r in control["input"]) > 0
            ours = walk_unet(unet, x, ctx, timesteps=torch.tensor([int(t)]), control=control)
            theirs = diffusion(x, torch.tensor([t]), context=ctx, control={k: list(v) for k, v in control.items()})
            torch.testing.assert_close(theirs.float(), ours, atol=2e-4, rtol=2e-4)


def test_chains_with_other_controls_and_samplers(sd15, conds, adapter_dir):
    """A second adapter chains after the first (like two ControlNets); SamplerCustomAdvanced + FewStep sampler run."""
    import comfy.sample
    import comfy_extras.nodes_custom_sampler as custom

    model, _, vae = sd15
    image, mask = scene()
    adapter = load(model, "tiny.safetensors")
    once, _ = apply(conds, adapter, vae, image, mask)
    twice, _ = apply(once, adapter, vae, image, mask, strength=0.5)
    assert twice[0][1]["control"].previous_controlnet is once[0][1]["control"]
    assert not torch.allclose(ksample(model, once, once), ksample(model, twice, twice))
    sampler = pack_module("nodes.sampler").FewStepBlendedSampler.execute().result[0]
    sigmas = pack_module("nodes.schedule").FewStepSchedule.execute(model=model, steps=4, spacing="trailing").result[0]
    guider = custom.Guider_Basic(model)
    guider.set_conds(once)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    noise = comfy.sample.prepare_noise(z, 0)
    out = guider.sample(noise, z, sampler, sigmas, denoise_mask=mask[:, None], seed=0)
    assert out.shape == z.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("name, message", [
    ("tiny_sdxl.safetensors", r"adapter_name: tiny_sdxl\.safetensors was trained for a sdxl base "
                              r"but the MODEL is sd15"),
    ("tiny_wide.safetensors", r"adapter_name: tiny_wide\.safetensors does not fit the MODEL's UNet"),
    ("tiny_rad.safetensors", r"adapter_name: tiny_rad\.safetensors: is a 'rad' weight"),
    ("tiny_partial.safetensors", r"adapter_name: tiny_partial\.safetensors does not match its adapter_config "
                                 r"\(\d+ missing"),
    ("absent.safetensors", r"adapter_name: turbofill weight 'absent\.safetensors' was not found in .*turbofill_models"),
])
def test_loader_refuses_bad_adapters_with_named_errors(sd15, adapter_dir, name, message):
    model, _, _ = sd15
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load(model, name)


def test_apply_errors_and_batches(sd15, conds, adapter_dir):
    model, _, vae = sd15
    adapter = load(model, "tiny.safetensors")
    image, mask = scene(batch=2)
    cm = pack_module("nodes.comfy_turbofill")
    hint, hole = cm.hint_inputs(image, mask[:1])
    assert hint.shape == (2, 3, 128, 128) and hole.shape == (2, 1, 128, 128)
    assert float(hint[:, :, 40, 50].abs().sum()) == 0, "the hole is black in the adapter's image"
    with pytest.raises(ValueError, match="mask: batch of 3 does not fit the image batch of 2; use a mask batch of "
                                         "1 or 2"):
        apply(conds, adapter, vae, image, torch.zeros(3, 128, 128))
    with pytest.raises(ValueError, match="mask: batch of 3 does not fit the image batch of 1; give one mask, or repeat "
                                         "the image 3 times"):
        apply(conds, adapter, vae, image[:1], torch.zeros(3, 128, 128))
    with pytest.raises(ValueError, match=r"mask: 64×32 px \(2:1\) does not match the image's 128×128 px \(1:1\)"):
        apply(conds, adapter, vae, image, torch.zeros(2, 32, 64) + torch.eye(32, 64))
    with pytest.raises(ValueError, match="start_percent"):
        apply(conds, adapter, vae, image, mask, start_percent=0.8, end_percent=0.2)
    with pytest.raises(ValueError, match="image: contains"):
        apply(conds, adapter, vae, image * float("nan"), mask)
