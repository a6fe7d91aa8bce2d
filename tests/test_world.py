"""The learned world (benchmarks/world): the scene generator, a miniature build, the committed weights, and the
quality benchmark's pinned figures on a few fixed cases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import edit_quality, quality
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


def test_prompts_and_regions_commands_write_what_the_trainers_take(tmp_path):
    """``prompts``: one detailed caption per line (InverFill's prompts_file); ``regions`` + trainers.region_dataset
    without SAM2: TurboFill's layout, each object's grown box as its hole with its region caption (and with
    --background a background-only box captioned with the background)."""
    import trainers.region_dataset as rd
    from benchmarks.world.judge import bbox_region
    from PIL import Image
    from trainers.common.fill_data import scan_fill_dataset

    run_module("benchmarks.world", ["prompts", "--out", str(tmp_path / "p.txt"), "--split", "val", "--count", "3"])
    assert (tmp_path / "p.txt").read_text().splitlines() == [scene.scene(scene.seed_of("val", i))["caption"]
                                                              for i in range(3)]
    proc = run_module("benchmarks.world", ["regions", "--out", str(tmp_path / "src"), "--split", "val", "--count",
                                           "4", "--background"])
    regions = json.loads(proc.stdout)["regions"]
    src = tmp_path / "src"
    assert rd.main(["--images_dir", str(src / "images"), "--output_dir", str(tmp_path / "out"),
                    "--prompts", str(src / "prompts.json"), "--captions", str(src / "captions.json")]) == 0
    items, unusable = scan_fill_dataset(tmp_path / "out")
    assert len(items) == regions and not unusable
    first = scene.scene(scene.seed_of("val", 0))
    sample = next(i for i in items if i.image.stem == "val_000000-r0")
    j = next(j for j, f in enumerate(first["visible_fraction"]) if f >= 0.5)
    assert sample.caption == first["regions"][j]
    assert np.array_equal(np.asarray(Image.open(sample.mask)) > 127, bbox_region(first["visible"][j], 3) > 0.5)
    backgrounds = [i for i in items if i.caption.endswith("background")]
    assert backgrounds and all(i.caption == scene.background_caption(scene.scene(scene.seed_of(
        "val", int(i.image.stem.split("_")[1].split("-")[0])))["params"]["background"]) for i in backgrounds)


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
    by_attribute = report["world"]["caption_agreement_by_attribute"]
    assert set(by_attribute) == set(report["world"]["caption_agreement"])
    assert all({"bg_kind", "bg_first", "overall"} <= set(kinds) for kinds in by_attribute.values())
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


def test_measure_reproduces_a_built_worlds_figures_without_writing(mini_world):
    """``measure`` re-reads a built world (the committed one by default) with the build's own figures code."""
    before = {p: p.stat().st_mtime_ns for p in mini_world.rglob("*") if p.is_file()}
    proc = run_module("benchmarks.world", ["measure", "--world", str(mini_world)], threads=2)
    figures = json.loads(proc.stdout)
    built = json.loads((mini_world / "world.json").read_text())["world"]
    for key in ("caption_agreement", "caption_agreement_by_attribute", "teacher_one_step_by_attribute",
                "judge_accuracy", "vae_psnr_db"):
        assert figures[key] == built[key], key
    assert {p: p.stat().st_mtime_ns for p in mini_world.rglob("*") if p.is_file()} == before


def test_set_overrides_one_field_and_a_bad_one_is_named():
    from benchmarks.world.build import BuildConfig

    cfg = BuildConfig.preset("mini").with_overrides(["teacher_steps=9", "offset_noise=0.1"])
    assert (cfg.teacher_steps, cfg.offset_noise, cfg.vae_steps) == (9, 0.1, BuildConfig.preset("mini").vae_steps)
    for bad, named in (("teacher_step=9", "teacher_step=9"), ("teacher_steps=1.5", "teacher_steps"),
                       ("seed=3", "--seed"), ("teacher_phase_t_min=1000", "teacher_phase_t_min")):
        proc = run_module("benchmarks.world", ["build", "--out", "unused", "--preset", "mini", "--set", bad],
                          check=False)
        assert proc.returncode == 2 and named in proc.stderr and "Traceback" not in proc.stderr


def test_the_full_preset_is_the_committed_worlds_config_with_its_teacher_phase():
    """``build`` with no --set rebuilds the committed world: build B of docs/benchmarks.md (7 200 high-noise,
    object-weighted teacher steps, then 2 400 over the full range with object weight 3, batch 16)."""
    from dataclasses import asdict

    from benchmarks.world.build import BuildConfig, teacher_recipe

    committed = json.loads((WEIGHTS / "world.json").read_text())["config"]
    assert asdict(BuildConfig.preset("full")) == committed
    assert teacher_recipe(BuildConfig(), 7199) == {"stage": "teacher_phase", "step": 7199, "batch": 16,
                                                   "t_min": 850, "object_weight": 10.0}
    assert teacher_recipe(BuildConfig(), 7200) == {"stage": "teacher", "step": 0, "batch": 16, "t_min": 0,
                                                   "object_weight": 3.0}


def test_the_teacher_phase_comes_first_then_the_full_range_counts_its_own_steps():
    from benchmarks.world.build import BuildConfig, teacher_recipe

    cfg = BuildConfig().with_overrides(["teacher_phase_steps=3", "teacher_object_weight=2", "teacher_batch=32"])
    first, last, after = (teacher_recipe(cfg, step) for step in (0, 2, 3))
    assert first == {"stage": "teacher_phase", "step": 0, "batch": cfg.teacher_phase_batch,
                     "t_min": cfg.teacher_phase_t_min, "object_weight": cfg.teacher_phase_object_weight}
    assert last["stage"] == "teacher_phase" and last["step"] == 2
    assert after == {"stage": "teacher", "step": 0, "batch": 32, "t_min": 0, "object_weight": 2.0}


def test_probe_object_masks_cover_each_object_at_latent_resolution():
    from benchmarks.world.build import object_masks

    item = scene.scene(scene.seed_of("train", 3))
    mask = object_masks([item])[0, 0]
    union = item["visible"].sum(0) > 0.5
    assert mask.shape == (16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    cells = torch.from_numpy(union).reshape(16, 4, 16, 4).any(dim=3).any(dim=1)
    assert bool((mask[cells] == 1).all()) and 0 < int(mask.sum()) < 256


def test_probe_trains_a_teacher_variant_and_logs_what_it_learned(tmp_path):
    run_module("benchmarks.world.probe", ["--out", str(tmp_path), "--steps", "2", "--batch", "4",
                                          "--train-scenes", "16", "--eval-scenes", "4", "--eval-every", "1",
                                          "--object-weight", "6"], threads=2)
    rows = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["object_weight"] == 6.0
    for row in rows:
        assert 0.0 <= row["caption_agreement"] <= 1.0 and {"bg_kind", "shape", "colour"} <= set(row["by_attribute"])
        assert set(row["one_step_by_attribute"]) == {"500", "700", "850", "950"}
    proc = run_module("benchmarks.world.probe", ["--out", str(tmp_path), "--steps", "0"], check=False)
    assert proc.returncode == 2 and "--steps" in proc.stderr


def test_slot_encoder_gives_one_token_per_object_and_zeros_for_the_rest():
    from benchmarks.world.probe import SlotEncoder

    items = [scene.scene(scene.seed_of("train", i)) for i in range(12)]
    item = next(s for s in items if len(s["params"]["objects"]) < 3)
    slots = SlotEncoder(items)
    objects, present, background = slots.features(item["caption"])
    count = len(item["params"]["objects"])
    assert present.tolist() == [1.0] * count + [0.0] * (3 - count)
    assert objects.sum(1).tolist() == [4.0] * count + [0.0] * (3 - count)  # shape, colour, size, cell
    assert background.sum() == len(item["params"]["background"]["colours"]) + 1
    tokens = slots([item["caption"], ""])
    assert tokens.shape == (2, 4, models.TEXT_WIDTH)
    assert bool((tokens[0, 1 + count:] == 0).all()) and bool((tokens[1] == 0).all())
    assert bool((tokens[0, :1 + count].abs().sum(-1) > 0).all())


def test_teacher_loss_t_min_draws_only_high_noise_levels():
    from types import SimpleNamespace

    from benchmarks.world.build import teacher_loss

    seen = []

    def unet(x, t, encoder_hidden_states):
        seen.extend(t.tolist())
        return SimpleNamespace(sample=torch.zeros_like(x))

    abar = sampling.scaled_linear_alphas_cumprod().to(torch.float32)
    for t_min in (0, 900):
        seen.clear()
        loss = teacher_loss(unet, lambda texts: torch.zeros(len(texts), 2, 8), torch.zeros(64, 4, 4, 4), ["a"] * 64,
                            torch.Generator().manual_seed(0), 0.3, abar, t_min=t_min)
        assert torch.isfinite(loss) and min(seen) >= t_min and max(seen) <= 999
    assert min(seen) >= 900 and len(set(seen)) > 20


def test_probe_diagnostics_slots_coords_and_one_step_reading(tmp_path):
    from benchmarks.world.probe import CoordUNet

    net = CoordUNet()
    out = net(torch.zeros(2, 4, 16, 16), torch.tensor([999, 10]), encoder_hidden_states=torch.zeros(2, 4, 64))
    assert out.sample.shape == (2, 4, 16, 16) and net.grid[0, 0, 0, -1] == 1 and net.grid[0, 1, -1, 0] == 1
    run_module("benchmarks.world.probe", ["--out", str(tmp_path), "--steps", "2", "--batch", "4",
                                          "--train-scenes", "16", "--eval-scenes", "4", "--eval-every", "2",
                                          "--conditioning", "slots", "--coords", "--t-min", "900",
                                          "--eval", "one-step"], threads=2)
    (row,) = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert row["conditioning"] == "slots" and row["coords"] and row["t_min"] == 900
    assert "caption_agreement" not in row and set(row["one_step_by_attribute"]) == {"950"}
    proc = run_module("benchmarks.world.probe", ["--out", str(tmp_path), "--t-min", "1000"], check=False)
    assert proc.returncode == 2 and "--t-min" in proc.stderr


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


def test_committed_judge_meets_its_target_as_reported():
    assert json.loads((WEIGHTS / "world.json").read_text())["world"]["judge_accuracy"] >= 0.95


def test_committed_student_meets_its_target_as_reported():
    assert json.loads((WEIGHTS / "world.json").read_text())["world"]["caption_agreement"]["student_4"] >= 0.80


def test_judge_reads_held_out_scenes(world):
    items = [scene.scene(scene.seed_of("test", 500 + i)) for i in range(48)]
    images = torch.from_numpy(np.stack([s["image"] for s in items])).permute(0, 3, 1, 2)
    assert judge_accuracy(world.judge, items, images)["overall"] >= 0.95


@pytest.mark.parametrize("steps, floor", [(1, 0.75), (2, 0.75), (4, 0.80)])
def test_student_samples_pass_the_judge(world, steps, floor):
    """Issue 12's target: the student's 4-step samples follow >= 80 % of their captions' attributes; 1 and 2 steps
    must work too. Measured 2026-12-07 on these 32 captions: 0.860 / 0.875 / 0.846 at 1 / 2 / 4 steps (the world's
    report on 256: 0.820 / 0.851 / 0.854)."""
    items = [scene.scene(scene.seed_of("test", 700 + i)) for i in range(32)]
    cond = world.cond([s["caption"] for s in items])
    model = sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)
    latents = sampling.sample_student(model, (len(items), 4, 16, 16), 11, steps)
    agreement, _ = caption_agreement(world.judge, items, world.decode(latents))
    assert agreement >= floor


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
    """Measured 2026-12-07 on the committed world (build B), these 12 cases (docs/benchmarks.md, quality table for
    all 48): FewStep Blended Sampler 4 steps hole PSNR 23.67 dB, seam 2.877; core's blend 23.54 dB, seam 2.797 (on
    all 48: see the table). They tie. Pinned: PSNR within 1 dB of each other, our seam at most 1.0 above core's,
    with floors so that a broken blend (a sign error, a wrong σ scaling: 16–19 dB, as the 1-step and no-LoRA RAD
    rows show) fails."""
    ours, core = ci_rows["fewstep_4"], ci_rows["core_blend_4"]
    assert abs(ours["hole_psnr_db"] - core["hole_psnr_db"]) <= 1.0
    assert ours["seam_score"] - core["seam_score"] <= 1.0
    for m in (ours, core):
        assert m["hole_psnr_db"] >= 22.0 and m["seam_score"] <= 4.0


def test_prefill_blur_row_is_pinned(world):
    """Measured 2026-12-07 on these 12 cases (all 48: docs/benchmarks.md, 'What holds at this scale'): FewStep
    Crop's prefill blur before the 4-step blended sampler, hole PSNR 23.57 dB, seam 2.986 (fewstep_4 23.67 / 2.877).
    Pinned: the known pixels exact, within 1 dB of the blended sampler, and above the floor a broken fill would miss."""
    rows = {r.name: r for r in quality.all_rows()}
    results, _ = quality.run_rows(world, quality.materialise(CI_CASES), [rows["fewstep_4_prefill_blur"]])
    m = results[0]["metrics"]
    assert m["known_max_abs_after"] == 0.0
    assert abs(m["hole_psnr_db"] - 23.67) <= 1.0 and m["hole_psnr_db"] >= 22.0 and m["seam_score"] <= 4.0


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


def sample_with_nodes(world, model, positive, noise, batch, source, known_noise: str = "fresh"):
    """FewStep Schedule (4, trailing) + FewStep Blended Sampler + a cfg-1 guider through core's SamplerCustomAdvanced
    on the batch's latent and hole; returns model-space latents (what the benchmark rows return)."""
    import importlib

    import comfy.samplers

    from .conftest import PACK_NAME

    sampler_nodes = importlib.import_module(f"{PACK_NAME}.nodes.sampler")
    schedule_nodes = importlib.import_module(f"{PACK_NAME}.nodes.schedule")
    advanced = importlib.import_module("comfy_extras.nodes_custom_sampler").SamplerCustomAdvanced
    (sigmas,) = schedule_nodes.FewStepSchedule.execute(model=model, steps=4, spacing="trailing").result
    (sampler,) = sampler_nodes.FewStepBlendedSampler.execute(hole_init="source", known_noise=known_noise).result
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, positive)
    guider.set_cfg(1.0)
    latent = {"samples": source / world.scaling_factor, "noise_mask": batch.masks[:, 0]}
    out = (advanced.execute(noise, guider, sampler, sigmas, latent).result if hasattr(advanced, "execute")
           else advanced().sample(noise, guider, sampler, sigmas, latent))[0]
    return out["samples"] * world.scaling_factor


@requires_comfyui
def test_nodes_on_the_world_equal_the_benchmark_core_path(world, pack_nodes):
    import importlib

    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    noise_nodes = importlib.import_module(f"{PACK_NAME}.nodes.noise")
    composite_nodes = importlib.import_module(f"{PACK_NAME}.nodes.composite")

    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    batch = quality.materialise(CI_CASES[:6])
    source = world.encode(batch.images)
    positive = conditioning(world.cond(batch.prompts))
    rows = {r.name: r for r in quality.all_rows()}
    seed = quality.ROW_SEED
    for name, noise in (("fewstep_4", Noise_RandomNoise(seed)),
                        ("fewstep_4_reblend", noise_nodes.ReBlend.execute(noise=Noise_RandomNoise(seed),
                                                                          mask=batch.masks[:, 0],
                                                                          seed=seed + 1).result[0])):
        node_latents = sample_with_nodes(world, model, positive, noise, batch, source)
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


def committed_provenance(file: str, config_name: str) -> tuple[dict, dict]:
    """(the exported file's metadata, the world config it names) after checking the file is the trainer's own,
    unaltered (sha256 of its manifest entry), made from ``trainers/configs/<config_name>``."""
    import yaml

    from core.weights import load_weights

    _, metadata = load_weights(quality.TRAINED / file)
    entry = json.loads((quality.TRAINED / file).with_suffix(".manifest.json").read_text())
    assert entry["sha256"] == sha256_file(quality.TRAINED / file), "the file the trainer wrote, unaltered"
    assert entry["produced_by"]["config"] == f"trainers/configs/{config_name}"
    return metadata, yaml.safe_load((quality.REPO / "trainers" / "configs" / config_name).read_text())


@pytest.mark.parametrize("row", sorted(quality.RAD_LORAS))
def test_committed_rad_files_come_from_the_trainers_world_config(row):
    """Each committed RAD file is trainers.rad's own export from trainers/configs/rad_world.yaml on the world."""
    metadata, recipe = committed_provenance(quality.RAD_LORAS[row][0], "rad_world.yaml")
    config = metadata["config"]
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
    """Measured 2026-12-07 on these 12 cases (all 48: docs/benchmarks.md, 'RAD on the world'): hole PSNR without the
    LoRA 16.73 dB (seam 4.30), with the Perlin-trained LoRA 22.29 (3.15), with the pixel-trained LoRA 21.04 (3.55),
    FewStep Blended Sampler 23.67 (2.88). Pinned with margins: the LoRA is what makes RAD work (≥ 2 dB and ≥ 0.5
    seam better than without), it stays within 3 dB of the blended sampler, and Perlin training beats independent
    pixels (RAD's ablation) by ≥ 0.5 dB."""
    none, perlin, pixel = (rad_rows[n] for n in ("rad_4_no_lora", "rad_4_lora", "rad_4_lora_pixel"))
    assert perlin["hole_psnr_db"] >= none["hole_psnr_db"] + 2.0
    assert perlin["seam_score"] <= none["seam_score"] - 0.5
    assert perlin["hole_psnr_db"] >= rad_rows["fewstep_4"]["hole_psnr_db"] - 3.0
    assert perlin["hole_psnr_db"] >= pixel["hole_psnr_db"] + 0.5
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


INVERFILL_ABLATIONS = {"inverfill": {}, "inverfill_4_no_reg": {"lambda_reg": 0.0},
                       "inverfill_4_no_reblend": {"reblend": False}, "inverfill_4_no_adv": {"lambda_adv": 0.0}}


@pytest.mark.parametrize("row", sorted(quality.INVERFILL_NETS))
def test_committed_inverfill_files_come_from_the_trainers_world_config(row):
    """Each committed InverFill network is trainers.inverfill's own export from inverfill_world.yaml, the ablations
    differing from it only in the option they drop."""
    metadata, recipe = committed_provenance(quality.INVERFILL_NETS[row][0], "inverfill_world.yaml")
    config = metadata["config"]
    assert metadata["kind"] == "inverfill" and metadata["masking"] == "pixel"
    for key in ("base_model", "teacher_model", "max_steps", "batch_size", "lr", "resolution"):
        assert config[key] == recipe[key], key
    changed = INVERFILL_ABLATIONS[row]
    for key in ("lambda_reg", "lambda_adv", "reblend"):
        assert config[key] == changed.get(key, recipe.get(key, True)), key


@pytest.fixture(scope="module")
def inverfill_rows(world):
    rows = {r.name: r for r in quality.all_rows()}
    batch = quality.materialise(CI_CASES)
    results, _ = quality.run_rows(world, batch, [rows[n] for n in ("fewstep_4_known_start", "inverfill_4")])
    return {r["name"]: r["metrics"] for r in results}


def test_inverfill_effect_is_pinned(inverfill_rows):
    """Measured 2026-12-07 on these 12 cases (all 48: docs/benchmarks.md, 'InverFill on the world'): the same sampler
    from plain seeded noise 23.52 dB hole PSNR (seam 2.815), from InverFill's start 23.63 (2.834), paired
    +0.11 ± 0.40: a tie (on all 48, −0.13 ± 0.38 dB, seam −0.07 ± 0.03). On the first world, whose student followed
    44 % of its captions, InverFill was +1.55 dB ahead here. Pinned as it came out: within 1 dB of plain noise, the
    seam no more than 0.3 worse, the known region still exact, and both above the floor a broken start would miss."""
    plain, inverfill = inverfill_rows["fewstep_4_known_start"], inverfill_rows["inverfill_4"]
    assert abs(inverfill["hole_psnr_db"] - plain["hole_psnr_db"]) <= 1.0
    assert inverfill["seam_score"] <= plain["seam_score"] + 0.3
    assert inverfill["known_max_abs_after"] == 0.0
    assert min(inverfill["hole_psnr_db"], plain["hole_psnr_db"]) >= 22.0


def test_training_without_reblend_leaves_the_known_region_worse_after_reblending(world):
    """InverFill's Re-Blend ablation on the trainer's own held-out measure (known-region error of G(ẑ_T^blend)
    against z0, fresh noise in the hole as at inference), on 32 test-split captions: measured 2026-12-07 0.284
    (trained with Re-Blend) vs 1.890 (without; no L_reg 0.295, no critic 0.293). Pinned: ≥ 1.5× worse without."""
    from trainers.common.base_model import load_base_model
    from trainers.common.data import step_generator
    from trainers.inverfill import InverFillConfig, evaluate, make_batch

    cfg = InverFillConfig(base_model=str(WEIGHTS / "turbo"), resolution=64, batch_size=16, masking="pixel")
    base = load_base_model(cfg.base_model)
    prompts = [scene.scene(scene.seed_of("test", i))["caption"] for i in range(32)]
    batches = [make_batch(cfg, base, prompts, step_generator(0, i, 0, "eval"), "cpu", torch.float32)
               for i in range(2)]
    errors = {name: evaluate(cfg, base, quality.inversion_network(world, quality.TRAINED / file), batches,
                             torch.float32)
              for name, (file, _) in quality.INVERFILL_NETS.items() if name in ("inverfill", "inverfill_4_no_reblend")}
    assert errors["inverfill_4_no_reblend"] >= 1.5 * errors["inverfill"], errors


@requires_comfyui
def test_inverfill_through_the_nodes_equals_the_benchmark_row(world, pack_nodes):
    """InverFill Loader + Inverse Noise Init (folder_paths, the committed network) → SamplerCustomAdvanced with
    FewStep Blended Sampler (known_noise start) gives the benchmark row's latents (the network loaded into the
    student's diffusers copy, core's sampler)."""
    import importlib

    import folder_paths
    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    inverfill_nodes = importlib.import_module(f"{PACK_NAME}.nodes.inverfill")
    file, _ = quality.INVERFILL_NETS["inverfill"]
    folder_paths.add_model_folder_path("fewstep_inverfill", str(quality.TRAINED))
    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    batch = quality.materialise(CI_CASES[:4])
    source = world.encode(batch.images)
    positive = conditioning(world.cond(batch.prompts))
    (network,) = inverfill_nodes.InverFillLoader.execute(model=model, network_name=file).result
    masked = world.encode(quality.black_out(batch.images, batch.masks)) / world.scaling_factor
    (noise,) = inverfill_nodes.InverseNoiseInit.execute(model=model, inverfill=network, positive=positive,
                                                        mask=batch.masks[:, 0], seed=quality.ROW_SEED,
                                                        masked_latent={"samples": masked}).result
    node_latents = sample_with_nodes(world, model, positive, noise, batch, source, known_noise="start")
    rows = {r.name: r for r in quality.all_rows()}
    core_latents, _ = quality.row_images(world, batch, rows["inverfill_4"], quality.ROW_SEED)
    torch.testing.assert_close(node_latents, core_latents, atol=2e-3, rtol=1e-3)


TURBOFILL_ABLATIONS = {"turbofill_4": {}, "turbofill_4_no_bg": {"lambda_bg": 0.0},
                       "turbofill_4_no_fake_diff": {"lambda_fake_diff": 0.0},
                       "turbofill_4_no_real_diff": {"phases": ["fast", "disc"]},
                       "turbofill_4_teacher_only": {"phases": ["slow"]},
                       "turbofill_4_bg_regions": {"images_dir": "runs/world_regions_bg"}}


@pytest.mark.parametrize("row", sorted(quality.TURBOFILL_ADAPTERS))
def test_committed_turbofill_files_come_from_the_trainers_world_config(row):
    """Each committed TurboFill adapter is trainers.turbofill's own export from turbofill_world.yaml, the ablations
    differing from it only in the option they change."""
    metadata, recipe = committed_provenance(quality.TURBOFILL_ADAPTERS[row][0], "turbofill_world.yaml")
    config = metadata["config"]
    assert metadata["kind"] == "turbofill" and metadata["mask_polarity"] == "1=hole"
    defaults = {"lambda_fake_diff": 1.0, "phases": ["slow", "fast", "disc"]}
    changed = TURBOFILL_ABLATIONS[row]
    for key in ("base_model", "fast_unet", "images_dir", "max_steps", "batch_size", "lr", "d_lr", "lambda_bg",
                "lambda_fake_diff", "phases"):
        assert config[key] == changed.get(key, recipe.get(key, defaults.get(key))), key


@pytest.fixture(scope="module")
def turbofill_rows(world):
    rows = {r.name: r for r in quality.all_rows()}
    batch = quality.materialise(CI_CASES)
    results, _ = quality.run_rows(world, batch, [rows[n] for n in ("fewstep_4", "turbofill_4", "turbofill_4_no_bg")])
    return {r["name"]: r for r in results}


def test_turbofill_effect_is_pinned(turbofill_rows):
    """Measured 2026-12-07 on these 12 cases (all 48: docs/benchmarks.md, 'TurboFill on the world'): hole PSNR without
    the adapter 23.67 dB, with it 18.47 (background holes 38.65 → 24.81, half objects 19.17 → 18.08, whole objects
    13.18 → 12.52); trained without L_BG 18.03 (background holes 24.56). Pinned as it came out, with margins:
    TurboFill loses to the plain sampler overall (≥ 3 dB), most in background holes (≥ 5 dB, with or without L_BG),
    and it does not win the holes that cut an object either (on the first world it did: half objects +2.2 dB on these
    cases)."""
    plain, fill = (turbofill_rows[n] for n in ("fewstep_4", "turbofill_4"))
    assert fill["metrics"]["hole_psnr_db"] <= plain["metrics"]["hole_psnr_db"] - 3.0
    kinds = {n: quality.by_kind(r["per_case"]) for n, r in turbofill_rows.items()}
    for adapter in ("turbofill_4", "turbofill_4_no_bg"):
        assert kinds[adapter]["background"] <= kinds["fewstep_4"]["background"] - 5.0, adapter
    object_holes = {n: kinds[n]["part"] + kinds[n]["object"] for n in ("fewstep_4", "turbofill_4")}
    assert object_holes["turbofill_4"] <= object_holes["fewstep_4"]
    assert fill["metrics"]["known_max_abs_after"] == 0.0


class WorldVAE:
    """The world's VAE as the two calls ComfyUI's ControlNet makes of a VAE (hint encoding)."""

    def __init__(self, world):
        self.world = world

    def spacial_compression_encode(self) -> int:
        return 2 ** (len(self.world.vae.config.block_out_channels) - 1)

    def encode(self, pixels_bhwc):
        return self.world.encode(pixels_bhwc.movedim(-1, 1).float()) / self.world.scaling_factor


@requires_comfyui
def test_turbofill_through_the_nodes_equals_the_benchmark_row(world, pack_nodes):
    """TurboFill Loader + TurboFill Adapter Apply (folder_paths, the committed adapter, ComfyUI's ControlNet) →
    BasicGuider + FewStep Blended Sampler gives the benchmark row's latents (the adapter through walk_unet)."""
    import importlib

    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    import folder_paths
    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    turbofill_nodes = importlib.import_module(f"{PACK_NAME}.nodes.turbofill")
    file, _ = quality.TURBOFILL_ADAPTERS["turbofill_4"]
    folder_paths.add_model_folder_path("fewstep_turbofill", str(quality.TRAINED))
    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    batch = quality.materialise(CI_CASES[:4])
    source = world.encode(batch.images)
    positive = conditioning(world.cond(batch.prompts))
    (adapter,) = turbofill_nodes.TurboFillLoader.execute(model=model, adapter_name=file).result
    (positive, _) = turbofill_nodes.TurboFillAdapterApply.execute(
        positive=positive, negative=positive, adapter=adapter, vae=WorldVAE(world),
        image=batch.images.permute(0, 2, 3, 1), mask=batch.masks[:, 0]).result
    node_latents = sample_with_nodes(world, model, positive, Noise_RandomNoise(quality.ROW_SEED), batch, source)
    rows = {r.name: r for r in quality.all_rows()}
    core_latents, _ = quality.row_images(world, batch, rows["turbofill_4"], quality.ROW_SEED)
    torch.testing.assert_close(node_latents, core_latents, atol=2e-3, rtol=1e-3)


def test_paired_differences_and_hole_kinds_of_a_report():
    """docs/benchmarks.md's "+x ± se (n ahead)" figures: row a minus row b case by case; PSNR ahead = higher, seam =
    lower."""
    def row(name, values):
        return {"name": name, "per_case": [{"id": i, "hole_psnr_db": p, "seam_score": s}
                                           for i, (p, s) in values.items()]}

    report = {"rows": [row("a", {"background-1": (30.0, 1.0), "part-2": (20.0, 3.0), "object-3": (12.0, 2.0)}),
                       row("b", {"background-1": (29.0, 1.5), "part-2": (21.0, 2.0), "object-3": (10.0, 2.5)})]}
    psnr = quality.paired(report, "a", "b")
    assert psnr["mean"] == pytest.approx((1 - 1 + 2) / 3) and psnr["ahead"] == 2 and psnr["cases"] == 3
    assert psnr["se"] == pytest.approx(np.std([1, -1, 2], ddof=1) / np.sqrt(3))
    assert quality.paired(report, "a", "b", "seam_score")["ahead"] == 2
    assert quality.by_kind(report["rows"][0]["per_case"]) == {"background": 30.0, "part": 20.0, "object": 12.0}
    assert quality.case_kind("mine") == "other"


# ------------------------------------------------------------------ TurboEdit on the world (issue 15)

CI_EDIT_CASES = quality.default_edit_cases(12)
TURBOEDIT_STEPS = {file: steps for steps, file in edit_quality.TURBOEDIT_ENCODERS.items()}


@pytest.mark.parametrize("file", sorted(TURBOEDIT_STEPS))
def test_committed_turboedit_encoders_come_from_the_trainers_world_config(file):
    """Each committed TurboEdit encoder is trainers.turboedit's own export from turboedit_world.yaml; the 1-step one
    differs from it only in steps."""
    metadata, recipe = committed_provenance(file, "turboedit_world.yaml")
    config = metadata["config"]
    assert metadata["kind"] == "turboedit" and int(metadata["steps"]) == TURBOEDIT_STEPS[file] == config["steps"]
    assert metadata["timesteps"] == ",".join(map(str, quality.trailing_timesteps(config["steps"])))
    for key in ("base_model", "images_dir", "max_steps", "batch_size", "lr", "lambda_kl", "resolution"):
        assert config[key] == recipe[key], key


def edit_case_inputs(world, cases):
    batch = edit_quality.materialise_edits(cases)
    return batch, edit_quality.edit_inputs(world, batch, quality.ROW_SEED)


def test_edit_cases_change_one_attribute_and_their_tokens(world):
    """An edit case's target scene differs from its source in the edited attribute only: one caption word, the
    changed pixels inside the ground-truth region, one changed token."""
    batch, inputs = edit_case_inputs(world, CI_EDIT_CASES[:6])
    assert {c["attribute"] for c in batch.cases} == {"colour", "shape", "background"}
    for n, case in enumerate(batch.cases):
        src, tgt = batch.source_captions[n].split(), batch.target_captions[n].split()
        assert len(src) == len(tgt) and sum(a != b for a, b in zip(src, tgt)) == 1, case
        assert tgt[[a != b for a, b in zip(src, tgt)].index(True)] == case["to"]
        outside = (batch.changed[n] < 0.5).expand(3, -1, -1)
        assert torch.equal(batch.sources[n][outside], batch.targets[n][outside])
        assert len(inputs.tokens[n]) == 1
    with pytest.raises(ValueError, match="changes nothing"):
        edit_quality.materialise_edits([{**CI_EDIT_CASES[0], "to": scene.scene(CI_EDIT_CASES[0]["seed"])[
            "params"]["objects"][CI_EDIT_CASES[0]["object"]]["colour"]}])


@requires_comfyui
@pytest.mark.parametrize(("steps", "local_mask"), [(4, "gt_mask"), (4, "attention"), (1, "gt_mask")])
def test_turboedit_through_the_nodes_equals_the_benchmark_row(world, pack_nodes, steps, local_mask):
    """TurboEdit Encoder Loader (folder_paths, each committed encoder) + Iterative Inverter (encoder) + TurboEdit Edit
    Sampler (a MASK, or the changed tokens' attention) → SamplerCustomAdvanced with a cfg-1 guider on the target
    caption gives the benchmark row's edited latents (the encoder in diffusers, core's inversion and replay)."""
    import importlib

    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise

    import folder_paths
    from benchmarks.world.comfy_model import conditioning, load_world_model

    from .conftest import PACK_NAME

    turboedit_nodes = importlib.import_module(f"{PACK_NAME}.nodes.turboedit")
    advanced = importlib.import_module("comfy_extras.nodes_custom_sampler").SamplerCustomAdvanced
    folder_paths.add_model_folder_path("fewstep_turboedit", str(quality.TRAINED))
    model = load_world_model(WEIGHTS / "turbo" / "unet", world.scaling_factor)
    (encoder,) = turboedit_nodes.TurboEditEncoderLoader.execute(
        model=model, encoder_name=edit_quality.TURBOEDIT_ENCODERS[steps]).result
    row = {r.name: r for r in edit_quality.edit_rows()}[f"edit_encoder_{steps}_{local_mask}"]
    for case in CI_EDIT_CASES[:3]:  # one case at a time: the node takes one token list per batch
        batch, inputs = edit_case_inputs(world, [case])
        core_latents, core_recon = row.run(world, inputs, edit_quality.Meter())
        latent = {"samples": inputs.source / world.scaling_factor}
        inversion, recon, sigmas, latent = turboedit_nodes.IterativeInverter.execute(
            model=model, conditioning=conditioning(inputs.cond_source), steps=steps, method="encoder",
            seed=quality.ROW_SEED, latent=latent, encoder=encoder).result
        torch.testing.assert_close(recon["samples"] * world.scaling_factor, core_recon, atol=2e-3, rtol=1e-3)
        extra = {"mask": batch.changed[:, 0]} if local_mask == "gt_mask" else {"tokens": {"target": inputs.tokens[0]}}
        (sampler,) = turboedit_nodes.TurboEditSampler.execute(inversion=inversion, **extra).result
        guider = comfy.samplers.CFGGuider(model)
        target = conditioning(inputs.cond_target)
        guider.set_conds(target, target)
        guider.set_cfg(1.0)
        out = (advanced.execute(Noise_EmptyNoise(), guider, sampler, sigmas, latent).result
               if hasattr(advanced, "execute") else advanced().sample(Noise_EmptyNoise(), guider, sampler, sigmas,
                                                                       latent))[0]
        torch.testing.assert_close(out["samples"] * world.scaling_factor, core_latents, atol=2e-3, rtol=1e-3)


PIN_EDIT_ROWS = ("edit_source", "edit_fresh_4", "edit_exact_4_off", "edit_exact_4_gt_mask", "edit_encoder_4_off",
                 "edit_encoder_4_gt_mask", "edit_encoder_1_off")


@pytest.fixture(scope="module")
def edit_rows(world):
    rows = {r.name: r for r in edit_quality.edit_rows()}
    batch = edit_quality.materialise_edits(quality.default_edit_cases(24))
    results = edit_quality.run_edit_rows(world, batch, [rows[n] for n in PIN_EDIT_ROWS], quality.ROW_SEED)
    return {r["name"]: r for r in results}


def test_turboedit_effects_are_pinned(edit_rows):
    """Measured 2026-12-07 on these 24 edits, 8 each of colour, shape and background
    (all 48: docs/benchmarks.md, 'TurboEdit on the world'). Pinned as they came out, with margins:
    - NFE as the paper counts them: the encoder inverts in 8 passes (4 encoder + 4 student) and edits in 4; the
      exact inversion in 4 + 4; the 1-step encoder in 2 + 1;
    - reconstruction: the exact inversion gives the source back (25.48 dB, the VAE's own), the 4-step encoder
      0.52 dB below it (≤ 1.5 allowed), the 1-step encoder 2.16 ± 0.27 dB below the 4-step one (≥ 1 required);
    - editing: the encoder's inversion edits as often as the exact one (0.583 and 0.583; within 0.15 — on the first
      world the encoder was ahead), any inversion keeps the other attributes better than fresh noise (0.880 and
      0.843 vs 0.748; ≥ 0.05 required), and the ground-truth local mask raises PSNR outside the edit (exact 25.52 →
      26.51, encoder 25.66 → 26.54 dB on the object edits; ≥ 0.4 dB);
    - no 4-step inversion changes an object's shape (0 of 8; fresh noise 2 of 8): the inverted noises carry the
      silhouette."""
    m = {name: r["metrics"] for name, r in edit_rows.items()}
    nfe = {name: (r["nfe_invert"], r["nfe_edit"]) for name, r in edit_rows.items()}
    assert nfe["edit_encoder_4_off"] == (8, 4) and nfe["edit_exact_4_off"] == (4, 4)
    assert nfe["edit_encoder_1_off"] == (2, 1)
    assert m["edit_exact_4_off"]["recon_psnr_db"] == pytest.approx(m["edit_source"]["recon_psnr_db"], abs=0.01)
    assert m["edit_encoder_4_off"]["recon_psnr_db"] >= m["edit_exact_4_off"]["recon_psnr_db"] - 1.5
    assert m["edit_encoder_4_off"]["recon_psnr_db"] >= m["edit_encoder_1_off"]["recon_psnr_db"] + 1.0
    assert abs(m["edit_encoder_4_off"]["edit_success"] - m["edit_exact_4_off"]["edit_success"]) <= 0.15
    for name in ("edit_exact_4_off", "edit_encoder_4_off"):
        assert m[name]["others_kept"] >= m["edit_fresh_4"]["others_kept"] + 0.05, name
    for inversion in ("exact", "encoder"):
        off, gt = m[f"edit_{inversion}_4_off"], m[f"edit_{inversion}_4_gt_mask"]
        assert gt["psnr_outside_db"] >= off["psnr_outside_db"] + 0.4, inversion
    for name in ("edit_exact_4_off", "edit_exact_4_gt_mask", "edit_encoder_4_off", "edit_encoder_4_gt_mask"):
        assert m[name]["edit_success_by_attribute"]["shape"] <= 0.125, name
