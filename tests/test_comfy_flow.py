"""Few-step flow-matching models in ComfyUI (in-process, COMFYUI_DIR): tiny random FLUX.1-schnell, Qwen-Image and
Lumina2 built from ComfyUI's own classes. FewStep Schedule's grid through each model's shift; the FewStep Blended
Sampler, Re-Blend, Exact Composite and Crop → Stitch keep the known region exact; unsupported families are named."""
from __future__ import annotations

import math

import pytest
import torch

from .conftest import pack_module, requires_comfyui
from .support.tiny_flow import (
    FLOW_FAMILIES,
    LUMINA2_SYSTEM_PROMPT,
    decode_tokens,
    tiny_flow_clip,
    tiny_flow_conditioning,
    tiny_flow_model,
    tiny_flow_vae,
)
from .test_comfy_inprocess import run_node
from .test_comfy_turboedit import edit, rel

pytestmark = requires_comfyui


@pytest.fixture(scope="module")
def flow_models(pack):
    return {family: tiny_flow_model(family) for family in FLOW_FAMILIES}


def schedule(model, **options):
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, **{
        "steps": 4, "spacing": "trailing", "timesteps": "", **options})
    return sigmas


def shifted(t: float, family: str) -> float:
    """Each family's default shift in ComfyUI 0.3.64, written out: schnell none; Qwen-Image Flux's exponential
    shift at μ = 1.15 (≈ shift 3.16); Lumina2 SD3's shift 6."""
    if family == "flux_schnell":
        return t
    if family == "qwen_image":
        return math.exp(1.15) / (math.exp(1.15) + 1 / t - 1)
    return 6 * t / (1 + 5 * t)


@pytest.mark.parametrize("family", FLOW_FAMILIES)
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_flow_schedule_is_the_linspace_grid_through_the_models_shift(flow_models, family, steps):
    sigmas = schedule(flow_models[family], steps=steps)
    expected = [shifted(1 - k / steps, family) for k in range(steps)] + [0.0]
    torch.testing.assert_close(sigmas, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=1e-6)
    if family == "flux_schnell" and steps == 4:
        assert sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0], "FLUX.1-schnell's 4 steps, unshifted"


def test_lightning_shift_3_through_model_sampling_aura_flow(flow_models):
    """Qwen-Image-Lightning was distilled at shift 3: patch the model with core ModelSamplingAuraFlow(3)."""
    from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow

    (patched,) = ModelSamplingAuraFlow().patch_aura(flow_models["qwen_image"], 3.0)
    sigmas = schedule(patched, steps=4)
    expected = [3 * t / (1 + 2 * t) for t in (1.0, 0.75, 0.5, 0.25)] + [0.0]
    torch.testing.assert_close(sigmas, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    custom = schedule(patched, timesteps="1000, 500")
    torch.testing.assert_close(custom, torch.tensor([1.0, 0.75, 0.0]), rtol=1e-6, atol=1e-6)


def test_flow_schedule_refuses_lcm_spacing_bad_timesteps_and_other_families(flow_models):
    import comfy.model_sampling

    flux = flow_models["flux_schnell"]
    with pytest.raises(ValueError, match="^spacing: 'lcm' is LCM's grid"):
        schedule(flux, spacing="lcm")
    with pytest.raises(ValueError, match=r"^timesteps: a flow model's timesteps \(t × 1000\) lie in 1\.\.1000"):
        schedule(flux, timesteps="999, 0")

    class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    def fake(kind: str):
        model = type("FakeModel", (), {"model": type(kind, (), {})(),
                                        "get_model_object": lambda self, name: FlowSampling()})
        return model()

    with pytest.raises(ValueError, match="^model: SD3 is a flow-matching model without a distilled few-step grid"):
        schedule(fake("SD3"))
    with pytest.raises(ValueError, match="^model: WAN21 is a video model"):
        schedule(fake("WAN21"))


def flow_latent(batch=1, h=8, w=8, seed=0):
    z = torch.randn(batch, 16, h, w, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(batch, h * 8, w * 8)
    mask[:, 16:48, 24:56] = 1
    return z, mask


def sample_flow(model, conds, latent, noise, sampler, sigmas):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    out, _ = SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
    return out["samples"]


@pytest.mark.parametrize("family", FLOW_FAMILIES)
@pytest.mark.parametrize("hole_init", ["source", "noise"])
def test_blended_sampler_and_re_blend_keep_the_known_latent_on_flow_models(flow_models, family, hole_init):
    """x = (1 − σ)·x̂0 + σ·ε between steps; the known region of the result is the source latent."""
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    model = flow_models[family]
    z, mask = flow_latent()
    (noise,) = run_node(pack_module("nodes.noise").ReBlend, noise=Noise_RandomNoise(4), mask=mask, seed=9)
    (sampler,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init=hole_init)
    out = sample_flow(model, tiny_flow_conditioning(family), {"samples": z, "noise_mask": mask}, noise, sampler,
                      schedule(model))
    if family == "qwen_image":  # Qwen-Image's latent (Wan's format) gains a time axis of 1 in sampling
        assert out.shape == (1, 16, 1, 8, 8)
        out = out[:, :, 0]
    known = torch.nn.functional.interpolate(mask[:, None], size=z.shape[-2:], mode="bilinear") == 0
    known = known.expand_as(z)
    torch.testing.assert_close(out[known], z[known], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all() and (out[~known] - z[~known]).abs().max() > 1e-3, "the hole is sampled"


def test_flow_renoise_is_the_rectified_flow_interpolation(flow_models):
    """Every model call sees x = (1 − σ_i)·x̂0 + σ_i·ε in the known region: the source's share is 1 − σ_i."""
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from .support.recorders import InputRecorder

    model = flow_models["flux_schnell"].clone()
    recorder = InputRecorder()
    model.set_model_unet_function_wrapper(recorder)
    z, mask = flow_latent(seed=2)
    (sampler,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    sample_flow(model, tiny_flow_conditioning("flux_schnell"), {"samples": z, "noise_mask": mask},
                Noise_RandomNoise(1), sampler, schedule(model))
    z_in = model.model.process_latent_in(z)
    known = (torch.nn.functional.interpolate(mask[:, None], size=z.shape[-2:], mode="bilinear") == 0).expand_as(z)
    assert [round(float(s), 6) for s in recorder.sigmas] == [1.0, 0.75, 0.5, 0.25]
    for x, sigma in zip(recorder.inputs[1:], recorder.sigmas[1:]):
        eps = (x.cpu() - (1 - sigma) * z_in) / sigma  # what is left once the source's (1 − σ) share is removed
        assert abs(float(eps[known].std()) - 1.0) < 0.15 and abs(float(eps[known].mean())) < 0.15


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_crop_sample_stitch_and_exact_composite_on_flow_models(flow_models, family):
    import nodes as comfy_nodes
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from .test_comfy_crop_stitch import big_photo

    model, vae = flow_models[family], tiny_flow_vae()
    image = big_photo(150, 203)
    mask = torch.zeros(1, 150, 203)
    mask[0, 30:70, 120:190] = 1
    crop_node = pack_module("nodes.crop_stitch")
    crops, crop_masks, plan = run_node(crop_node.FewStepCrop, image=image, mask=mask, target_size="custom",
                                       width=128, height=96, context_px=16)
    (latent,) = comfy_nodes.VAEEncode().encode(vae, crops)
    (latent,) = comfy_nodes.SetLatentNoiseMask().set_mask(latent, crop_masks)
    (sampler,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    samples = sample_flow(model, tiny_flow_conditioning(family), latent, Noise_RandomNoise(3), sampler,
                          schedule(model, steps=2))
    if samples.ndim == 5:  # Qwen-Image's time axis of 1: its Wan VAE takes it, the tiny TAESD stand-in does not
        samples = samples[:, :, 0]
    (decoded,) = comfy_nodes.VAEDecode().decode(vae, {"samples": samples})
    out, used = run_node(crop_node.FewStepStitch, stitch=plan, generated=decoded, grow=2, feather=2, color_match=1.0)
    assert torch.equal(out[used == 0], image[used == 0]) and not torch.equal(out[mask > 0], image[mask > 0])
    whole, whole_used = run_node(pack_module("nodes.composite").ExactComposite, original=crops, generated=decoded,
                                 mask=crop_masks, grow=0, feather=0, color_match=0.0)
    assert torch.equal(whole[whole_used == 0], crops[whole_used == 0])


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_turboedit_exact_inversion_and_replay_on_flow_models(flow_models, family):
    """States (1 − σ_k)·z + σ_k·ñ_k, each step's noise solved from the flow update: replaying with the source
    conditioning gives the latent back to ≤ 1e-4; with another conditioning and a MASK the outside stays the source."""
    turboedit = pack_module("nodes.turboedit")
    model = flow_models[family]
    z = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    source, target = tiny_flow_conditioning(family, seed=1), tiny_flow_conditioning(family, seed=2)
    inversion, recon, sigmas, latent = turboedit.IterativeInverter.execute(
        model=model, conditioning=source, steps=4, method="exact", seed=3, latent={"samples": z}).result
    assert sigmas.tolist() == schedule(model).tolist(), "the flow grid through the model's shift"
    flat = (lambda t: t[:, :, 0]) if family == "qwen_image" else (lambda t: t)
    assert rel(flat(recon["samples"]), z) <= 1e-4
    replay = turboedit.TurboEditSampler.execute(inversion=inversion, local_mask="off").result[0]
    assert rel(flat(edit(model, source, replay, sigmas, latent)), z) <= 1e-4
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    masked = turboedit.TurboEditSampler.execute(inversion=inversion, mask=mask, blur=0).result[0]
    out = flat(edit(model, target, masked, sigmas, latent))
    m = torch.nn.functional.interpolate(mask[:, None], size=(8, 8), mode="bilinear").expand_as(z)
    torch.testing.assert_close(out[m == 0], z[m == 0], rtol=1e-5, atol=1e-5)
    assert rel(out[m == 1], z[m == 1]) > 1e-3, "the other conditioning changes the inside"


def test_turboedit_encoder_on_flow_models_is_refused_naming_method(flow_models):
    turboedit = pack_module("nodes.turboedit")
    z, _ = flow_latent()
    with pytest.raises(ValueError, match="^method: the TurboEdit encoder is a UNet"):
        turboedit.IterativeInverter.execute(model=flow_models["flux_schnell"], conditioning=tiny_flow_conditioning(
            "flux_schnell"), steps=4, method="encoder", seed=0, latent={"samples": z})


CAPTION = "a large red circle at the top left on a white background"


@pytest.fixture(scope="module")
def flow_clips(pack):
    return {family: tiny_flow_clip(family) for family in FLOW_FAMILIES}


def caption_edit(clip, family, edit_text="red → green"):
    prefix = LUMINA2_SYSTEM_PROMPT if family == "lumina2" else ""
    return run_node(pack_module("nodes.turboedit").CaptionEditor, clip=clip, caption=CAPTION, edit=edit_text,
                    strength=1.0, occurrence=0, prefix=prefix)


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_caption_editor_token_positions_are_the_changed_words_in_the_conditioning(flow_clips, family):
    """Flux's T5 (not its CLIP-L), Qwen-Image's Qwen2.5-VL (its chat template cut from the conditioning) and
    Lumina2's Gemma (after its system prompt): the positions name the changed word in the conditioning's token
    axis. Checked twice: the tokenizer decodes the tokens there to the words, and the encoder's own output changes
    exactly there (T5 here is position-wise) or from there on (Qwen2.5 and Gemma are causal)."""
    from comfy.sd1_clip import SD1ClipModel  # noqa: F401  (ComfyUI is importable)

    clip = flow_clips[family]
    source, target, source_caption, target_caption, tokens, _ = caption_edit(clip, family)
    assert target_caption == CAPTION.replace("red", "green") and tokens["target"] and tokens["source"]
    key = pack_module("nodes.comfy_turboedit").conditioning_key(clip.tokenize("x", return_word_ids=True))
    assert key == {"flux_schnell": "t5xxl", "qwen_image": "qwen25_7b", "lumina2": "gemma2_2b"}[family]
    for conditioning, text, positions, word in ((source, source_caption, tokens["source"], "red"),
                                                (target, target_caption, tokens["target"], "green")):
        prefix = LUMINA2_SYSTEM_PROMPT + " " if family == "lumina2" else ""
        stream = [t[0] for chunk in clip.tokenize(prefix + text)[key] for t in chunk]
        dropped = len(stream) - conditioning[0][0].shape[1]
        assert dropped == (34 if family == "qwen_image" else 0), "only Qwen-Image cuts tokens (its template)"
        assert decode_tokens(clip, family, [stream[p + dropped] for p in positions]).strip() == word
    delta = (target[0][0] - source[0][0]).abs().amax(-1)[0]
    changed = [int(i) for i in torch.nonzero(delta > 1e-6)]
    if family == "flux_schnell":
        assert changed == tokens["target"], "a position-wise T5 changes exactly the edited tokens"
    else:
        assert changed[0] == min(tokens["target"]) and delta[:changed[0]].max() == 0, "causal: from the edit on"


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_automatic_local_mask_from_a_dits_joint_attention(flow_models, flow_clips, family, monkeypatch):
    """Caption Editor → Iterative Inverter → Edit Sampler (local_mask auto) on each DiT: one map per joint-attention
    call of the first step (Flux: a double and a single block; Qwen-Image and Lumina2: one layer, Lumina2's text and
    image refiners left out), a mask that selects part of the latent, and the source kept exactly outside it."""
    comfy_turboedit = pack_module("nodes.comfy_turboedit")
    recorded = []
    real_edit_mask = comfy_turboedit.edit_mask

    def spy(maps, latent_hw, **options):
        mask = real_edit_mask(maps, latent_hw, **options)
        recorded.append((list(maps), mask))
        return mask

    monkeypatch.setattr(comfy_turboedit, "edit_mask", spy)
    turboedit = pack_module("nodes.turboedit")
    model, clip = flow_models[family], flow_clips[family]
    source, target, _, _, tokens, _ = caption_edit(clip, family)
    z = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    inversion, _, sigmas, latent = turboedit.IterativeInverter.execute(
        model=model, conditioning=source, steps=4, method="exact", seed=3, latent={"samples": z}).result
    sampler = turboedit.TurboEditSampler.execute(inversion=inversion, tokens=tokens, local_mask="auto", threshold=0.4,
                                                 blur=0).result[0]
    out = edit(model, target, sampler, sigmas, latent)
    out = out[:, :, 0] if family == "qwen_image" else out
    (maps, mask), = recorded
    assert len(maps) == (2 if family == "flux_schnell" else 1)
    assert all(m.shape == (1, 16) and torch.isfinite(m).all() and float(m.min()) >= 0 for m in maps), "4×4 patches"
    assert mask.shape == (1, 1, 8, 8) and 0 < float(mask.mean()) < 1
    outside = (mask == 0).expand_as(z)
    torch.testing.assert_close(out[outside], z[outside], rtol=1e-5, atol=1e-5)
    assert rel(out[~outside], z[~outside]) > 1e-3, "the target caption changes the masked part"


class OneModelCall:
    """A SAMPLER that makes one model call at sigmas[0], with ``model_options`` extended by ``options``."""

    def __new__(cls, transformer_options: dict):
        import comfy.samplers

        class Sampler(comfy.samplers.Sampler):
            def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                       disable_pbar=False):
                options = dict(extra_args.get("model_options", {}))
                options["transformer_options"] = {**options.get("transformer_options", {}), **transformer_options}
                sigma = sigmas[:1].expand(latent_image.shape[0])
                return model_wrap(latent_image, sigma, model_options=options, seed=extra_args.get("seed"))

        return Sampler()


def rad_call(model, latent, sigma_map=None, sigma=0.75, seed=1):
    comfy_rad = pack_module("nodes.comfy_rad")
    options = {} if sigma_map is None else {comfy_rad.SIGMA_MAP: sigma_map}
    return sample_flow(model, tiny_flow_conditioning("flux_schnell", batch=latent.shape[0], seed=seed),
                       {"samples": latent}, __import__("comfy_extras.nodes_custom_sampler").nodes_custom_sampler
                       .Noise_EmptyNoise(), OneModelCall(options), torch.tensor([sigma, 0.0]))


def test_rad_patch_on_flux_equals_the_unpatched_model_for_a_uniform_map_and_keeps_sigma_zero_exact(flow_models):
    """FLUX with per-token modulation through its blocks' modulation_dims: a uniform σ map gives the unpatched
    model's x̂0 (two rows, one call each); a map with a clean part returns x there exactly and moves the rest."""
    comfy_rad = pack_module("nodes.comfy_rad")
    flux = flow_models["flux_schnell"]
    patched = comfy_rad.patch(flux)
    z = torch.randn(2, 16, 8, 10, generator=torch.Generator().manual_seed(7))
    plain = rad_call(flux, z)
    uniform = rad_call(patched, z, torch.full((2, 1, 8, 10), 0.75))
    torch.testing.assert_close(uniform, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rad_call(patched, z), plain, rtol=0, atol=0)  # no map: the patch stays out of the way
    smap = torch.zeros(2, 1, 8, 10)
    smap[0, :, 2:6, 3:9] = 0.75
    smap[1, :, :, :4] = 0.75
    smap[1, :, :, 4:] = 0.25  # two levels: tokens modulated at their own time
    regional = rad_call(patched, z, smap)
    keep = (smap == 0).expand_as(z)  # x itself in model space; Flux's latent scaling rounds on the way back
    torch.testing.assert_close(regional[keep], z[keep], rtol=1e-6, atol=1e-6)
    assert torch.isfinite(regional).all() and (regional[1] - plain[1]).abs().max() > 1e-3
    scalar_time = patched.clone()  # the same σ map with every token modulated at the hole's level
    scalar_time.model_options["transformer_options"]["patches_replace"].pop("dit")
    moved = (regional - rad_call(scalar_time, z, smap)).abs()
    assert float(moved[1].max()) > 1e-3, "the tokens at σ = 0.25 are modulated at their own time"


def test_flux_token_levels_follow_its_patches_and_runs():
    from core.rad import level_runs, token_levels

    pixel = torch.zeros(1, 1, 5, 4)
    pixel[0, 0, 4, 1] = 0.5  # an odd height: the last token row holds one pixel row
    pixel[0, 0, 0, 3] = 0.25
    levels = token_levels(pixel, 2)
    assert levels.tolist() == [[0.0, 0.25, 0.0, 0.0, 0.5, 0.0]]
    values, runs = level_runs(levels[0])
    assert values.tolist() == [0.0, 0.25, 0.5] and runs == [(0, 1, 0), (1, 2, 1), (2, 4, 0), (4, 5, 2), (5, 6, 0)]


def test_region_aware_sampler_on_flux_keeps_the_known_latent_and_renoises_in_flow_form(flow_models):
    """The node on FLUX.1-schnell: σ maps σ_k·m on the flow grid, x = (1 − σ)·z + σ·ε; known latent bit-identical."""
    from .support.recorders import InputRecorder

    model = flow_models["flux_schnell"].clone()
    recorder = InputRecorder()
    model.set_model_unet_function_wrapper(recorder)
    z, mask = flow_latent(seed=4)
    (out,) = run_node(pack_module("nodes.rad").RegionAwareSampler, model=model,
                      positive=tiny_flow_conditioning("flux_schnell"), latent={"samples": z}, steps=4, seed=3, cfg=1.0,
                      rad_lora="none", lora_strength=1.0, mask=mask)
    samples = out["samples"]
    m = torch.nn.functional.interpolate(mask[:, None], size=z.shape[-2:], mode="bilinear")
    assert torch.equal(samples[(m == 0).expand_as(z)], z[(m == 0).expand_as(z)])
    assert torch.isfinite(samples).all() and (samples - z).abs().max() > 1e-3
    assert [round(s, 6) for s in recorder.sigmas] == [1.0, 0.75, 0.5, 0.25], "the hole's σ_s on schnell's grid"
    first = recorder.inputs[0]
    z_in = model.model.process_latent_in(z)
    torch.testing.assert_close(first[(m == 0).expand_as(z)], z_in[(m == 0).expand_as(z)])
    hole = (m == 1).expand_as(z)
    assert abs(float(first[hole].std()) - 1.0) < 0.25, "σ = 1 in the hole: pure noise"


@pytest.mark.parametrize("family", ["qwen_image", "lumina2"])
def test_region_aware_sampler_names_the_dits_it_cannot_give_per_token_times(flow_models, family):
    z, mask = flow_latent()
    with pytest.raises(ValueError, match=r"^model: the Region-Aware Sampler gives flow models per-token timesteps"):
        run_node(pack_module("nodes.rad").RegionAwareSampler, model=flow_models[family],
                 positive=tiny_flow_conditioning(family), latent={"samples": z}, steps=4, seed=3, cfg=1.0,
                 rad_lora="none", lora_strength=1.0, mask=mask)


@pytest.fixture(scope="module")
def flux_inverfill_dir(tiny_flux_inverfill_run, tmp_path_factory):
    """A registered models/fewstep/inverfill folder with the tiny FLUX run's output (and a UNet-family copy)."""
    import folder_paths

    weights = pack_module("core.weights")
    folder = tmp_path_factory.mktemp("flux_inverfill_models")
    pack_module("nodes.paths").register_model_folders()
    folder_paths.add_model_folder_path("fewstep_inverfill", str(folder))
    sd, meta = weights.load_weights(tiny_flux_inverfill_run["weights"])
    weights.save_weights(folder / "flux_tiny.safetensors", sd, meta)
    weights.save_weights(folder / "flux_as_sd15.safetensors", sd, {**meta, "base_family": "sd15",
                                                                      "architecture": "unet"})
    return folder


def test_inverfill_on_flux_loads_the_trainers_dit_and_sampling_starts_at_its_reblended_noise(
        flow_models, flux_inverfill_dir, tiny_flux_inverfill_run, tiny_flux_base):
    """trainers.inverfill's FLUX file → InverFill Loader on a FLUX MODEL of the same architecture: F equals the
    trainer's diffusers DiT (x + 0.5·v̂ at t = 0.5, ComfyUI's key map) to 1e-4; Inverse Noise Init → FewStep Blended
    Sampler: schnell's σ0 = 1, so the first model input in the hole is ẑ^blend's fresh noise and elsewhere F's ẑ_T."""
    from diffusers import FluxTransformer2DModel

    from trainers.common.flux_base import flux_velocity_fn

    from .support.recorders import InputRecorder

    inverfill = pack_module("nodes.inverfill")
    model = flow_models["flux_schnell"].clone()
    net = inverfill.InverFillLoader.execute(model=model, network_name="flux_tiny.safetensors").result[0]
    assert net.is_flow and net.family == "flux" and net.masking == "latent"
    sd, meta = pack_module("core.weights").load_weights(tiny_flux_inverfill_run["weights"])
    reference = FluxTransformer2DModel.from_config(meta["transformer_config"])
    reference.load_state_dict(sd)
    conds = tiny_flow_conditioning("flux_schnell")
    context, pooled = conds[0][0], conds[0][1]["pooled_output"]
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v = flux_velocity_fn(reference)(x, torch.tensor([0.5]), encoder_hidden_states=context,
                                        pooled_projections=pooled)
    torch.testing.assert_close(net(x, context, pooled), x + 0.5 * v, atol=1e-4, rtol=1e-4)

    recorder = InputRecorder()
    model.set_model_unet_function_wrapper(recorder)
    z, mask = flow_latent(seed=6)
    noise = inverfill.InverseNoiseInit.execute(model=model, inverfill=net, positive=conds, mask=mask, seed=7).result[0]
    (sampler,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="noise", known_noise="start")
    sample_flow(model, conds, {"samples": z, "noise_mask": mask}, noise, sampler, schedule(model))
    import comfy.sample

    z_in = model.model.process_latent_in(z)
    m = torch.nn.functional.interpolate(mask[:, None], size=z.shape[-2:], mode="bilinear")
    expected = pack_module("core.blend").reblend_noise(net(z_in * (1 - m), context, pooled),
                                                       comfy.sample.prepare_noise(z, 7).float(), m)
    assert recorder.sigmas[0] == 1.0
    torch.testing.assert_close(recorder.inputs[0], expected, atol=1e-4, rtol=1e-4)


def test_inverfill_networks_of_another_family_are_refused_naming_the_input(flow_models, flux_inverfill_dir):
    """A UNet-family file on FLUX, a FLUX file on a UNet MODEL, and InverFill on Qwen-Image: errors name the input."""
    inverfill = pack_module("nodes.inverfill")
    with pytest.raises(ValueError, match=r"^network_name: flux_as_sd15\.safetensors: was trained for a sd15 base but "
                                         r"the MODEL is flux"):
        inverfill.InverFillLoader.execute(model=flow_models["flux_schnell"], network_name="flux_as_sd15.safetensors")
    with pytest.raises(ValueError, match=r"^model: InverFill on flow models takes FLUX"):
        inverfill.InverFillLoader.execute(model=flow_models["qwen_image"], network_name="flux_tiny.safetensors")
