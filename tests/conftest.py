"""Shared test set-up: CPU threads, offline hubs, and the real ComfyUI host when there is one.

With ``COMFYUI_DIR`` pointing at a ComfyUI checkout whose requirements this interpreter has,
ComfyUI is imported in-process (``--cpu``) and every node test runs against its real V3 API.
Without it those tests are skipped with the reason; there is no stand-in for ComfyUI's API.
ComfyUI's folder is never written to: its base directory (models, input, output, temp, user)
is a temporary folder here, as the server tests do with ``--base-directory``.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from .support.processes import CHILD_THREADS, SAFETY_TIMEOUT_S, pinned_env

REPO = Path(__file__).resolve().parent.parent
PACK_NAME = "fewstep_pack"
COMFYUI_SKIP_REASON = ("needs COMFYUI_DIR: a ComfyUI checkout importable in this interpreter "
                       "(docs/development.md, 'Development')")

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
        base = tempfile.mkdtemp(prefix="fewstep-comfyui-base-")
        atexit.register(shutil.rmtree, base, True)
        comfy.cli_args.args.base_directory = base  # read by folder_paths at import: nothing lands in COMFYUI_DIR
        import comfy_api.latest  # noqa: F401  (fails here when the host cannot import)
        import folder_paths  # noqa: F401
    except ImportError as err:
        if not os.environ.get("COMFYUI_PYTHON"):
            raise pytest.UsageError(
                f"COMFYUI_DIR={comfy_dir} is set but ComfyUI does not import in this interpreter ({err}); install its "
                "requirements here (docs/development.md, 'Development') or set COMFYUI_PYTHON to ComfyUI's own "
                "interpreter") from err
        sys.path.remove(os.path.abspath(comfy_dir))
        for name in [m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "comfy_api", "folder_paths"))]:
            del sys.modules[name]
        return False
    return True


REAL_COMFYUI = _import_real_comfyui()


def pytest_report_header(config):
    """First lines of every run (CI's log too): which host the node tests run against."""
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if REAL_COMFYUI:
        import comfyui_version

        return [f"real host: ComfyUI {comfyui_version.__version__} at {comfy_dir} (in-process and server tests run)"]
    if comfy_dir:
        return [f"real host: server tests only, ComfyUI at {comfy_dir} run by COMFYUI_PYTHON"]
    return ["real host: none (COMFYUI_DIR unset): the node and server tests are skipped"]


requires_comfyui = pytest.mark.skipif(not REAL_COMFYUI, reason=COMFYUI_SKIP_REASON)


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
    """The pack's node modules: they import ComfyUI's V3 API, so they need the real host."""
    import importlib

    if not REAL_COMFYUI:
        pytest.skip(COMFYUI_SKIP_REASON)

    return importlib.import_module(f"{PACK_NAME}.nodes.extension")


def pack_module(name: str):
    """A module of the pack imported as ComfyUI imports it (``core.weights``, ``nodes.rad``, …)."""
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")


@pytest.fixture(scope="module")
def sd15(pack):
    """(MODEL, CLIP, VAE) of the random tiny SD1.5-architecture checkpoint, through ComfyUI's own loader (one
    load per test module, so no module sees another's patches)."""
    import comfy.sd

    from .support.comfy_server import tiny_checkpoint

    path = tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return model, clip, vae


@pytest.fixture(scope="module")
def conds(sd15):
    """CONDITIONING of "a bench" from the tiny checkpoint's CLIP."""
    clip = sd15[1]
    return clip.encode_from_tokens_scheduled(clip.tokenize("a bench"))


# ---------------------------------------------------------------- trainer fixtures (tiny bases, runs)
TRAINER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_module(module: str, args: list[str], *, launcher: list[str] | None = None,
               timeout: int = SAFETY_TIMEOUT_S, threads: int = CHILD_THREADS, check: bool = True):
    """Run ``python -m module args`` (or through ``launcher``) from the repo root with pinned thread pools
    (tests/support/processes.py); returns CompletedProcess."""
    import subprocess

    env = pinned_env(threads, **TRAINER_ENV)
    cmd = (launcher or [sys.executable, "-m"]) + [module, *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def fails_before_loading(monkeypatch, trainer: str, args: list[str], message: str) -> None:
    """``python -m trainers.<trainer> args`` (in-process) raises a ValueError matching ``message`` before it
    loads a model or sets up the run (docs/nodes.md: "before anything loads")."""
    import importlib

    module = importlib.import_module(f"trainers.{trainer}")

    def too_late(*a, **k):
        raise AssertionError(f"trainers.{trainer} loaded a model or set up the run before refusing {args}")

    import trainers.common.base_model as base_model
    import trainers.common.run as run

    for owner in (module, base_model, run):  # the trainer's own names and the ones trainers.common.loop imports
        for name in ("load_base_model", "make_accelerator"):
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, too_late)
    with pytest.raises(ValueError, match=message):
        module.main(list(args))


KILLER = REPO / "tests" / "support" / "kill_at_checkpoint.py"


def run_killed(module: str, args: list[str], *, step: int, when: str = "after", timeout: int = SAFETY_TIMEOUT_S):
    """Run a trainer that is SIGKILLed at its checkpoint ``step`` (``after`` it is complete or ``during`` its
    write; tests/support/kill_at_checkpoint.py): the same moment on every run, however busy the machine."""
    import signal

    proc = run_module(module, args, launcher=[sys.executable, str(KILLER), str(step), when], timeout=timeout,
                      check=False)
    assert proc.returncode == -signal.SIGKILL, (
        f"{module} was to be killed at checkpoint {step} ({when}) but exited with {proc.returncode}:\n"
        f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def accelerate_launcher(processes: int = 2) -> list[str]:
    """``accelerate launch --multi_gpu`` (torchrun + gloo on CPU) on a free rendezvous port, never the default
    29500 a parallel run may hold."""
    from .support.comfy_server import free_port

    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m"]


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory):
    """Random diffusers bases: 'custom' (~0.5 M UNet, fast), 'sdxl' (SDXL-style conditioning, tiny) and
    'sd15' (SD1.5 shapes: ComfyUI loads networks trained from it)."""
    from .support.tiny_base import build_tiny_base

    root = tmp_path_factory.mktemp("bases")
    return {"custom": build_tiny_base(root / "custom"), "sdxl": build_tiny_base(root / "sdxl", sdxl=True),
            "sd15": build_tiny_base(root / "sd15", sd15_shapes=True)}


def tiny_run(trainer: str, base: Path, tmp_path_factory, *data_args: str, manifest: bool = False,
             config: str | None = None) -> dict:
    """The documented tiny run of ``trainer`` (trainers/configs/<config, default trainer_tiny>.yaml) on ``base``: its
    folder, summary and exported weights (with ``manifest``, also a copy of the pack's manifest that the run adds its
    entry to)."""
    import json

    config = config or f"{trainer}_tiny"
    out = tmp_path_factory.mktemp(config)
    run = {"dir": out, "weights": out / f"{config}.safetensors"}
    args = ["--config", f"trainers/configs/{config}.yaml", f"--base_model={base}", f"--output_dir={out}",
            *data_args]
    if manifest:
        run["manifest"] = out / "weights_manifest.json"
        shutil.copy(REPO / "weights_manifest.json", run["manifest"])
        args.append(f"--manifest={run['manifest']}")
    proc = run_module(f"trainers.{trainer}", args)
    run["summary"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return run


@pytest.fixture(scope="session")
def tiny_inverfill_run(tiny_bases, tmp_path_factory):
    """The documented tiny InverFill run on the SD1.5-shaped base (prompts from its config)."""
    return tiny_run("inverfill", tiny_bases["sd15"], tmp_path_factory, manifest=True)


@pytest.fixture(scope="session")
def tiny_flux_base(tmp_path_factory):
    """A tiny random FLUX.1-schnell-layout diffusers folder (the architecture of tests/support/tiny_flow.py's)."""
    from .support.tiny_base import build_tiny_flux_base

    return build_tiny_flux_base(tmp_path_factory.mktemp("bases") / "flux")


@pytest.fixture(scope="session")
def tiny_flux_inverfill_run(tiny_flux_base, tmp_path_factory):
    """The documented tiny InverFill run on the FLUX base (trainers/configs/inverfill_flux_tiny.yaml)."""
    return tiny_run("inverfill", tiny_flux_base, tmp_path_factory, manifest=True, config="inverfill_flux_tiny")


@pytest.fixture(scope="session")
def tiny_sam2(tmp_path_factory):
    """The run's seeded random SAM2.1 tiny (tests/support/tiny_sam2.py): .safetensors, Meta .pt, state dict."""
    from .support.tiny_sam2 import shared_tiny_sam2

    return shared_tiny_sam2(tmp_path_factory)


@pytest.fixture(scope="session")
def sam2_model(tiny_sam2):
    """The tiny SAM2 loaded as the SAM2 Loader node loads it."""
    from core.segment import load_sam2

    return load_sam2(tiny_sam2.safetensors)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """scikit-image's bundled photos as a training folder (one with a .txt caption)."""
    from .support.fill_dataset import save_photos

    return save_photos(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def tiny_turboedit_run(tiny_bases, image_folder, tmp_path_factory):
    """The documented tiny TurboEdit run on the SD1.5-shaped base and the photos."""
    return tiny_run("turboedit", tiny_bases["sd15"], tmp_path_factory, f"--images_dir={image_folder}")


@pytest.fixture(scope="session")
def tiny_rad_run(tiny_bases, image_folder, tmp_path_factory):
    """The documented tiny RAD run on the SD1.5-shaped base and the photos."""
    return tiny_run("rad", tiny_bases["sd15"], tmp_path_factory, f"--images_dir={image_folder}")


@pytest.fixture(scope="session")
def fill_folder(image_folder, tmp_path_factory):
    """The photos as a TurboFill dataset: name.png + name_mask.png (random shapes) + name.txt."""
    from .support.fill_dataset import build_fill_dataset

    return build_fill_dataset(image_folder, tmp_path_factory.mktemp("fill"))


@pytest.fixture(scope="session")
def tiny_turbofill_run(tiny_bases, fill_folder, tmp_path_factory):
    """The documented tiny TurboFill run on the SD1.5-shaped base and the photos with hole masks."""
    return tiny_run("turbofill", tiny_bases["sd15"], tmp_path_factory, f"--images_dir={fill_folder}", manifest=True)
