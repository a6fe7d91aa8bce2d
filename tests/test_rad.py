"""RAD: per-pixel schedule, region-aware sampling, spatial time embedding, LoRA export, trainer (CPU)."""
import json

import pytest
import torch

from core.lora import diff_state, inject_lora, lora_state, merge_lora
from core.rad import (
    abar_phase1, abar_phase2, nu_of, posterior_step, region_aware_denoise, sample_region_aware, sigma_map,
    sigma_maps, sinusoidal_embedding, spatial_time_embedding, strength, timestep_map, two_phase_alphas,
)
from core.schedules import scaled_linear_alphas_cumprod, sigmas_from_alphas_cumprod
from core.weights import load_weights

from .conftest import fails_before_loading

ALPHAS = scaled_linear_alphas_cumprod()
TABLE = sigmas_from_alphas_cumprod(ALPHAS).float()


def hole(h=16, w=16, soft=False):
    m = torch.zeros(1, 1, h, w)
    m[..., 4:12, 4:12] = 0.5 if soft else 1.0
    return m


def test_strength_and_phase_one_limits():
    nu = nu_of(ALPHAS)
    g = strength(torch.tensor([0.0, 0.25, 0.5, 1.0]), nu)
    assert float(g[0]) == 0.0 and float(g[-1]) == pytest.approx(1.0) and bool((g[1:] > g[:-1]).all())
    m = torch.tensor([0.0, 1.0])
    abar = abar_phase1(float(ALPHAS[749]), m, nu)
    assert float(abar[0]) == 1.0 and float(abar[1]) == pytest.approx(float(ALPHAS[749]))


def test_phase_two_limits():
    phase1, phase2, nu = two_phase_alphas()
    abar = abar_phase2(float(phase2[300]), torch.tensor([1.0, 0.0]), nu)
    assert float(abar[0]) == pytest.approx(1 - nu) and float(abar[1]) == pytest.approx(float(phase2[300]))
    assert nu == pytest.approx(1 - float(phase1[-1]))


def test_timestep_map_inverts_the_schedule():
    abar = torch.stack([ALPHAS[499], ALPHAS[749], torch.tensor(1.0, dtype=torch.float64)]).view(1, 1, 1, 3)
    tau = timestep_map(abar, ALPHAS)
    torch.testing.assert_close(tau.flatten(), torch.tensor([499.0, 749.0, 0.0]), atol=1e-2, rtol=0)


def test_posterior_step_leaves_clean_pixels_alone():
    x_t, x0 = torch.randn(4), torch.randn(4)
    abar_t = torch.tensor([1.0, 0.5, 0.5, 0.1])
    abar_prev = torch.tensor([1.0, 0.5, 0.9, 0.5])
    out = posterior_step(x_t, x0, abar_t, abar_prev, noise=torch.randn(4))
    assert float(out[0]) == float(x_t[0]) and float(out[1]) == float(x_t[1] * 1.0)
    a, ap = float(abar_t[2]), float(abar_prev[2])
    mean = ap**0.5 * (1 - a / ap) / (1 - a) * x0[2] + (a / ap) ** 0.5 * (1 - ap) / (1 - a) * x_t[2]
    assert float(posterior_step(x_t, x0, abar_t, abar_prev)[2]) == pytest.approx(float(mean), rel=1e-5)


def test_sigma_maps_are_zero_on_known_pixels_and_follow_the_grid_in_the_hole():
    maps = sigma_maps(ALPHAS, [999, 749, 499, 249], hole())
    assert len(maps) == 5 and float(maps[-1].abs().max()) == 0.0
    for m, t in zip(maps[:-1], [999, 749, 499, 249]):
        assert float(m[hole() == 0].abs().max()) == 0.0
        assert float(m[0, 0, 8, 8]) == pytest.approx(float(TABLE[t]), rel=1e-4)
    soft = sigma_map(ALPHAS, 999, hole(soft=True))
    assert 0 < float(soft[0, 0, 8, 8]) < float(TABLE[999])


class Recorder:
    def __init__(self, fill=0.0):
        self.calls, self.fill = [], fill

    def __call__(self, x, smap, **kw):
        self.calls.append(smap.clone())
        return region_aware_denoise(lambda xs, tau, **c: torch.full_like(xs, float("nan")), x, smap, TABLE)


@pytest.mark.parametrize("soft", [False, True])
def test_region_aware_sampling_keeps_known_pixels_bit_exact(soft):
    """Known pixels are never noised: they stay the input without any paste (even next to NaN output)."""
    source = torch.randn(2, 4, 16, 16)
    maps = sigma_maps(ALPHAS, [999, 749, 499, 249], hole(soft=soft).expand(2, 1, 16, 16))
    g = torch.Generator().manual_seed(0)
    model = Recorder()
    out = sample_region_aware(model, source, torch.arange(5.0), disable=True, source=source, maps=maps,
                              noise_sampler=lambda i: torch.randn(source.shape, generator=g))
    keep = (hole() == 0).expand_as(out)
    assert torch.equal(out[keep], source[keep]) and len(model.calls) == 4
    assert torch.isnan(out[~keep]).all(), "the hole came from the (NaN) model"


def test_empty_mask_calls_no_model():
    source = torch.randn(1, 4, 8, 8)
    maps = sigma_maps(ALPHAS, [999, 499], torch.zeros(1, 1, 8, 8))
    model = Recorder()
    out = sample_region_aware(model, source, torch.arange(3.0), disable=True, source=source, maps=maps,
                              noise_sampler=lambda i: torch.randn(source.shape))
    assert torch.equal(out, source) and model.calls == []


def test_sinusoidal_embedding_matches_diffusers():
    from diffusers.models.embeddings import Timesteps

    t = torch.tensor([0.0, 249.0, 500.5, 999.0])
    ref = Timesteps(320, flip_sin_to_cos=True, downscale_freq_shift=0)(t)
    torch.testing.assert_close(sinusoidal_embedding(t, 320), ref, atol=1e-5, rtol=1e-5)


def test_spatial_time_embedding_runs_the_mlp_once_per_value():
    calls = []
    mlp = torch.nn.Linear(8, 4)

    def counted(e):
        calls.append(e.shape[0])
        return mlp(e)

    tmap = torch.tensor([[[[0.0, 500.0], [500.0, 0.0]]]])
    emb = spatial_time_embedding(tmap, 8, counted)
    assert calls == [2] and emb.shape == (1, 2, 2, 4)
    torch.testing.assert_close(emb[0, 0, 1], mlp(sinusoidal_embedding(torch.tensor([500.0]), 8))[0])


def test_spatial_time_embedding_backward_is_bit_reproducible_with_threads():
    """The same training step must give the same gradient every time (with emb[inverse] it did not on 2 threads:
    20 repeats, 20 different gradients, so the same RAD command made other weights each run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tmap = (torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float() * 999
        grad_out = torch.randn(4, 32, 32, 128, generator=torch.Generator().manual_seed(1))
        grads = set()
        for _ in range(20):
            table = torch.randn(2, 128, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
            lookup = {0.0: table[0], 999.0: table[1]}
            out = spatial_time_embedding(tmap, 8,
                                         lambda e, lookup=lookup: torch.stack([lookup[0.0], lookup[999.0]])[: len(e)])
            (out * grad_out).sum().backward()
            grads.add(table.grad.numpy().tobytes())
        assert len(grads) == 1
    finally:
        torch.set_num_threads(threads)


def tiny_unet(sdxl: bool):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 48) if sdxl else {}
    return UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, **extra).eval()


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd15-like", "sdxl-like"])
def test_uniform_time_map_equals_the_unpatched_unet(sdxl):
    """Done-when (trainer side): the spatial-time-embedding forward equals the model for a uniform map."""
    from trainers.common.unet_walk import spatial_forward

    unet = tiny_unet(sdxl)
    x, ctx = torch.randn(2, 4, 16, 16), torch.randn(2, 6, 32)
    add = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)} if sdxl else None
    with torch.no_grad():
        for t in (0, 250, 999):
            ref = unet(x, torch.tensor([t, t]), encoder_hidden_states=ctx, added_cond_kwargs=add).sample
            out = spatial_forward(unet, x, torch.full((2, 1, 16, 16), float(t)), ctx, add)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        varied = torch.full((2, 1, 16, 16), 999.0)
        varied[..., :8] = 0.0
        assert not torch.allclose(spatial_forward(unet, x, varied, ctx, add), ref), "a real map changes the output"


def test_lora_starts_as_identity_and_exports_kohya_keys():
    unet = tiny_unet(False)
    x, ctx, t = torch.randn(1, 4, 16, 16), torch.randn(1, 6, 32), torch.tensor([500])
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
        base_time = {k: v.clone() for k, v in unet.state_dict().items() if "time_emb" in k}
        loras = inject_lora(unet, ["to_q", "to_out.0", "conv1"], rank=2, alpha=2.0)
        torch.testing.assert_close(unet(x, t, encoder_hidden_states=ctx).sample, ref)
    state = lora_state(loras)
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    assert {f"{key}.lora_down.weight", f"{key}.lora_up.weight", f"{key}.alpha"} <= set(state)
    assert state["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape == (2, 32, 3, 3)
    diffs = diff_state({k: v + 1 for k, v in base_time.items()}, base_time)
    assert "lora_unet_time_embedding_linear_1.diff" in diffs and "lora_unet_time_embedding_linear_1.diff_b" in diffs
    assert all(torch.allclose(v, torch.ones_like(v)) for v in diffs.values())
    with pytest.raises(ValueError, match="lora_targets"):
        inject_lora(unet, ["nothing_like_this"], 2, 2.0)


def test_merged_lora_and_diffs_equal_the_trained_wrapped_network():
    """core.lora.merge_lora (the benchmark's loader, ComfyUI LoraLoader's arithmetic) gives the network the trainer
    ran: adapters folded into the weights, time layers moved by their .diff/.diff_b."""
    import copy

    base = tiny_unet(False)
    trained = copy.deepcopy(base)
    x, ctx, t = torch.randn(1, 4, 16, 16), torch.randn(1, 6, 32), torch.tensor([300])
    with torch.no_grad():
        time_base = {k: v.clone() for k, v in trained.state_dict().items() if "time_embedding" in k}
        loras = inject_lora(trained, ["to_q", "to_out.0", "conv1"], rank=2, alpha=3.0)
        for module in loras.values():
            module.up.weight.normal_(0, 0.05)
        for k, v in trained.named_parameters():
            if "time_embedding" in k:
                v.add_(0.01)
        expected = trained(x, t, encoder_hidden_states=ctx).sample
        moved = {k: v for k, v in trained.state_dict().items() if "time_embedding" in k}
        state = {**lora_state(loras), **diff_state(moved, time_base)}
        assert merge_lora(base, state) == len(loras) + 2
        torch.testing.assert_close(base(x, t, encoder_hidden_states=ctx).sample, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="name no layer"):
        merge_lora(tiny_unet(False), {"lora_unet_nowhere.diff": torch.zeros(1)})


def test_tiny_rad_run_lowers_the_masked_loss(tiny_rad_run):
    """Done-when: held-out element-wise loss on masked pixels ≤ 70 % of the untrained patched model's."""
    s = tiny_rad_run["summary"]
    assert s["steps"] == 60 and s["final_masked_eps_mse"] <= 0.7 * s["initial_masked_eps_mse"], s


def test_tiny_rad_run_exports_a_kohya_lora_with_time_diffs(tiny_rad_run):
    sd, meta = load_weights(tiny_rad_run["weights"])
    assert meta["kind"] == "rad" and meta["base_family"] == "sd15" and meta["key_format"] == "kohya"
    assert any(k.endswith(".lora_down.weight") for k in sd) and "lora_unet_time_embedding_linear_1.diff" in sd
    assert "lora_unet_down_blocks_0_resnets_0_time_emb_proj.diff" in sd
    assert not any("base" in k for k in sd), "only adapter and delta tensors, never the base weights"
    entry = json.loads(tiny_rad_run["weights"].with_suffix(".manifest.json").read_text())
    assert entry["node"] == "FewStepRegionAwareSampler" and entry["kind"] == "rad"


@pytest.mark.parametrize("case, message", [
    ("no_images", "images_dir: set it"),
    ("missing_images", "images_dir: .*nope is not a folder"),
    ("no_base", "base_model: set it"),
    ("bad_base", "base_model: .*absent does not exist"),
    ("bad_mask_kind", "mask_kind: 'blobs' is not one of perlin, pixel"),
])
def test_trainer_refuses_bad_inputs_before_anything_loads(tiny_bases, image_folder, tmp_path, monkeypatch, case,
                                                          message):
    args = {"no_images": [f"--base_model={tiny_bases['custom']}"],
            "missing_images": [f"--base_model={tiny_bases['custom']}", f"--images_dir={tmp_path / 'nope'}"],
            "no_base": [f"--images_dir={image_folder}"],
            "bad_base": [f"--base_model={tmp_path / 'absent'}", f"--images_dir={image_folder}"],
            "bad_mask_kind": [f"--base_model={tiny_bases['custom']}", f"--images_dir={image_folder}",
                              "--mask_kind=blobs"]}[case]
    fails_before_loading(monkeypatch, "rad", args + [f"--output_dir={tmp_path / 'out'}"], message)
    assert not (tmp_path / "out").exists(), "nothing written"

