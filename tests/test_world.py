"""The learned world (benchmarks/world): the scene generator, a miniature build, the committed weights, and the
quality benchmark's pinned figures on a few fixed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import quality
from benchmarks.world import WEIGHTS, models, sampling, scene
from benchmarks.world.judge import caption_agreement, judge_accuracy
from core.weights import sha256_file

from .conftest import requires_comfyui, run_module


# ------------------------------------------------------------------ the scenes


def test_scenes_are_deterministic_by_seed_and_splits_are_disjoint():
    a, b = scene.scene(scene.seed_of("val", 5)), scene.scene(scene.seed_of("val", 5))
    assert a["caption"] == b["caption"] and np.array_equal(a["image"], b["image"])
    assert scene.scene(scene.seed_of("val", 6))["caption"] != a["caption"] or not np.array_equal(
        scene.scene(scene.seed_of("val", 6))["image"], a["image"])
    seeds = {split: {scene.seed_of(split, i) for i in range(0, 999_999, 997)} for split in scene.SPLITS}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["val"] & seeds["test"])
    with pytest.raises(ValueError, match="split"):
        scene.seed_of("holdout", 0)


def test_images_command_writes_folders_the_trainers_read(tmp_path):
    """``python -m benchmarks.world images``: the scenes as the trainers' image folders, captions and (TurboFill)
    masks exactly the scenes' own."""
    from trainers.common.fill_data import scan_fill_dataset
    from trainers.common.images import scan_images

    proc = run_module("benchmarks.world", ["images", "--out", str(tmp_path / "plain"), "--split", "val",
                                           "--count", "3"])
    assert json.loads(proc.stdout)["images"] == 3
    items, skipped = scan_images(tmp_path / "plain")
    assert not skipped and [i.caption for i in items] == [scene.scene(scene.seed_of("val", i))["caption"]
                                                          for i in range(3)]
    from PIL import Image

    first = scene.scene(scene.seed_of("val", 0))
    assert np.array_equal(np.asarray(Image.open(items[0].path)), (first["image"] * 255).round().astype(np.uint8))
    scene.write_folder(tmp_path / "fill", "val", 2, masks=True)
    fill, skipped = scan_fill_dataset(tmp_path / "fill")
    assert len(fill) == 2 and not skipped
    hole = np.asarray(Image.open(fill[0].mask)) > 127
    assert np.array_equal(hole, first["visible"][0] > 0.5), "the first object's visible region is the hole"


def test_caption_names_every_attribute_and_regions_match_objects():
    for i in range(40):
        item = scene.scene(scene.seed_of("train", i))
        p = item["params"]
        words = item["caption"]
        bg = p["background"]
        assert all(c in words for c in bg["colours"])
        kind_word = {"solid": "background", "gradient": "gradient", "stripes": "striped", "checker": "checkered"}
        assert kind_word[bg["kind"]] in words
        for obj, region in zip(p["objects"], item["regions"]):
            assert region == f"a {obj['size']} {obj['colour']} {obj['shape']}" and region in words
            assert scene.position_phrase(obj["position"]) in words
        assert 1 <= len(p["objects"]) <= 3 and item["visible"].shape == (len(p["objects"]), 64, 64)
        assert all(o["colour"] not in bg["colours"] for o in p["objects"])
        json.dumps(p)  # the ground truth is JSON


def test_object_pixels_have_their_colour_and_masks_cover_them():
    item = scene.scene(scene.seed_of("train", 3))
    for obj, vis in zip(item["params"]["objects"], item["visible"]):
        inside = vis > 0.99
        if inside.any():
            expected = np.array(scene.COLOURS[obj["colour"]]) / 255
            assert np.abs(item["image"][inside] - expected).max() < 1e-5


def test_every_world_word_is_one_token():
    tok = models.word_tokenizer()
    for word in scene.vocabulary():
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] != tok.unk_token_id or word == "<|endoftext|>", word
    longest = max(len(tok(scene.scene(scene.seed_of("train", i))["caption"]).input_ids) for i in range(300))
    assert longest <= models.MAX_TOKENS


# ------------------------------------------------------------------ a miniature build


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "mini"
    run_module("benchmarks.world", ["build", "--out", str(out), "--preset", "mini"], threads=2)
    return out


def test_miniature_build_writes_the_formats_the_pack_takes(mini_world):
    from trainers.common.base_model import load_base_model

    report = json.loads((mini_world / "world.json").read_text())
    for key in ("judge_accuracy", "vae_psnr_db", "caption_agreement"):
        assert key in report["world"]
    assert set(report["world"]["caption_agreement"]) == {"student_1", "student_2", "student_4", "teacher_50"}
    for name in ("turbo", "teacher"):
        base = load_base_model(mini_world / name)  # what every trainer's base_model loads
        assert base.family == "custom" and base.unet.config.sample_size == 16
        ids = base.tokenizers[0]([scene.scene(1)["caption"]], return_tensors="pt").input_ids
        assert base.tokenizers[0].unk_token_id not in ids[0, 1:-1].tolist()
    for rel, entry in report["files"].items():
        assert sha256_file(mini_world / rel) == entry["sha256"], rel
    assert (mini_world / "samples.png").is_file()


def test_rebuilding_resumes_from_finished_stages_and_reproduces_the_files(mini_world, tmp_path):
    first = json.loads((mini_world / "world.json").read_text())["files"]
    again = tmp_path / "again"
    run_module("benchmarks.world", ["build", "--out", str(again), "--preset", "mini"], threads=2)
    second = json.loads((again / "world.json").read_text())["files"]
    weights = [k for k in first if k.endswith(".safetensors")]
    assert weights and all(first[k]["sha256"] == second[k]["sha256"] for k in weights)
    proc = run_module("benchmarks.world", ["build", "--out", str(again), "--preset", "mini"], threads=2)
    assert "vae_run" not in proc.stderr and "teacher_run" not in proc.stderr, "finished stages must be skipped"
    assert json.loads((again / "world.json").read_text())["files"] == second


def test_a_build_refuses_a_folder_of_another_config(mini_world):
    proc = run_module("benchmarks.world", ["build", "--out", str(mini_world), "--preset", "full"], check=False)
    assert proc.returncode != 0 and "another config" in proc.stderr


# ------------------------------------------------------------------ the committed world


@pytest.fixture(scope="module")
def world():
    return quality.load_world(WEIGHTS)


def test_committed_weights_match_their_sha256_and_size_limits():
    report = json.loads((WEIGHTS / "world.json").read_text())
    total = 0
    for rel, entry in report["files"].items():
        path = WEIGHTS / rel
        assert sha256_file(path) == entry["sha256"], rel
        assert path.stat().st_size <= 10 * 2**20, rel
        total += path.stat().st_size
    assert total <= 25 * 2**20


TARGET_UNMET = ("issue 12's target (student, 4 steps, >= 80 % caption agreement) is not met by the committed "
                "CPU-built world: README, 'What holds at this scale'")


def test_committed_judge_meets_its_target_as_reported():
    assert json.loads((WEIGHTS / "world.json").read_text())["world"]["judge_accuracy"] >= 0.95


@pytest.mark.xfail(strict=True, reason=TARGET_UNMET)
def test_committed_student_meets_its_target_as_reported():
    assert json.loads((WEIGHTS / "world.json").read_text())["world"]["caption_agreement"]["student_4"] >= 0.80


def test_judge_reads_held_out_scenes(world):
    items = [scene.scene(scene.seed_of("test", 500 + i)) for i in range(48)]
    images = torch.from_numpy(np.stack([s["image"] for s in items])).permute(0, 3, 1, 2)
    assert judge_accuracy(world.judge, items, images)["overall"] >= 0.95


@pytest.mark.xfail(strict=True, reason=TARGET_UNMET)
def test_student_four_step_samples_pass_the_judge(world):
    items = [scene.scene(scene.seed_of("test", 700 + i)) for i in range(32)]
    cond = world.cond([s["caption"] for s in items])
    model = sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)
    latents = sampling.sample_student(model, (len(items), 4, 16, 16), 11, 4)
    agreement, _ = caption_agreement(world.judge, items, world.decode(latents))
    assert agreement >= 0.80


CI_CASES = quality.default_cases(12)[:12]


@pytest.fixture(scope="module")
def ci_rows(world):
    rows = {r.name: r for r in quality.all_rows()}
    batch = quality.materialise(CI_CASES)
    results, _ = quality.run_rows(world, batch, [rows["core_blend_4"], rows["fewstep_4"]])
    return {r["name"]: r["metrics"] for r in results}


def test_exact_composite_keeps_known_pixels_exact_on_the_world(ci_rows):
    for name, m in ci_rows.items():
        assert m["known_max_abs_after"] == 0.0, name
        assert m["known_max_abs_before"] > 0.0, name  # the VAE round trip alone moves them


def test_measured_ordering_of_blended_sampler_and_core_blend_is_pinned(ci_rows):
    """Measured 2026-12-01 on the committed world, these 12 cases (README, quality table for all 48): FewStep
    Blended Sampler 4 steps hole PSNR 21.81 dB, seam 4.315; core's blend 22.00 dB, seam 3.709 (on all 48: 19.92 vs
    20.48 dB, paired −0.56 ± 0.33; seam 2.54 vs 2.48). They tie in PSNR; on these 12 core's seam is lower. Pinned:
    PSNR within 1 dB of each other, our seam at most 1.0 above core's, with floors so that a broken blend (a sign
    error, a wrong σ scaling: 14–17 dB, as the 1-step and no-LoRA RAD rows show) fails."""
    ours, core = ci_rows["fewstep_4"], ci_rows["core_blend_4"]
    assert abs(ours["hole_psnr_db"] - core["hole_psnr_db"]) <= 1.0
    assert ours["seam_score"] - core["seam_score"] <= 1.0
    for m in (ours, core):
        assert m["hole_psnr_db"] >= 20.5 and m["seam_score"] <= 5.0


def test_student_agreement_does_not_regress(world):
    """A pin below the unmet target: measured 0.487 on these 32 captions (0.438 on the report's 256)."""
    items = [scene.scene(scene.seed_of("test", 700 + i)) for i in range(32)]
    cond = world.cond([s["caption"] for s in items])
    model = sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)
    latents = sampling.sample_student(model, (32, 4, 16, 16), 11, 4)
    agreement, _ = caption_agreement(world.judge, items, world.decode(latents))
    assert agreement >= 0.40


def test_quality_benchmark_runs_a_cases_file(world, tmp_path):
    from PIL import Image

    item = scene.scene(scene.seed_of("test", 42))
    Image.fromarray((item["image"] * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "photo_mask.png")
    cases = {"cases": [
        {"id": "mine", "task": "inpaint", "image": "photo.png", "mask": "photo_mask.png", "prompt": item["caption"]},
        {"id": "world", "task": "inpaint", "seed": scene.seed_of("test", 43), "box": [8, 8, 24, 24],
         "expect": {"shape": "none"}},
    ]}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = tmp_path / "out"
    run_module("benchmarks.quality", ["--cases", str(tmp_path / "cases.json"), "--out", str(out),
                                      "--rows", "fewstep_1,core_blend_4"], threads=2)
    report = json.loads((out / "quality.json").read_text())
    assert {"judge_accuracy", "caption_agreement"} <= set(report["world"])
    assert [r["name"] for r in report["rows"]] == ["core_blend_4", "fewstep_1"]
    for r in report["rows"]:
        assert r["task"] == "inpaint" and r["nfe"] >= 1 and r["seconds"] > 0
        assert r["metrics"]["known_max_abs_after"] == 0.0
        assert [c["id"] for c in r["per_case"]] == ["mine", "world"]
        assert "hole_psnr_db" not in r["per_case"][0]  # an image file has no ground truth unless fidelity is set
    assert (out / "quality.md").read_text().count("|") > 10 and (out / "contact_sheet.png").is_file()


def test_cases_file_errors_name_the_case(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"cases": [{"id": "x", "task": "inpaint", "seed": 1}]}))
    with pytest.raises(ValueError, match="case x: give a 'box'"):
        quality.load_cases(tmp_path / "bad.json")


# ------------------------------------------------------------------ the nodes on the learned world


@requires_comfyui
def test_nodes_on_the_world_equal_the_benchmark_core_path(world, pack_nodes):
    import importlib

    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    import comfy.samplers
    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    sampler_nodes = importlib.import_module(f"{PACK_NAME}.nodes.sampler")
    schedule_nodes = importlib.import_module(f"{PACK_NAME}.nodes.schedule")
    noise_nodes = importlib.import_module(f"{PACK_NAME}.nodes.noise")
    composite_nodes = importlib.import_module(f"{PACK_NAME}.nodes.composite")
    custom = importlib.import_module("comfy_extras.nodes_custom_sampler")

    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    batch = quality.materialise(CI_CASES[:6])
    source = world.encode(batch.images)
    positive = conditioning(world.cond(batch.prompts))
    rows = {r.name: r for r in quality.all_rows()}
    seed = quality.ROW_SEED
    (sigmas,) = schedule_nodes.FewStepSchedule.execute(model=model, steps=4, spacing="trailing").result
    (sampler,) = sampler_nodes.FewStepBlendedSampler.execute(hole_init="source").result
    for name, noise in (("fewstep_4", Noise_RandomNoise(seed)),
                        ("fewstep_4_reblend", noise_nodes.ReBlend.execute(noise=Noise_RandomNoise(seed),
                                                                          mask=batch.masks[:, 0],
                                                                          seed=seed + 1).result[0])):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, positive)
        guider.set_cfg(1.0)
        latent = {"samples": source / world.scaling_factor, "noise_mask": batch.masks[:, 0]}
        advanced = custom.SamplerCustomAdvanced
        out = (advanced.execute(noise, guider, sampler, sigmas, latent).result if hasattr(advanced, "execute")
               else advanced().sample(noise, guider, sampler, sigmas, latent))[0]
        node_latents = out["samples"] * world.scaling_factor
        core_latents, core_images = quality.row_images(world, batch, rows[name], seed)
        torch.testing.assert_close(node_latents, core_latents, atol=2e-3, rtol=1e-3)
        generated = world.decode(node_latents).permute(0, 2, 3, 1)
        (image, _) = composite_nodes.ExactComposite.execute(original=batch.images.permute(0, 2, 3, 1),
                                                            generated=generated, mask=batch.masks[:, 0]).result
        known = (batch.masks[:, 0] == 0).unsqueeze(-1).expand_as(image)
        assert torch.equal(image[known], batch.images.permute(0, 2, 3, 1)[known])
        ours, _ = quality.exact_composite(batch.images.permute(0, 2, 3, 1), generated, batch.masks[:, 0],
                                          **quality.COMPOSITE)
        assert torch.equal(image, ours), "the benchmark composites with the node's defaults"
        node_metrics = quality.aggregate(quality.case_metrics(world, batch, generated.permute(0, 3, 1, 2)))
        core_metrics = quality.aggregate(quality.case_metrics(world, batch, core_images))
        assert node_metrics["hole_psnr_db"] == pytest.approx(core_metrics["hole_psnr_db"], abs=0.05)
        assert node_metrics["seam_score"] == pytest.approx(core_metrics["seam_score"], abs=0.02)


# ------------------------------------------------------------------ trained methods on the world (issue 15)


@pytest.mark.parametrize("row", sorted(quality.RAD_LORAS))
def test_committed_rad_files_come_from_the_trainers_world_config(row):
    """Each committed RAD file is trainers.rad's own export from trainers/configs/rad_world.yaml on the world."""
    import yaml

    from core.weights import load_weights

    file, _ = quality.RAD_LORAS[row]
    _, metadata = load_weights(quality.TRAINED / file)
    entry = json.loads((quality.TRAINED / file).with_suffix(".manifest.json").read_text())
    assert entry["sha256"] == sha256_file(quality.TRAINED / file), "the file the trainer wrote, unaltered"
    assert entry["produced_by"]["config"] == "trainers/configs/rad_world.yaml"
    config = metadata["config"]
    recipe = yaml.safe_load((quality.REPO / "trainers" / "configs" / "rad_world.yaml").read_text())
    assert metadata["kind"] == "rad" and config["base_model"] == recipe["base_model"]
    assert config["mask_kind"] == ("pixel" if row.endswith("_pixel") else "perlin")
    assert config["max_steps"] == recipe["max_steps"] and config["rank"] == recipe["rank"]


@pytest.fixture(scope="module")
def rad_rows(world):
    rows = {r.name: r for r in quality.all_rows()}
    batch = quality.materialise(CI_CASES)
    results, _ = quality.run_rows(world, batch, [rows[n] for n in ("rad_4_no_lora", *quality.RAD_LORAS, "fewstep_4")])
    return {r["name"]: r["metrics"] for r in results}


def test_rad_lora_effect_is_pinned(rad_rows):
    """Measured 2026-12-02 on these 12 cases (all 48: README, 'RAD on the world'): hole PSNR without the LoRA
    16.47 dB (seam 6.08), with the Perlin-trained LoRA 20.11 (3.73), with the pixel-trained LoRA 16.80 (4.21),
    FewStep Blended Sampler 21.81 (4.32). Pinned with margins: the LoRA is what makes RAD work (≥ 2 dB and ≥ 1 seam
    better than without), it stays within 3 dB of the blended sampler, and Perlin training beats independent
    pixels (RAD's ablation) by ≥ 1 dB."""
    none, perlin, pixel = (rad_rows[n] for n in ("rad_4_no_lora", "rad_4_lora", "rad_4_lora_pixel"))
    assert perlin["hole_psnr_db"] >= none["hole_psnr_db"] + 2.0
    assert perlin["seam_score"] <= none["seam_score"] - 1.0
    assert perlin["hole_psnr_db"] >= rad_rows["fewstep_4"]["hole_psnr_db"] - 3.0
    assert perlin["hole_psnr_db"] >= pixel["hole_psnr_db"] + 1.0
    assert all(m["known_max_abs_after"] == 0.0 for m in rad_rows.values())


@requires_comfyui
@pytest.mark.parametrize("row", sorted(quality.RAD_LORAS))
def test_rad_lora_through_the_node_equals_the_benchmark_row(world, pack_nodes, row):
    """The Region-Aware Sampler node with the committed RAD file (ComfyUI's LoraLoader, the node's patch) gives the
    benchmark row's latents (core.lora.merge_lora on the student)."""
    import importlib

    import folder_paths
    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    comfy_rad = importlib.import_module(f"{PACK_NAME}.nodes.comfy_rad")
    file, _ = quality.RAD_LORAS[row]
    folder_paths.add_model_folder_path("fewstep_rad", str(quality.TRAINED))
    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    batch = quality.materialise(CI_CASES[:4])
    source = world.encode(batch.images)
    latent = {"samples": source / world.scaling_factor, "noise_mask": batch.masks[:, 0]}
    out = comfy_rad.region_aware_sample(model, conditioning(world.cond(batch.prompts)), latent, 4, quality.ROW_SEED,
                                        1.0, file, 1.0)
    rows = {r.name: r for r in quality.all_rows()}
    core_latents, _ = quality.row_images(world, batch, rows[row], quality.ROW_SEED)
    torch.testing.assert_close(out["samples"] * world.scaling_factor, core_latents, atol=2e-3, rtol=1e-3)
