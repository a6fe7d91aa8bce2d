"""TurboEdit encoder trainer on tiny random bases (CPU subprocesses)."""
import json

import pytest
import torch

from core.manifest import SCHEMA_PATH, schema_errors
from core.weights import load_weights

from .conftest import fails_before_loading, run_module


def test_tiny_run_halves_the_heldout_reconstruction_error(tiny_turboedit_run):
    """Done-when: held-out reconstruction error ≤ 50 % of the untrained encoder's."""
    s = tiny_turboedit_run["summary"]
    assert s["steps"] == 60 and s["final_recon_mse"] <= 0.5 * s["initial_recon_mse"], s


def test_tiny_run_exports_an_encoder_with_metadata(tiny_turboedit_run):
    sd, meta = load_weights(tiny_turboedit_run["weights"])
    assert meta["kind"] == "turboedit" and meta["base_family"] == "sd15" and meta["timesteps"] == "999,749,499,249"
    assert sd["conv_in.weight"].shape[1] == 8 and sd["conv_out.weight"].shape[0] == 8
    assert meta["unet_config"]["in_channels"] == 8
    entry = json.loads(tiny_turboedit_run["weights"].with_suffix(".manifest.json").read_text())
    schema = json.loads(SCHEMA_PATH.read_text())["properties"]["models"]["items"]
    assert schema_errors(entry, schema) == [] and entry["node"] == "FewStepTurboEditLoader"


def test_encoder_starts_from_the_base_weights(tiny_bases):
    from trainers.common.base_model import load_base_model
    from trainers.turboedit import encoder_from_base

    base = load_base_model(tiny_bases["custom"])
    encoder = encoder_from_base(base.unet).requires_grad_(False)
    w, b = encoder.conv_in.weight, base.unet.conv_in.weight
    assert torch.equal(w[:, :4], b) and float(w[:, 4:].abs().sum()) == 0
    assert torch.equal(encoder.conv_out.weight[:4], base.unet.conv_out.weight)
    assert float(encoder.conv_out.weight[4:].abs().sum()) == 0, "log σ² starts at 0 (σ = 1)"


def test_images_without_caption_are_skipped_and_reported(tiny_bases, image_folder, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        (folder / f"{name}.png").write_bytes((image_folder / f"{name}.png").read_bytes())
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        (folder / f"{name}.txt").write_text(f"a photo of {name}")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "broken.txt").write_text("a broken file")
    out = tmp_path / "out"
    proc = run_module("trainers.turboedit", [
        "--config", "trainers/configs/turboedit_tiny.yaml", f"--base_model={tiny_bases['custom']}",
        f"--images_dir={folder}", "--default_caption=", "--max_steps=2", "--eval_count=1", "--eval_every=2",
        "--preview_every=2", "--checkpoint_every=2", f"--output_dir={out}"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["skipped_images"] == 2
    skipped = json.loads((out / "metrics.json").read_text())["skipped"]
    assert any("camera.png: no caption" in s for s in skipped) and any("broken.png: unreadable" in s for s in skipped)


@pytest.mark.parametrize("case, message", [
    ("missing", "images_dir: .* is not a folder"),
    ("empty", "images_dir: .* holds no usable images"),
    ("unset", "images_dir: set it"),
    ("bad_base", "base_model: .*nope does not exist"),
])
def test_bad_inputs_fail_with_a_named_error_before_anything_loads(tiny_bases, tmp_path, monkeypatch, case, message):
    (tmp_path / "empty").mkdir()
    images = {"missing": [f"--images_dir={tmp_path / 'nope'}"], "empty": [f"--images_dir={tmp_path / 'empty'}"],
              "unset": [], "bad_base": [f"--images_dir={tmp_path / 'empty'}"]}[case]
    base = tmp_path / "nope" if case == "bad_base" else tiny_bases["custom"]
    fails_before_loading(monkeypatch, "turboedit",
                         [f"--base_model={base}", *images, f"--output_dir={tmp_path / 'out'}"], message)
    assert not (tmp_path / "out").exists(), "nothing written"

