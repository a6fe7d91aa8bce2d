"""benchmarks/device_suite.py --smoke: the device check runs end to end on the CPU at tiny sizes, so the GPU run
finds working code (the smoke's timings mean nothing; the figures come from a GPU: docs/development.md,
"Device figures")."""
from __future__ import annotations

import json

from benchmarks import device_suite

from .conftest import requires_comfyui, run_module


def test_the_full_profile_times_every_template_on_sdxl_and_trains_every_trainer_at_real_size():
    (sdxl, sd21) = device_suite.FULL.cases
    assert (sdxl.arch, sdxl.size, sd21.arch, sd21.size) == ("sdxl", 1024, "sd21", 512)
    assert set(sdxl.templates) == set(device_suite.all_templates()) | {device_suite.CORE}
    assert device_suite.FULL.train_arch == "sdxl" and set(device_suite.FULL.trainer_configs) == set(
        device_suite.TRAINERS)
    for config in device_suite.FULL.trainer_configs.values():
        text = (device_suite.REPO / config).read_text()
        assert "mixed_precision: bf16" in text and "gradient_checkpointing: true" in text, config


def test_core_graph_is_the_no_weights_templates_inputs_with_core_ksampler():
    core = device_suite.load_graph(device_suite.CORE)
    template = device_suite.load_graph(device_suite.NO_WEIGHTS)
    assert {k: core[k] for k in "12345"} == {k: template[k] for k in "12345"}, "same checkpoint, image, prompt, mask"
    sampler = core["6"]["inputs"]
    assert core["6"]["class_type"] == "KSampler" and sampler["steps"] == 4 and sampler["cfg"] == 1.0
    assert not any(node["class_type"].startswith("FewStep") for node in core.values())


def test_prepare_swaps_only_checkpoint_image_weights_and_the_click():
    graph = device_suite.load_graph("sam2_click_inpaint")
    ready = device_suite.prepare(graph, "x.png", 64, "ck.safetensors", {"sam2": "s.safetensors"})
    changed = {(k, name) for k, node in graph.items() for name, value in node["inputs"].items()
               if ready[k]["inputs"][name] != value}
    assert changed == {("1", "ckpt_name"), ("2", "image"), ("15", "sam2_name"), ("16", "positive_points"),
                       ("20", "target_size")}
    assert ready["20"]["inputs"]["target_size"] == "keep", "a 64² smoke image is cropped at its own size"
    assert device_suite.prepare(graph, "x.png", 1024, "ck", {})["20"]["inputs"]["target_size"] == "1024"
    assert json.loads(ready["16"]["inputs"]["positive_points"]) == [{"x": 32, "y": 32}]
    rad = device_suite.prepare(device_suite.load_graph("region_aware_inpaint"), "x.png", 64, "ck", {})
    assert rad["6"]["inputs"]["rad_lora"] == "none", "no trained LoRA for this architecture: the node's 'none'"


@requires_comfyui
def test_smoke_runs_every_stage_and_every_graph(tmp_path):
    out, work = tmp_path / "smoke.json", tmp_path / "work"
    run_module("benchmarks.device_suite", ["--smoke", "--out", str(out), "--work", str(work)])
    result = json.loads(out.read_text())
    assert result["profile"] == "smoke"
    assert set(result["stages_s"]) == {"bases", "latency", *(f"train_{t}" for t in device_suite.TRAINERS)}
    for trainer in device_suite.TRAINERS:
        row = result["training"][trainer]
        assert row["seconds_per_step"] > 0 and row["run_peak_memory_gib"] > 0 and row["memory"] == "rss"
        assert (work / "runs" / trainer / "metrics.json").exists()
        assert not (work / "runs" / trainer / "checkpoints").exists(), "checkpoint_every=0 writes no checkpoint"
    expected = (set(device_suite.all_templates()) | {device_suite.CORE}) - set(result["skipped"])
    rows = {row["graph"]: row for row in result["latency"]}
    assert set(rows) == expected and all(row["arch"] == "sd15" and row["size"] == 64 for row in rows.values())
    for name, row in rows.items():
        assert len(row["runs_s"]) == 1 and row["median_s"] > 0, name
        graph = device_suite.load_graph(name)
        loaders = {k for k, node in graph.items() if node["class_type"].endswith(("Loader", "LoaderSimple"))}
        assert loaders <= set(row["cached_nodes"]) and "2" not in row["cached_nodes"], (
            f"{name}: the loaders stay cached, everything from LoadImage on runs again")
    assert rows[device_suite.NO_WEIGHTS]["ratio_vs_no_extra_weights"] == 1.0
    assert rows[device_suite.CORE]["ratio_vs_core"] == 1.0
