"""Node glue against real ComfyUI objects, in-process (COMFYUI_DIR set and importable; skipped otherwise)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import pack_module, requires_comfyui
from .support.recorders import InputRecorder

pytestmark = requires_comfyui


def run_node(node_cls, **inputs):
    out = node_cls.execute(**inputs)
    return out.result if hasattr(out, "result") else out


def box_latent(batch=1, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 4, h, w, generator=g)
    mask = torch.zeros(batch, h * 8, w * 8)
    mask[:, 32:96, 40:104] = 1
    return z, mask


def test_schedule_gives_exact_distilled_sigmas(sd15):
    from comfy_extras.nodes_custom_sampler import SDTurboScheduler

    model = sd15[0]
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=4, spacing="trailing")
    ms = model.get_model_object("model_sampling")
    expected = torch.cat([ms.sigma(torch.tensor([999, 749, 499, 249]).float()), torch.zeros(1)])
    torch.testing.assert_close(sigmas, expected)
    turbo = SDTurboScheduler().get_sigmas(model, 4, 1.0)[0]
    assert not torch.allclose(turbo, sigmas), "core's SDTurboScheduler picks 999/899/799/699"
    (lcm,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=4, spacing="lcm")
    torch.testing.assert_close(lcm[:-1], ms.sigma(torch.tensor([999, 759, 499, 259]).float()))
    (custom,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=1, spacing="lcm",
                         timesteps="999, 499")
    assert custom.shape == (3,)


def test_reblend_wraps_core_random_noise_exactly():
    import comfy.sample
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    z, mask = box_latent(batch=2)
    (noise,) = run_node(pack_module("nodes.noise").ReBlend, noise=Noise_RandomNoise(11), mask=mask, seed=99)
    assert noise.seed == 11
    latent = {"samples": z}
    out = noise.generate_noise(latent)
    inner = Noise_RandomNoise(11).generate_noise(latent)
    fresh = comfy.sample.prepare_noise(z, 99)
    m = torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear")
    known, hole = (m == 0).expand_as(out), (m == 1).expand_as(out)
    assert torch.equal(out[known], inner[known]) and torch.equal(out[hole], fresh[hole])
    assert out.dtype == torch.float32 and out.device.type == "cpu"


def test_reblend_honours_batch_index_and_names_bad_masks():
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    z, mask = box_latent(batch=2)
    (noise,) = run_node(pack_module("nodes.noise").ReBlend, noise=Noise_RandomNoise(1), mask=mask[:1], seed=2)
    assert noise.generate_noise({"samples": z, "batch_index": [3, 4]}).shape == z.shape
    (bad,) = run_node(pack_module("nodes.noise").ReBlend, noise=Noise_RandomNoise(1), mask=mask.repeat(3, 1, 1), seed=2)
    with pytest.raises(ValueError, match="Re-Blend mask: batch of 6 does not fit the latent batch of 2"):
        bad.generate_noise({"samples": z})
    for bad in ("nan", "inf"):
        with pytest.raises(ValueError, match="mask: contains 32768 NaN/inf"):
            run_node(pack_module("nodes.noise").ReBlend, noise=Noise_RandomNoise(1), mask=mask * float(bad), seed=2)


class ConstantNoise:
    """A NOISE (ComfyUI's protocol: .seed, generate_noise) whose every value is ``value``."""

    def __init__(self, value: float, seed: int = 0):
        self.value, self.seed = value, seed

    def generate_noise(self, latent: dict) -> torch.Tensor:
        return torch.full_like(latent["samples"], self.value)


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_reblend_names_a_non_finite_wrapped_noise(bad):
    z, mask = box_latent()
    (noise,) = run_node(pack_module("nodes.noise").ReBlend, noise=ConstantNoise(float(bad)), mask=mask, seed=2)
    with pytest.raises(ValueError, match="Re-Blend noise: contains 1024 NaN/inf"):
        noise.generate_noise({"samples": z})


def sample_custom(model, conds, sampler, sigmas, latent, seed=5):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise, SamplerCustomAdvanced

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    out, denoised = SamplerCustomAdvanced().sample(Noise_RandomNoise(seed), guider, sampler, sigmas, latent)
    return out["samples"], denoised["samples"]


def test_blended_sampler_owns_the_blend_no_double_blend(sd15, conds):
    """Known-region model inputs are source + σ·fresh noise (ours), not the start noise (core's re-noise)."""
    import comfy.sample
    import comfy.samplers

    model, _, _ = sd15
    z, mask = box_latent()
    latent = {"samples": z, "noise_mask": mask}
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=4, spacing="trailing")
    start_noise = comfy.sample.prepare_noise(z, 5)
    z_in = model.model.process_latent_in(z)
    known = (torch.nn.functional.interpolate(mask[:, None], size=(16, 16), mode="bilinear") == 0).expand_as(z)

    def correlations(sampler):
        recorder = InputRecorder()
        patched = model.clone()
        patched.set_model_unet_function_wrapper(recorder)
        out, _ = sample_custom(patched, conds, sampler, sigmas, latent)
        corr = []
        for x, s in zip(recorder.inputs[1:], recorder.sigmas[1:]):
            eps = (x.cpu() - z_in) / s
            corr.append(float(torch.corrcoef(torch.stack([eps[known], start_noise[known]]))[0, 1]))
        return out, corr, len(recorder.inputs)

    (ours,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    out, corr, calls = correlations(ours)
    assert calls == 4
    assert max(abs(c) for c in corr) < 0.1, corr
    torch.testing.assert_close(out[known], z[known], rtol=1e-6, atol=1e-6)
    _, core_corr, _ = correlations(comfy.samplers.sampler_object("lcm"))
    assert min(core_corr) > 0.99, "core's KSamplerX0Inpaint re-noises the known region with the start noise"


def test_blended_sampler_empty_mask_skips_the_model(sd15, conds):
    model, _, _ = sd15
    z, _ = box_latent()
    recorder = InputRecorder()
    patched = model.clone()
    patched.set_model_unet_function_wrapper(recorder)
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=4, spacing="trailing")
    (ours,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="noise")
    out, _ = sample_custom(patched, conds, ours, sigmas, {"samples": z, "noise_mask": torch.zeros(1, 128, 128)})
    assert recorder.inputs == []
    torch.testing.assert_close(out, z, rtol=1e-6, atol=1e-6)


def test_blended_sampler_with_differential_diffusion(sd15, conds):
    from comfy_extras.nodes_differential_diffusion import DifferentialDiffusion

    model, _, _ = sd15
    z, mask = box_latent()
    soft = mask.clone()
    soft[:, 32:96, 40:104] = torch.linspace(0.2, 1.0, 64)[None, None, :]
    (dd_model,) = DifferentialDiffusion.execute(model).result
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=dd_model, steps=4, spacing="trailing")
    (ours,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    out, _ = sample_custom(dd_model, conds, ours, sigmas, {"samples": z, "noise_mask": soft})
    known = (torch.nn.functional.interpolate(soft[:, None], size=(16, 16), mode="bilinear") == 0).expand_as(z)
    torch.testing.assert_close(out[known], z[known], rtol=1e-6, atol=1e-6)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("where, message", [
    ("latent", "latent_image: contains 1 NaN/inf"),
    ("noise_mask", r"latent noise_mask: contains \d+ NaN/inf"),
    ("noise", "noise: contains 1024 NaN/inf"),
])
def test_blended_sampler_names_non_finite_inputs(sd15, conds, where, message, bad):
    """docs/nodes.md's Bad input rows: NaN or ±inf in the LATENT, its noise_mask or the NOISE is named, nothing
    sampled."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced

    model, _, _ = sd15
    z, mask = box_latent()
    mask = mask[:, ::8, ::8].clone()  # latent-sized: ComfyUI hands the sampler this very mask
    if where == "latent":
        z[0, 0, 0, 0] = float(bad)
    if where == "noise_mask":
        mask[0, 0, 0] = float(bad)
    noise = ConstantNoise(float(bad) if where == "noise" else 0.0)
    recorder = InputRecorder()
    patched = model.clone()
    patched.set_model_unet_function_wrapper(recorder)
    (sigmas,) = run_node(pack_module("nodes.schedule").FewStepSchedule, model=model, steps=2, spacing="trailing")
    (ours,) = run_node(pack_module("nodes.sampler").FewStepBlendedSampler, hole_init="source")
    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    with pytest.raises(ValueError, match=message):
        SamplerCustomAdvanced().sample(noise, guider, ours, sigmas, {"samples": z, "noise_mask": mask})
    assert recorder.inputs == [], "the model never ran"


def test_model_folders_and_weight_loading(tmp_path, monkeypatch):
    import comfy.model_management
    import folder_paths

    paths = pack_module("nodes.paths")
    weights = pack_module("core.weights")
    paths.register_model_folders()
    for kind in paths.KINDS:
        folders, exts = folder_paths.folder_names_and_paths[f"fewstep_{kind}"]
        assert exts == {".safetensors"} and folders[0].endswith(str(Path("fewstep") / kind))
    folder_paths.add_model_folder_path("fewstep_rad", str(tmp_path))
    weights.save_weights(tmp_path / "rad_ok.safetensors", {"w": torch.ones(2)}, {"kind": "rad"})
    weights.save_weights(tmp_path / "other.safetensors", {"w": torch.ones(2)}, {"kind": "inverfill"})
    sd, meta = paths.load_weight_file("rad", "rad_ok.safetensors")
    assert torch.equal(sd["w"], torch.ones(2)) and meta["kind"] == "rad"
    with pytest.raises(Exception, match="is a 'inverfill' weight, but this node needs a 'rad' weight"):
        paths.load_weight_file("rad", "other.safetensors")
    with pytest.raises(FileNotFoundError) as err:
        paths.load_weight_file("rad", "absent.safetensors")
    assert "absent.safetensors" in str(err.value) and str(tmp_path) in str(err.value)

    entry = {"filename": "rad_ok.safetensors", "kind": "rad", "bytes": 1, "save_path": "fewstep/rad",
             "produced_by": {"trainer": "trainers.rad", "command": "python -m trainers.rad --config x.yaml",
                             "config": "x.yaml"}, "url": ""}
    monkeypatch.setattr(paths, "load_manifest", lambda: {"models": [entry]})
    with pytest.raises(Exception, match="expects 1 .*python -m trainers.rad --config x.yaml"):
        paths.load_weight_file("rad", "rad_ok.safetensors")
    monkeypatch.setattr(paths, "load_manifest", lambda: {"models": [dict(entry, filename="gone.safetensors")]})
    with pytest.raises(FileNotFoundError, match="gone.safetensors.*make it with: python -m trainers.rad"):
        paths.load_weight_file("rad", "gone.safetensors")

    check_digests_of_listed_files(paths, weights, tmp_path, monkeypatch)

    patcher = paths.wrap_network(torch.nn.Linear(3, 3))
    comfy.model_management.load_models_gpu([patcher])
    assert patcher.model(torch.ones(1, 3)).shape == (1, 3)
    assert patcher.load_device == comfy.model_management.get_torch_device()
    assert patcher.model.weight.dtype == paths.network_dtype(12, torch.float32)
    half = paths.wrap_network(torch.nn.Linear(3, 3), dtype=torch.bfloat16)
    assert half.model.weight.dtype == torch.bfloat16


def test_exact_composite_node(sd15):
    image = torch.rand(1, 70, 53, 3)
    generated = torch.rand(1, 64, 48, 3)
    mask = torch.zeros(1, 70, 53)
    mask[:, 10:40, 10:40] = 1
    out, used = run_node(pack_module("nodes.composite").ExactComposite, original=image, generated=generated,
                         mask=mask, grow=2, feather=3, color_match=0.5)
    assert out.shape == image.shape and torch.equal(out[used == 0], image[used == 0])


def check_digests_of_listed_files(paths, weights, folder, monkeypatch):
    """A listed file with one byte flipped (same size) is refused, naming it and both digests; the digest is
    computed once per (path, size, mtime); FEWSTEP_SKIP_HASH_CHECK=1 trusts the file."""
    import os

    manifest = pack_module("core.manifest")
    path = folder / "rad_listed.safetensors"
    weights.save_weights(path, {"w": torch.arange(64.0)}, {"kind": "rad"})
    good = weights.sha256_file(path)
    entry = {"filename": path.name, "kind": "rad", "bytes": path.stat().st_size, "sha256": good, "url": "",
             "save_path": "fewstep/rad", "produced_by": {"trainer": "trainers.rad", "config": "x.yaml",
                                                         "command": "python -m trainers.rad --config x.yaml"}}
    monkeypatch.setattr(paths, "load_manifest", lambda: {"models": [entry]})
    monkeypatch.delenv(manifest.SKIP_HASH_ENV, raising=False)
    hashed = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: hashed.append(p) or real(p))
    paths.load_weight_file("rad", path.name)
    paths.load_weight_file("rad", path.name)
    assert len(hashed) == 1, "hashed once, then the verdict is reused"

    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte inside the tensor data: same size, readable header
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    bad = weights.sha256_file(path)
    with pytest.raises(Exception) as err:
        paths.load_weight_file("rad", path.name)
    message = str(err.value)
    assert path.name in message and bad in message and good in message and "FEWSTEP_SKIP_HASH_CHECK=1" in message
    assert "python -m trainers.rad --config x.yaml" in message
    monkeypatch.setenv(manifest.SKIP_HASH_ENV, "1")
    paths.load_weight_file("rad", path.name)
