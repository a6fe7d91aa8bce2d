"""Shared test set-up: CPU threads, offline hubs, and ComfyUI (real checkout or schema stand-in).

With ``COMFYUI_DIR`` pointing at a ComfyUI checkout whose requirements this interpreter has,
ComfyUI is imported in-process (``--cpu``) and node tests run against it. Otherwise the schema
stand-in in ``tests/stubs`` is used and tests that need the real host are skipped.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
PACK_NAME = "fewstep_pack"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _import_real_comfyui() -> bool:
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        return False
    sys.path.insert(0, os.path.abspath(comfy_dir))
    try:
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
        import comfy_api.latest  # noqa: F401  (fails here when the host cannot import)
    except ImportError:
        sys.path.remove(os.path.abspath(comfy_dir))
        for name in [m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "comfy_api"))]:
            del sys.modules[name]
        return False
    return True


REAL_COMFYUI = _import_real_comfyui()
if not REAL_COMFYUI:
    sys.path.insert(0, str(REPO / "tests" / "stubs"))

requires_comfyui = pytest.mark.skipif(
    not REAL_COMFYUI, reason="needs COMFYUI_DIR with ComfyUI importable in this interpreter"
)


def load_pack(name: str = PACK_NAME):
    """Import the repo root as a package under ``name``, the way ComfyUI's loader does."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def pack_nodes(pack):
    import importlib

    return importlib.import_module(f"{PACK_NAME}.nodes.extension")


# ---------------------------------------------------------------- trainer fixtures (tiny bases, runs)
TRAINER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_module(module: str, args: list[str], *, launcher: list[str] | None = None, timeout: int = 900,
               threads: int = 2, check: bool = True):
    """Run ``python -m module args`` (or through ``launcher``) from the repo root; returns CompletedProcess."""
    import subprocess

    env = {**os.environ, **TRAINER_ENV, "OMP_NUM_THREADS": str(threads)}
    cmd = (launcher or [sys.executable, "-m"]) + [module, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory):
    """Random diffusers bases: 'custom' (~0.5 M UNet, fast), 'sdxl' (SDXL-style conditioning, tiny) and
    'sd15' (SD1.5 shapes: ComfyUI loads networks trained from it)."""
    from .support.tiny_base import build_tiny_base

    root = tmp_path_factory.mktemp("bases")
    return {"custom": build_tiny_base(root / "custom"), "sdxl": build_tiny_base(root / "sdxl", sdxl=True),
            "sd15": build_tiny_base(root / "sd15", sd15_shapes=True)}


@pytest.fixture(scope="session")
def tiny_inverfill_run(tiny_bases, tmp_path_factory):
    """The documented tiny InverFill run (trainers/configs/inverfill_tiny.yaml) on the SD1.5-shaped base."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("inverfill_tiny")
    manifest = out / "weights_manifest.json"
    shutil.copy(REPO / "weights_manifest.json", manifest)
    proc = run_module("trainers.inverfill", ["--config", "trainers/configs/inverfill_tiny.yaml",
                                             f"--base_model={tiny_bases['sd15']}", f"--output_dir={out}",
                                             f"--manifest={manifest}"])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"dir": out, "summary": summary, "manifest": manifest, "weights": out / "inverfill_tiny.safetensors"}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """scikit-image's bundled photos as a training folder (one with a .txt caption)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field", "retina",
                 "immunohistochemistry", "colorwheel", "page", "horse"):
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) / img.max() * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{name}.png")
    (folder / "astronaut.txt").write_text("a photo of an astronaut in a white suit")
    return folder


@pytest.fixture(scope="session")
def tiny_turboedit_run(tiny_bases, image_folder, tmp_path_factory):
    """The documented tiny TurboEdit run (trainers/configs/turboedit_tiny.yaml) on the SD1.5-shaped base."""
    import json

    out = tmp_path_factory.mktemp("turboedit_tiny")
    proc = run_module("trainers.turboedit", ["--config", "trainers/configs/turboedit_tiny.yaml",
                                             f"--base_model={tiny_bases['sd15']}", f"--images_dir={image_folder}",
                                             f"--output_dir={out}"])
    return {"dir": out, "summary": json.loads(proc.stdout.strip().splitlines()[-1]),
            "weights": out / "turboedit_tiny.safetensors"}


@pytest.fixture(scope="session")
def tiny_rad_run(tiny_bases, image_folder, tmp_path_factory):
    """The documented tiny RAD run (trainers/configs/rad_tiny.yaml) on the SD1.5-shaped base."""
    import json

    out = tmp_path_factory.mktemp("rad_tiny")
    proc = run_module("trainers.rad", ["--config", "trainers/configs/rad_tiny.yaml", f"--base_model={tiny_bases['sd15']}",
                                       f"--images_dir={image_folder}", f"--output_dir={out}"])
    return {"dir": out, "summary": json.loads(proc.stdout.strip().splitlines()[-1]), "weights": out / "rad_tiny.safetensors"}


@pytest.fixture(scope="session")
def fill_folder(image_folder, tmp_path_factory):
    """The photos as a TurboFill dataset: name.png + name_mask.png (random shapes) + name.txt."""
    from .support.fill_dataset import build_fill_dataset

    return build_fill_dataset(image_folder, tmp_path_factory.mktemp("fill"))


@pytest.fixture(scope="session")
def tiny_turbofill_run(tiny_bases, fill_folder, tmp_path_factory):
    """The documented tiny TurboFill run (trainers/configs/turbofill_tiny.yaml) on the SD1.5-shaped base."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("turbofill_tiny")
    manifest = out / "weights_manifest.json"
    shutil.copy(REPO / "weights_manifest.json", manifest)
    proc = run_module("trainers.turbofill", ["--config", "trainers/configs/turbofill_tiny.yaml",
                                             f"--base_model={tiny_bases['sd15']}", f"--images_dir={fill_folder}",
                                             f"--output_dir={out}", f"--manifest={manifest}"])
    return {"dir": out, "summary": json.loads(proc.stdout.strip().splitlines()[-1]), "manifest": manifest,
            "weights": out / "turbofill_tiny.safetensors"}
