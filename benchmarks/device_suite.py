"""The device check: every figure only a GPU can give, in one run that writes one JSON (sized for 8 min on an H100).

    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.device_suite --out device_suite.json
    COMFYUI_DIR=/path/to/ComfyUI python -m benchmarks.device_suite --smoke --out smoke.json   # CPU, tiny (CI)

Run from the repository root with ComfyUI's Python (the pack's requirements installed). Three stages:

1. **bases**: random weights of the real architectures. Single-file SDXL (SDXL-Turbo shapes) and SD2.1 (SD-Turbo
   shapes) checkpoints for ComfyUI (tests/support/build_tiny_checkpoint.py), an SDXL diffusers folder for the
   trainers (tests/support/tiny_base.py), a random SAM2.1 tiny at its real input size.
2. **training**: each trainer on its real-size config (trainers/configs/*sdxl*.yaml: bf16, gradient
   checkpointing, the config's resolution and micro-batch) for 3 optimizer steps of one micro-batch, no
   checkpoints: seconds per step (steps 2–3) and the CUDA peak of a step, from the trainer's own summary. Its
   exported weights are what stage 3 loads, so a trainer output that does not fit the nodes fails here.
3. **latency**: ComfyUI's own main.py on the device (UNet in fp16) runs each template's API graph
   (examples_workflows/) as shipped, with only the checkpoint, the image and the weight files swapped, plus core's
   KSampler + SetLatentNoiseMask on the same inputs: 4 steps, 1024² on SDXL, 512² on SD2.1. Each graph gets a
   warm-up, then ``--repeats`` runs, each on an image of its own, so every node from LoadImage on runs again while
   the loaders and the prompt stay cached, as when a user queues a new picture. Latency is ComfyUI's execution_start →
   execution_success; the ratios are each graph's median over the no-extra-weights template's and over core's.

``--smoke`` runs the same stages on the CPU at tiny sizes (the tests' SD1.5-shaped checkpoint and base, the tiny
trainer configs, 64² images); tests/test_device_suite.py runs it in CI so the suite cannot rot. Its timings mean
nothing. The figures of a GPU run go into docs/development.md ("Device figures").
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "examples_workflows"
NO_WEIGHTS = "fewstep_inpaint_no_extra_weights"
CORE = "core_ksampler_inpaint"  # core's KSampler + SetLatentNoiseMask, built from the no-weights template
EDIT_TEMPLATES = ("instant_edit_exact", "instant_edit_encoder")
# loader widgets that name a weight file: class_type → (input, the trainer or builder that makes the file)
CROP_PRESETS = ("512", "768", "1024")  # FewStep Crop's target_size presets (core.crop_stitch)
WEIGHT_WIDGETS = {"FewStepInverFillLoader": ("network_name", "inverfill"),
                  "FewStepTurboFillLoader": ("adapter_name", "turbofill"),
                  "FewStepTurboEditLoader": ("encoder_name", "turboedit"),
                  "FewStepRegionAwareSampler": ("rad_lora", "rad"),
                  "FewStepSAM2Loader": ("sam2_name", "sam2")}
MODEL_FOLDERS = {"inverfill": "extra_inverfill", "turbofill": "extra_turbofill", "turboedit": "extra_turboedit",
                 "rad": "extra_rad", "sam2": "extra_sam2"}  # tests/support/comfy_server.py's extra_model_paths
TRAINERS = ("inverfill", "rad", "turboedit", "turbofill")
TRAIN_OVERRIDES = ["--max_steps=3", "--grad_accum=1", "--checkpoint_every=0", "--eval_count=1", "--eval_every=1000",
                   "--preview_every=1000", "--preview_count=1", "--log_every=1"]
SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@dataclass(frozen=True)
class Case:
    """Graphs timed on one checkpoint at one image size."""

    arch: str  # checkpoint architecture (build_tiny_checkpoint.py --arch)
    size: int  # image side in pixels
    templates: tuple[str, ...]  # examples_workflows/<name>.api.json (and CORE)


@dataclass(frozen=True)
class Profile:
    """What one run of the suite builds, trains and times."""

    name: str
    gpu: bool
    checkpoints: dict[str, list[str]]  # arch → build_tiny_checkpoint.py arguments (sd15: the tests' cached one)
    train_arch: str  # the checkpoint architecture the trainers' base model has
    trainer_configs: dict[str, str]  # trainer → config file
    cases: tuple[Case, ...]
    repeats: int
    sam2_size: int  # SAM2's input side
    comfy_args: tuple[str, ...] = ()  # more of ComfyUI's main.py options
    train_overrides: tuple[str, ...] = ()  # after TRAIN_OVERRIDES (e.g. a lower resolution for a CPU check)


def all_templates() -> tuple[str, ...]:
    """The UNet templates: the FLUX ones need a FLUX checkpoint (3072 wide, T5-XXL), which this suite does not
    build yet; the real-host tests run them on a tiny FLUX."""
    names = (p.name[: -len(".api.json")] for p in TEMPLATES.glob("*.api.json"))
    return tuple(sorted(n for n in names if not n.startswith("flux_")))


FULL = Profile(
    name="full", gpu=True,
    checkpoints={"sdxl": ["--arch", "sdxl", "--dtype", "fp16", "--device", "cuda"],
                 "sd21": ["--arch", "sd21", "--dtype", "fp16", "--device", "cuda"]},
    train_arch="sdxl",
    trainer_configs={"inverfill": "trainers/configs/inverfill_sdxl_turbo.yaml",
                     "rad": "trainers/configs/rad_sdxl.yaml",
                     "turboedit": "trainers/configs/turboedit_sdxl_turbo.yaml",
                     "turbofill": "trainers/configs/turbofill_sdxl.yaml"},
    cases=(Case("sdxl", 1024, all_templates() + (CORE,)),
           Case("sd21", 512, (NO_WEIGHTS, "region_aware_inpaint", "instant_edit_exact", CORE))),
    repeats=3, sam2_size=1024, comfy_args=("--fp16-unet",))

SMOKE = Profile(
    name="smoke", gpu=False, checkpoints={"sd15": []}, train_arch="sd15",
    trainer_configs={name: f"trainers/configs/{name}_tiny.yaml" for name in TRAINERS},
    cases=(Case("sd15", 64, all_templates() + (CORE,)),), repeats=1, sam2_size=128)


def support(name: str):
    """tests/support/<name>.py (the suite runs from the repository root, so ``tests`` is ours)."""
    import importlib

    return importlib.import_module(f"tests.support.{name}")


@contextlib.contextmanager
def stage(record: dict, name: str):
    """Time the enclosed stage into ``record[name]`` (seconds) and say it on stderr."""
    print(f"[device_suite] {name} …", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    record[name] = round(time.perf_counter() - start, 2)
    print(f"[device_suite] {name}: {record[name]} s", file=sys.stderr, flush=True)


def child_env(profile: Profile, threads: int) -> dict:
    """Children's environment: offline, unbuffered, thread pools pinned (CPU) or sized to ``threads``."""
    return support("processes").pinned_env(threads, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                                           PYTHONUNBUFFERED="1")


# ---- stage 1: bases -------------------------------------------------------------------------------------------

def build_checkpoint(profile: Profile, arch: str, work: Path, comfyui: Path, env: dict) -> Path:
    """The random single-file checkpoint of ``arch`` (sd15: the tests' cached tiny one)."""
    if arch == "sd15":
        return support("comfy_server").tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")
    out = work / f"random_{arch}.safetensors"
    if not out.exists():
        builder = REPO / "tests" / "support" / "build_tiny_checkpoint.py"
        subprocess.run([sys.executable, str(builder), "--comfyui", str(comfyui), "--out", str(out),
                        *profile.checkpoints[arch]], check=True, cwd=str(comfyui), env=env)
    return out


def build_trainer_base(profile: Profile, work: Path) -> Path:
    """The diffusers folder the trainers start from, of the profile's training architecture."""
    folder = work / f"base_{profile.train_arch}"
    if (folder / "unet").is_dir():
        return folder
    tiny_base = support("tiny_base")
    if profile.train_arch == "sdxl":
        import torch

        built = tiny_base.build_sdxl_base(folder, device="cuda" if torch.cuda.is_available() else "cpu")
        torch.cuda.empty_cache()  # the trainers, not this process, need the memory now
        return built
    return tiny_base.build_tiny_base(folder, sd15_shapes=True)


def build_sam2(profile: Profile, work: Path) -> Path | None:
    """A random SAM2.1 tiny at the profile's input size, or None without the sam2 package."""
    import importlib.util

    if importlib.util.find_spec("sam2") is None:
        return None
    import torch

    from core.segment import build_model
    from core.weights import save_weights

    torch.manual_seed(0)
    model = build_model(SAM2_CONFIG, (f"++model.image_size={profile.sam2_size}",))
    return save_weights(work / f"sam2.1_tiny_random_{profile.sam2_size}.safetensors", model.state_dict(),
                        {"image_size": str(profile.sam2_size)})


def data_folders(work: Path) -> dict[str, Path]:
    """The trainers' data: photos (RAD, TurboEdit) and photos with hole masks (TurboFill)."""
    fill = support("fill_dataset")
    photos = fill.save_photos(work / "photos")
    return {"images": photos, "fill": fill.build_fill_dataset(photos, work / "fill")}


# ---- stage 2: training ----------------------------------------------------------------------------------------

def trainer_arguments(trainer: str, config: str, base: Path, data: dict[str, Path], out: Path) -> list[str]:
    args = ["--config", config, f"--base_model={base}", f"--output_dir={out}", *TRAIN_OVERRIDES]
    if trainer == "inverfill":
        args.append("--prompts_file=trainers/configs/prompts_example.txt")
    else:
        args.append(f"--images_dir={data['fill' if trainer == 'turbofill' else 'images']}")
    return args


def effective_config(trainer: str, args: list[str]):
    """The config ``python -m trainers.<trainer> args`` ran with (file and overrides, as its cli builds it)."""
    import importlib

    from trainers.common.config import RunConfig, build_config
    from trainers.common.run import split_config_arg

    module = importlib.import_module(f"trainers.{trainer}")
    (config_cls,) = {v for v in vars(module).values()
                     if isinstance(v, type) and issubclass(v, RunConfig) and v is not RunConfig}
    config_path, rest = split_config_arg(args)
    return build_config(config_cls, config_path or None, rest)


def train_step(trainer: str, profile: Profile, base: Path, data: dict[str, Path], work: Path, env: dict) -> dict:
    """One short run of ``trainer`` (3 steps); its summary's time and memory, and the exported weights."""
    config = profile.trainer_configs[trainer]
    out = work / "runs" / trainer
    args = [*trainer_arguments(trainer, config, base, data, out), *profile.train_overrides]
    cmd = [sys.executable, "-m", f"trainers.{trainer}", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = effective_config(trainer, args)
    return {"config": config, "resolution": cfg.resolution, "batch_size": cfg.batch_size,
            "mixed_precision": cfg.mixed_precision, "gradient_checkpointing": cfg.gradient_checkpointing,
            "seconds_per_step": summary["seconds_per_step"], "memory": summary["memory"],
            "step_peak_memory_gib": summary.get("step_peak_memory_gib"),
            "run_peak_memory_gib": summary["peak_memory_gib"], "weights": summary["weights"]}


# ---- stage 3: latency -----------------------------------------------------------------------------------------

def load_graph(name: str) -> dict:
    """A template's API graph, or core's inpaint built from the no-weights template's inputs and outputs."""
    if name != CORE:
        return json.loads((TEMPLATES / f"{name}.api.json").read_text())
    base = json.loads((TEMPLATES / f"{NO_WEIGHTS}.api.json").read_text())
    graph = {k: base[k] for k in ("1", "2", "3", "4", "5")}
    graph["6"] = {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": 42, "steps": 4, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform",
        "positive": ["3", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}}
    graph["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}
    graph["14"] = {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": CORE}}
    return graph


def prepare(graph: dict, image: str, size: int, checkpoint: str, weights: dict[str, str]) -> dict:
    """``graph`` with its checkpoint, its LoadImage and every weight widget pointed at this run's files (and a
    SAM2 click at the centre of the ``size``² image)."""
    out = json.loads(json.dumps(graph))
    for node in out.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "FewStepSAM2Mask":
            inputs["positive_points"] = json.dumps([{"x": size // 2, "y": size // 2}])
        if kind == "FewStepCrop":  # crops at the case's own size (SDXL 1024², SD2.1 512²), the smoke's as they are
            inputs["target_size"] = str(size) if str(size) in CROP_PRESETS else "keep"
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = checkpoint
        elif kind == "LoadImage":
            inputs["image"] = image
        elif kind in WEIGHT_WIDGETS:
            widget, maker = WEIGHT_WIDGETS[kind]
            inputs[widget] = weights.get(maker, "none")
    return out


def write_image(path: Path, size: int, seed: int, hole: bool) -> None:
    """A smooth random picture; with ``hole``, RGBA whose alpha is 0 over the centre box (LoadImage's mask)."""
    from PIL import Image

    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR))
    if not hole:
        Image.fromarray(rgb).save(path)
        return
    alpha = np.full((size, size), 255, np.uint8)
    alpha[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)


def execution_seconds(entry: dict) -> tuple[float, list[str]]:
    """(execution_start → execution_success in seconds, the cached node ids) from a /history entry."""
    stamps, cached = {}, []
    for kind, data in entry["status"]["messages"]:
        stamps[kind] = data.get("timestamp")
        if kind == "execution_cached":
            cached = list(data.get("nodes", []))
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0, cached


def time_case(server, case: Case, checkpoint: str, weights: dict[str, str], repeats: int) -> list[dict]:
    """Each graph of ``case``: a warm-up, then ``repeats`` runs, each on an image of its own. Graph after graph,
    not round-robin: ComfyUI keeps only the outputs the previous prompt used, and a user re-queues one graph."""
    from tests.support.comfy_server import error_message

    graphs = {name: load_graph(name) for name in case.templates}
    runs: dict[str, list[float]] = {name: [] for name in graphs}
    cached: dict[str, list[str]] = {}
    for i, (name, graph) in enumerate(graphs.items()):
        for round_ in range(repeats + 1):
            image = f"{case.arch}_{case.size}_{name}_{round_}.png"
            write_image(server.input_dir / image, case.size, seed=1000 * i + round_, hole=name not in EDIT_TEMPLATES)
            entry = server.run(prepare(graph, image, case.size, checkpoint, weights))
            if entry["status"]["status_str"] != "success":
                raise RuntimeError(f"{name} on {case.arch} at {case.size}²: {error_message(entry)}\n"
                                   f"{server.log_text()[-3000:]}")
            seconds, cached[name] = execution_seconds(entry)
            if round_:  # round 0 is the warm-up (loads the models)
                runs[name].append(seconds)
    base, core = (statistics.median(runs[n]) if n in runs else None for n in (NO_WEIGHTS, CORE))
    rows = []
    for name, values in runs.items():
        median = statistics.median(values)
        rows.append({"arch": case.arch, "size": case.size, "graph": name, "median_s": round(median, 4),
                     "runs_s": values, "cached_nodes": sorted(cached[name], key=int),
                     "ratio_vs_no_extra_weights": round(median / base, 3) if base else None,
                     "ratio_vs_core": round(median / core, 3) if core else None})
    return rows


def checkpoint_name(arch: str) -> str:
    return f"random_{arch}.safetensors"


# ---- the run --------------------------------------------------------------------------------------------------

def device_description(gpu: bool) -> str:
    import torch

    if gpu and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()})"


def comfyui_version(comfyui: Path) -> str:
    path = comfyui / "comfyui_version.py"
    text = path.read_text() if path.exists() else ""
    return text.split('"')[1] if '"' in text else "unknown"


def run_suite(profile: Profile, comfyui: Path, work: Path, threads: int) -> dict:
    """Build, train and time as ``profile`` says; returns the JSON-able result."""
    import torch

    work.mkdir(parents=True, exist_ok=True)
    env = child_env(profile, threads)
    stages: dict[str, float] = {}
    result = {"suite": "benchmarks/device_suite.py", "profile": profile.name, "device": device_description(profile.gpu),
              "torch": torch.__version__, "comfyui": comfyui_version(comfyui), "threads": threads,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stages_s": stages, "skipped": {}}
    with stage(stages, "bases"):
        checkpoints = {arch: build_checkpoint(profile, arch, work, comfyui, env) for arch in profile.checkpoints}
        base = build_trainer_base(profile, work)
        sam2 = build_sam2(profile, work)
        data = data_folders(work)
    training = {}
    for trainer in profile.trainer_configs:
        with stage(stages, f"train_{trainer}"):
            training[trainer] = train_step(trainer, profile, base, data, work, env)
    result["training"] = training
    if sam2 is None:
        result["skipped"]["sam2_click_inpaint"] = "needs sam2 (SAM2_BUILD_CUDA=0 pip install sam2==1.1.0)"
    latency = []
    server_cls = support("comfy_server").ComfyServer
    first = next(iter(checkpoints.values()))
    with stage(stages, "latency"), server_cls(work / "comfy", first, cpu=not profile.gpu,
                                               extra_args=profile.comfy_args) as server:
        for arch, path in checkpoints.items():
            server.install("checkpoints", path, checkpoint_name(arch), link=True)
        for case in profile.cases:
            weights = {}
            if case.arch == profile.train_arch:
                weights = {t: server.install(MODEL_FOLDERS[t], Path(training[t]["weights"]),
                                             f"{t}_{case.arch}.safetensors", link=True) for t in training}
            if sam2 is not None:
                weights["sam2"] = server.install(MODEL_FOLDERS["sam2"], sam2, sam2.name, link=True)
            templates = tuple(t for t in case.templates if t not in result["skipped"])
            latency += time_case(server, Case(case.arch, case.size, templates), checkpoint_name(case.arch), weights,
                                 profile.repeats)
    result["latency"] = latency
    result["total_s"] = round(sum(stages.values()), 2)
    return result


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` to ``path`` through a temporary file (never a half-written result)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSON to write")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the suite, times nothing")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR"), help="ComfyUI checkout (or COMFYUI_DIR)")
    parser.add_argument("--work", help="where the bases, runs and ComfyUI's files go (default: next to --out)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default: 3, smoke 1)")
    parser.add_argument("--threads", type=int, default=2 if "--smoke" in (argv or sys.argv) else 8,
                        help="CPU threads of every child")
    args = parser.parse_args(argv)
    if not args.comfyui:
        parser.error("set COMFYUI_DIR or pass --comfyui")
    profile = SMOKE if args.smoke else FULL
    if args.repeats is not None:
        profile = dataclasses.replace(profile, repeats=args.repeats)
    import torch

    if profile.gpu and not torch.cuda.is_available():
        parser.error("no CUDA device: the full suite needs a GPU (use --smoke on the CPU)")
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else out.parent / f"{out.stem}_work"
    result = run_suite(profile, Path(args.comfyui).resolve(), work, args.threads)
    write_json(out, result)
    print(json.dumps({"out": str(out), "total_s": result["total_s"], "stages_s": result["stages_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
