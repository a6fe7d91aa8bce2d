"""TurboFill adapter (core) and its three-step trainer on tiny random bases (CPU)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from core.manifest import SCHEMA_PATH, schema_errors
from core.rad import sinusoidal_embedding
from core.turbofill import (
    FillDiscriminator, TurboFillAdapter, adapter_from_unet, config_from_unet, hint_mask, init_from_unet, masked_image,
)
from core.weights import load_weights

from .conftest import accelerate_launcher, fails_before_loading, run_killed, run_module

FAST = ["--config", "trainers/configs/turbofill_tiny.yaml", "--resolution=32", "--batch_size=2", "--eval_count=2",
        "--log_every=1"]


def load_unet(folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True).eval()


def inputs(unet, batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, size, size, generator=g)
    hint = torch.cat([torch.randn(batch, 4, size, size, generator=g),
                      (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()], 1)
    ehs = torch.randn(batch, 5, unet.config.cross_attention_dim, generator=g)
    added = None
    if unet.config.addition_embed_type == "text_time":
        added = {"text_embeds": torch.randn(batch, 32, generator=g),
                 "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]).repeat(batch, 1)}
    return x, hint, ehs, added


@pytest.mark.parametrize("family", ["custom", "sdxl", "sd15"])
def test_zero_initialised_adapter_leaves_the_unet_output_unchanged(tiny_bases, family):
    """Done-when: with its zero convs at zero the adapter changes nothing (exact equality)."""
    from trainers.common.unet_walk import adm_vector, walk_unet

    unet = load_unet(tiny_bases[family])
    adapter = adapter_from_unet(dict(unet.config), unet.state_dict())
    x, hint, ehs, added = inputs(unet)
    t = torch.tensor([17, 803])
    with torch.no_grad():
        control = adapter(x, hint, t.float(), y=adm_vector(unet, added))
        plain = walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added)
        adapted = walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added, control=control)
        reference = unet(x, t, ehs, added_cond_kwargs=added).sample
    assert torch.equal(adapted, plain)
    torch.testing.assert_close(plain, reference, atol=1e-5, rtol=1e-5)
    assert all(float(r.abs().max()) == 0 for r in control["input"] + control["middle"] + control["output"])


@pytest.mark.parametrize("family", ["custom", "sdxl"])
def test_trained_residuals_reach_every_encoder_middle_and_decoder_layer(tiny_bases, family):
    """Residual counts follow ComfyUI's blocks; each list (input/middle/output) changes the output."""
    from trainers.common.unet_walk import adm_vector, walk_unet

    unet = load_unet(tiny_bases[family])
    adapter = adapter_from_unet(dict(unet.config), unet.state_dict())
    n_input = 1 + sum(len(b.resnets) + len(b.downsamplers or []) for b in unet.down_blocks)
    x, hint, ehs, added = inputs(unet)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        for p in adapter.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
        control = adapter(x, hint, t.float(), y=adm_vector(unet, added))
        assert len(control["input"]) == len(control["output"]) == n_input and len(control["middle"]) == 1
        plain = walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added)
        for key in ("input", "middle", "output"):
            only = {k: (v if k == key else []) for k, v in control.items()}
            out = walk_unet(unet, x, ehs, timesteps=t, added_cond_kwargs=added, control=only)
            assert not torch.allclose(out, plain), key


def test_initialisation_copies_the_unet_like_brushnet(tiny_bases):
    unet = load_unet(tiny_bases["sdxl"])
    adapter = adapter_from_unet(dict(unet.config), unet.state_dict())
    w = adapter.conv_in.weight.detach()
    assert (w.shape[1] == 9 and torch.equal(w[:, :4], unet.conv_in.weight)
            and torch.equal(w[:, 4:8], unet.conv_in.weight))
    assert float(w[:, 8].abs().sum()) == 0, "the mask channel starts at zero"
    assert torch.equal(adapter.down_resnets[1][0].conv1.weight, unet.down_blocks[1].resnets[0].conv1.weight)
    assert torch.equal(adapter.mid_resnets[1].conv2.weight, unet.mid_block.resnets[1].conv2.weight)
    assert torch.equal(adapter.add_embedding.linear_1.weight, unet.add_embedding.linear_1.weight)
    t = torch.tensor([3.0, 999.0])
    torch.testing.assert_close(adapter.time_embedding(sinusoidal_embedding(t, 32)),
                               unet.time_embedding(unet.time_proj(t)), atol=0, rtol=0)
    assert not any(n.startswith(("input_zero", "output_zero", "middle_zero")) for n in
                   FillDiscriminator(adapter.config).state_dict()), "D's encoder has no residual convs"


def test_init_refuses_a_unet_of_another_shape(tiny_bases):
    adapter = TurboFillAdapter(config_from_unet(dict(load_unet(tiny_bases["custom"]).config)))
    with pytest.raises(ValueError, match="does not match the adapter config"):
        init_from_unet(adapter, load_unet(tiny_bases["sd15"]).state_dict())


def test_masked_image_and_hint_mask_conventions():
    image = torch.rand(1, 3, 16, 16)
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:12, 4:12] = 1
    out = masked_image(image, hole)
    assert float(out[..., 4:12, 4:12].abs().sum()) == 0 and torch.equal(out[..., :4, :], image[..., :4, :])
    small = hint_mask(hole, (2, 2))
    assert small.shape == (1, 1, 2, 2) and set(small.unique().tolist()) <= {0.0, 1.0}


def test_discriminator_gives_a_logit_and_a_noise_prediction(tiny_bases):
    unet = load_unet(tiny_bases["sdxl"])
    disc = FillDiscriminator(config_from_unet(dict(unet.config)), width=16)
    init_from_unet(disc.encoder, unet.state_dict())
    x, hint, _, _ = inputs(unet)
    logit, eps = disc(x, hint, torch.tensor([10.0, 900.0]), y=torch.randn(2, 80))
    assert logit.shape == (2,) and eps.shape == x.shape
    (logit.sum() + eps.mean()).backward()
    assert disc.encoder.conv_in.weight.grad is not None and disc.classifier[-1].weight.grad is not None


# ------------------------------------------------------------------------------------------ trainer
def test_tiny_run_cuts_both_heldout_losses_to_70_percent(tiny_turbofill_run):
    """Done-when: held-out background loss and masked-region ε-MSE ≤ 70 % of the untrained adapter's."""
    s = tiny_turbofill_run["summary"]
    first, last = s["initial"], s["final"]
    assert s["steps"] == 60
    assert last["background_loss"] <= 0.7 * first["background_loss"], s
    assert last["hole_eps_mse"] <= 0.7 * first["hole_eps_mse"], s
    assert (tiny_turbofill_run["dir"] / "previews" / "step_00000060.png").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in tiny_turbofill_run["dir"].rglob("*"))


def test_tiny_run_exports_the_adapter_with_metadata_and_manifest(tiny_turbofill_run):
    sd, meta = load_weights(tiny_turbofill_run["weights"])
    assert meta["kind"] == "turbofill" and meta["base_family"] == "sd15" and meta["mask_polarity"] == "1=hole"
    adapter = TurboFillAdapter(config_from_unet({"block_out_channels": [320], "layers_per_block": 1}))
    assert meta["adapter_config"] == adapter.config.to_dict()
    adapter.load_state_dict(sd, strict=True)
    assert float(adapter.middle_zero.weight.detach().abs().sum()) > 0, "the zero convs were trained"
    entry = json.loads(tiny_turbofill_run["weights"].with_suffix(".manifest.json").read_text())
    schema = json.loads(SCHEMA_PATH.read_text())["properties"]["models"]["items"]
    assert schema_errors(entry, schema) == [] and entry["node"] == "FewStepTurboFillLoader"
    manifest = json.loads(tiny_turbofill_run["manifest"].read_text())
    assert any(m["id"] == "turbofill-tiny" for m in manifest["models"])


def test_killed_run_resumes_to_identical_state(tiny_bases, fill_folder, tmp_path):
    """SIGKILL right after checkpoint 2, rerun: adapter, discriminator, both optimizers and EMA come back, so every
    tensor and every optimizer scalar of the final checkpoint equals an uninterrupted run's (tolerance 0)."""
    from trainers.common.checkpoint import load_checkpoint

    common = FAST + [f"--base_model={tiny_bases['custom']}", f"--images_dir={fill_folder}", "--checkpoint_every=2",
                     "--eval_every=4", "--preview_every=4", "--max_steps=4"]
    straight = json.loads(run_module("trainers.turbofill", common + [f"--output_dir={tmp_path / 'a'}"])
                          .stdout.strip().splitlines()[-1])
    run_killed("trainers.turbofill", common + [f"--output_dir={tmp_path / 'b'}"], step=2)
    assert not (tmp_path / "b" / "turbofill_tiny.safetensors").exists()
    resumed = json.loads(run_module("trainers.turbofill", common + [f"--output_dir={tmp_path / 'b'}"])
                         .stdout.strip().splitlines()[-1])
    assert resumed["resumed_from"] == 2 and resumed["weights_sha256"] == straight["weights_sha256"]
    (a, a_state), (b, b_state) = (load_checkpoint(tmp_path / run / "checkpoints" / "checkpoint-00000004")
                                  for run in "ab")
    assert set(a) == set(b) == {"model", "optimizer", "ema", "discriminator", "discriminator_optimizer"}
    for group in a:
        assert a[group].keys() == b[group].keys() and a[group], group
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group]), group
    for key in ("optimizer", "discriminator_optimizer"):
        assert a_state[key] == b_state[key], key


def test_two_processes_with_accelerate_agree_on_the_weights(tiny_bases, fill_folder, tmp_path):
    """Data-parallel on CPU (torchrun + gloo): three alternating updates keep both replicas identical."""
    out = tmp_path / "ddp"
    run_module("trainers.turbofill", FAST + [f"--base_model={tiny_bases['custom']}", f"--images_dir={fill_folder}",
                                             "--max_steps=3", "--grad_accum=2", "--checkpoint_every=3",
                                             "--eval_every=3", "--preview_every=3", f"--output_dir={out}"],
               launcher=accelerate_launcher(), threads=1)
    digests = [(out / f"rank{r}.weights.sha256").read_text().strip() for r in (0, 1)]
    assert digests[0] == digests[1] and (out / "turbofill_tiny.safetensors").exists()


def test_sdxl_base_with_bf16_checkpointing_accumulation_and_a_separate_fast_unet(tiny_bases, fill_folder, tmp_path):
    """SDXL-style conditioning (y), bf16 autocast, gradient checkpointing, accumulation, fast UNet from a file."""
    from safetensors.torch import save_file

    fast = tmp_path / "fast_unet.safetensors"
    save_file(load_unet(tiny_bases["sdxl"]).state_dict(), str(fast))
    proc = run_module("trainers.turbofill", FAST + [
        f"--base_model={tiny_bases['sdxl']}", f"--images_dir={fill_folder}", f"--fast_unet={fast}",
        "--mixed_precision=bf16", "--gradient_checkpointing=true", "--grad_accum=2", "--max_steps=2",
        "--checkpoint_every=2", "--eval_every=2", "--preview_every=2", "--export_dtype=bf16",
        f"--output_dir={tmp_path / 'out'}"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    sd, meta = load_weights(summary["weights"])
    assert meta["base_family"] == "sdxl" and meta["adapter_config"]["adm_in_channels"] == 80
    assert sd["add_embedding.linear_1.weight"].dtype == torch.bfloat16


def test_samples_without_mask_or_caption_are_skipped_and_reported(tiny_bases, fill_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(fill_folder, folder)
    (folder / "camera_mask.png").unlink()
    (folder / "coffee.txt").unlink()
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "broken_mask.png").write_bytes((folder / "astronaut_mask.png").read_bytes())
    (folder / "broken.txt").write_text("broken")
    out = tmp_path / "out"
    proc = run_module("trainers.turbofill", FAST + [f"--base_model={tiny_bases['custom']}", f"--images_dir={folder}",
                                                    "--max_steps=1", "--eval_every=1", "--preview_every=1",
                                                    "--checkpoint_every=1", f"--output_dir={out}"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["skipped_samples"] == 3
    skipped = json.loads((out / "metrics.json").read_text())["skipped"]
    assert any("camera.png: no mask" in s for s in skipped) and any("coffee.png: no caption" in s for s in skipped)
    assert any("broken.png: unreadable" in s for s in skipped)


@pytest.mark.parametrize("args, message", [
    (["--phases=[slow, sharp]"], "phases: .* must be a non-empty subset"),
    (["--lambda_bg=-1"], "lambda_bg: must not be negative"),
    (["--fast_unet=/nonexistent/unet.bin"], "fast_unet: .*not a UNet folder or a .safetensors file"),
    (["--images_dir=/nonexistent/images"], "images_dir: .*nonexistent/images"),
    (["--base_model=/nonexistent/base"], "base_model: /nonexistent/base does not exist"),
])
def test_bad_options_fail_with_a_named_error_before_anything_loads(tiny_bases, fill_folder, tmp_path, monkeypatch,
                                                                   args, message):
    fails_before_loading(monkeypatch, "turbofill", FAST + [f"--base_model={tiny_bases['custom']}",
                                                           f"--images_dir={fill_folder}",
                                                           f"--output_dir={tmp_path / 'out'}", *args], message)
    assert not (tmp_path / "out").exists(), "nothing written"
