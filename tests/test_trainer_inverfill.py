"""InverFill trainer end to end on tiny random bases (CPU, subprocesses like a user runs them)."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from core.manifest import load_manifest
from core.weights import load_weights, read_metadata

from .conftest import accelerate_launcher, fails_before_loading, run_killed, run_module

FAST = ["--resolution=64", "--batch_size=4", "--lr=1e-3", "--mixed_precision=no", "--gradient_checkpointing=false",
        "--export_dtype=fp32", "--eval_count=4", "--ema_decay=0.99", "--masking=latent", "--lambda_adv=0",
        "--prompts_file=trainers/configs/prompts_example.txt"]


def test_tiny_run_halves_the_heldout_known_region_error(tiny_inverfill_run):
    """Done-when: ≤ 50 % of the untrained network's held-out reconstruction error of the known region."""
    s = tiny_inverfill_run["summary"]
    assert s["steps"] == 200 and s["resumed_from"] == 0
    assert s["final_known_mse"] <= 0.5 * s["initial_known_mse"], s
    metrics = json.loads((tiny_inverfill_run["dir"] / "metrics.json").read_text())
    assert set(metrics["eval_known_mse"]) >= {"0", "50", "100", "150", "200"}


def test_tiny_run_exports_loadable_weights_and_a_manifest_entry(tiny_inverfill_run):
    path = tiny_inverfill_run["weights"]
    sd, meta = load_weights(path)
    assert meta["kind"] == "inverfill" and meta["base_family"] == "sd15" and meta["ema"] == "true"
    assert meta["step"] == "200" and meta["key_format"] == "diffusers" and meta["masking"] == "latent"
    assert meta["config"]["max_steps"] == 200 and meta["unet_config"]["cross_attention_dim"] == 768
    assert "conv_in.weight" in sd and all(torch.isfinite(v).all() for v in sd.values())
    manifest = load_manifest(tiny_inverfill_run["manifest"])
    (entry,) = [m for m in manifest["models"] if m["filename"] == path.name]
    assert entry["bytes"] == path.stat().st_size and entry["node"] == "FewStepInverFillLoader"
    assert entry["produced_by"]["command"].startswith("python -m trainers.inverfill --config")
    assert json.loads(path.with_suffix(".manifest.json").read_text()) == entry
    previews = sorted((tiny_inverfill_run["dir"] / "previews").glob("*.png"))
    assert [p.name for p in previews] == ["step_00000100.png", "step_00000200.png"]
    assert list(tiny_inverfill_run["dir"].rglob("events.out.tfevents*")), "TensorBoard log"


def test_tiny_flux_run_trains_the_dit_and_exports_it_for_the_node(tiny_flux_inverfill_run):
    """InverFill on a FLUX-family DiT (docs/methods.md §1.6): F is the transformer itself, initialised from the
    one-step generator; image-free training lowers the held-out known-region error (measured 0.178 → 0.118 in 300
    steps; pinned at ≤ 0.8×), and the file carries what the node checks."""
    s = tiny_flux_inverfill_run["summary"]
    assert s["steps"] == 300 and s["final_known_mse"] <= 0.8 * s["initial_known_mse"], s
    path = tiny_flux_inverfill_run["weights"]
    sd, meta = load_weights(path)
    assert meta["kind"] == "inverfill" and meta["base_family"] == "flux" and meta["architecture"] == "flux"
    assert meta["inversion_time"] == "0.5" and meta["transformer_config"]["num_single_layers"] == 1
    assert "x_embedder.weight" in sd and all(torch.isfinite(v).all() for v in sd.values())
    manifest = load_manifest(tiny_flux_inverfill_run["manifest"])
    (entry,) = [m for m in manifest["models"] if m["filename"] == path.name]
    assert entry["base_family"] == "flux" and entry["node"] == "FewStepInverFillLoader"
    previews = sorted((tiny_flux_inverfill_run["dir"] / "previews").glob("*.png"))
    assert [p.name for p in previews] == ["step_00000150.png", "step_00000300.png"]


@pytest.mark.parametrize("trainer, args, message", [
    ("inverfill", ["--prompts_file=trainers/configs/prompts_example.txt", "--lambda_adv=0.5"],
     "lambda_adv: the LADD critic reads a UNet"),
    ("rad", ["--images_dir=tests/data"], "base_model: .* is a FLUX folder"),
])
def test_flux_folder_errors_name_the_input(tiny_flux_base, monkeypatch, tmp_path, trainer, args, message):
    """A FLUX folder: the InverFill critic (UNet features) is refused naming lambda_adv; trainers for UNets refuse
    the folder naming base_model; both before anything loads."""
    fails_before_loading(monkeypatch, trainer, [f"--base_model={tiny_flux_base}", f"--output_dir={tmp_path}", *args],
                         message)


def _weights(path):
    return load_weights(path)[0]


KILL_ARGS = FAST + ["--max_steps=60", "--checkpoint_every=10", "--eval_every=30", "--preview_every=30", "--seed=3"]


@pytest.fixture(scope="module")
def uninterrupted_weights(tiny_bases, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    run_module("trainers.inverfill", KILL_ARGS + [f"--base_model={tiny_bases['custom']}", f"--output_dir={out}"])
    return _weights(out / "inverfill.safetensors")


@pytest.mark.parametrize("when, kill_at", [("after", 20), ("during", 30)])
def test_killed_run_resumes_to_the_same_weights(tiny_bases, uninterrupted_weights, tmp_path, when, kill_at):
    """SIGKILL right after checkpoint 20 is complete, or while checkpoint 30 is half written; rerun the same
    command: it resumes from step 20 and ends with weights identical to an uninterrupted run (tolerance 0)."""
    args = KILL_ARGS + [f"--base_model={tiny_bases['custom']}", f"--output_dir={tmp_path}"]
    run_killed("trainers.inverfill", args, step=kill_at, when=when)
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 20
    assert not (tmp_path / "inverfill.safetensors").exists()
    assert (tmp_path / "checkpoints" / "checkpoint-00000030.tmp").is_dir() == (when == "during")
    resumed = run_module("trainers.inverfill", args)
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["resumed_from"] == 20
    b = _weights(tmp_path / "inverfill.safetensors")
    assert uninterrupted_weights.keys() == b.keys()
    assert all(torch.equal(uninterrupted_weights[k], b[k]) for k in b)


def test_two_processes_with_accelerate_agree_on_the_weights(tiny_bases, tmp_path):
    """Data-parallel on CPU: `accelerate launch --multi_gpu --num_processes 2` (torchrun) → gloo, two ranks.

    (`accelerate launch --cpu` starts a single process in accelerate 1.x, so it cannot show this.)
    """
    out = tmp_path / "ddp"
    run_module("trainers.inverfill", FAST + [f"--base_model={tiny_bases['custom']}", "--max_steps=6",
                                             "--checkpoint_every=3", "--eval_every=6", "--preview_every=6",
                                             f"--output_dir={out}"], launcher=accelerate_launcher(), threads=1)
    digests = [(out / f"rank{r}.weights.sha256").read_text().strip() for r in (0, 1)]
    assert digests[0] == digests[1], "DDP keeps both replicas identical"
    assert (out / "inverfill.safetensors").exists()


@pytest.mark.parametrize("base, extra", [
    ("custom", []),
    ("custom", ["teacher"]),
    ("sdxl", ["--mixed_precision=bf16", "--gradient_checkpointing=true", "--grad_accum=2", "--export_dtype=bf16"]),
])
def test_pixel_masking_with_the_adversarial_loss_runs(tiny_bases, tmp_path, base, extra):
    """The paper's full objective (VAE-encoded masked images, LADD critic, hinge), on an SD-style and an SDXL-style
    base (pooled text + size ids), with bf16 autocast, checkpointing, accumulation; the critic reads the frozen base
    or a separate teacher, and steps once per network step however many micro-batches accumulate."""
    from .support.tiny_base import build_tiny_base

    if extra == ["teacher"]:
        extra = [f"--teacher_model={build_tiny_base(tmp_path / 'teacher', seed=1)}"]
    out = tmp_path / "adv"
    args = [a for a in FAST if not a.startswith("--masking")] + [
        f"--base_model={tiny_bases[base]}", "--masking=pixel", "--lambda_adv=0.5", "--adv_lr=1e-4",
        "--max_steps=4", "--checkpoint_every=2", "--eval_every=4", "--preview_every=4", f"--output_dir={out}"] + extra
    proc = run_module("trainers.inverfill", args)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert math.isfinite(summary["final_known_mse"]) and math.isfinite(summary["initial_known_mse"])
    state = json.loads((out / "checkpoints" / "checkpoint-00000004" / "state.json").read_text())
    assert {"critic", "critic_optimizer", "model", "ema", "optimizer"} <= set(state["files"])
    critic = [load_file(str(out / "checkpoints" / f"checkpoint-0000000{s}" / "critic.safetensors")) for s in (2, 4)]
    assert any(not torch.equal(critic[0][k], critic[1][k]) for k in critic[1]), "the critic is trained"
    adam = load_file(str(out / "checkpoints" / "checkpoint-00000004" / "critic_optimizer.safetensors"))
    assert {float(v) for k, v in adam.items() if k.endswith(".step")} == {4.0}, "one critic step per network step"
    assert summary["critic_backbone"] == next((a.split("=", 1)[1] for a in extra if a.startswith("--teacher_model=")),
                                              str(tiny_bases[base]))
    meta = read_metadata(out / "inverfill.safetensors")
    assert meta["masking"] == "pixel" and meta["base_family"] == ("sdxl" if base == "sdxl" else "custom")
    if base == "sdxl":
        assert load_weights(out / "inverfill.safetensors")[0]["conv_in.weight"].dtype == torch.bfloat16


def test_a_teacher_of_another_family_is_refused(tiny_bases, tmp_path):
    proc = run_module("trainers.inverfill", FAST + [f"--base_model={tiny_bases['custom']}", "--lambda_adv=0.5",
                                                    f"--teacher_model={tiny_bases['sdxl']}", "--max_steps=1",
                                                    f"--output_dir={tmp_path}"], check=False)
    assert proc.returncode != 0 and "teacher_model: " in proc.stderr and "base_model is custom" in proc.stderr


@pytest.mark.parametrize("case, message", [
    ("missing", "prompts_file: .*missing.txt does not exist"),
    ("empty", "prompts_file: .*empty.txt holds no prompts"),
    ("no_base", "base_model: set it"),
    ("bad_base", "base_model: .*nope does not exist"),
    ("not_diffusers", "base_model: .* is not a diffusers folder"),
    ("single_file_without_config", "base_model: base.safetensors is a single-file checkpoint; set single_file_config"),
])
def test_bad_inputs_fail_with_a_named_error_before_anything_loads(tiny_bases, tmp_path, monkeypatch, case, message):
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "base.safetensors").write_bytes(b"x")
    prompts = "--prompts_file=trainers/configs/prompts_example.txt"
    args = {"missing": [f"--prompts_file={tmp_path / 'missing.txt'}", f"--base_model={tiny_bases['custom']}"],
            "empty": [f"--prompts_file={tmp_path / 'empty.txt'}", f"--base_model={tiny_bases['custom']}"],
            "no_base": [prompts],
            "bad_base": [prompts, f"--base_model={tmp_path / 'nope'}"],
            "not_diffusers": [prompts, f"--base_model={tmp_path}"],
            "single_file_without_config": [prompts, f"--base_model={tmp_path / 'base.safetensors'}"]}[case]
    fails_before_loading(monkeypatch, "inverfill", args + [f"--output_dir={tmp_path / 'out'}"], message)
    assert not (tmp_path / "out").exists(), "nothing written"


def test_the_command_line_reports_a_bad_input_and_exits_non_zero(tmp_path):
    proc = run_module("trainers.inverfill", [f"--prompts_file={tmp_path / 'missing.txt'}",
                                             f"--base_model={tmp_path}", f"--output_dir={tmp_path / 'out'}"],
                      check=False)
    assert proc.returncode != 0 and "base_model: " in proc.stderr and "is not a diffusers folder" in proc.stderr


@pytest.mark.parametrize("reblend", [True, False])
def test_the_reblend_ablation_feeds_g_the_inverted_noise_itself(reblend):
    """reblend=false (the paper's "w/o Re-Blend"): G gets ẑ_T unchanged, fresh noise never enters the hole;
    the default re-blends before G."""
    from types import SimpleNamespace

    from core.inverfill import blended_start
    from trainers.inverfill import inverfill_forward

    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    batch = SimpleNamespace(cond={}, masked_latent=torch.randn(2, 4, 8, 8, generator=g),
                            fresh=torch.randn(2, 4, 8, 8, generator=g), mask=mask)
    base = SimpleNamespace(alphas_cumprod=torch.linspace(0.999, 0.005, 1000))
    fed = []
    out = inverfill_forward(lambda x, t: 0.5 * x + 1.0, lambda x, t: fed.append(x) or torch.zeros_like(x), base,
                            batch, torch.float32, reblend)
    inverted = 0.5 * batch.masked_latent + 1.0
    torch.testing.assert_close(out["inverted"], inverted)
    expected = blended_start(inverted, batch.fresh, mask) if reblend else inverted
    torch.testing.assert_close(out["blended"], expected)
    torch.testing.assert_close(fed[0], expected)
    assert torch.equal(out["blended"][..., 3, 3], batch.fresh[..., 3, 3]) == reblend
