"""ComfyUI in-process for the benchmarks: one set-up (device, threads, no progress bars, the pack imported the
way ComfyUI imports it) and the tiny random SD1.5-architecture checkpoint they time on.

Benchmarks are run as scripts (``python benchmarks/<name>.py``), so this file is imported by its folder on
``sys.path``; the test helpers are loaded by path, since ComfyUI's own ``tests`` package shadows ours.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK = "fewstep_pack"


def load_module(name: str, path: Path):
    """Import the file ``path`` as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_support(name: str):
    """``tests/support/<name>.py`` imported as a module of a package of its own (``fewstep_test_support``), so its
    relative imports work while ComfyUI's own ``tests`` package is first on ``sys.path``."""
    package = "fewstep_test_support"
    if package not in sys.modules:
        folder = REPO / "tests" / "support"
        spec = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")


def host_arguments(parser: argparse.ArgumentParser, *, size: int, repeats: int) -> argparse.ArgumentParser:
    """The options every benchmark has: the ComfyUI checkout, the checkpoint, image size, repeats, threads, GPU."""
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR"), help="ComfyUI checkout (or COMFYUI_DIR)")
    parser.add_argument("--checkpoint", help="checkpoint to time (default: the ~100 M random SD1.5-shaped one)")
    parser.add_argument("--size", type=int, default=size, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs of each variant, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--gpu", action="store_true", help="ComfyUI's default device instead of --cpu")
    return parser


def start_from_arguments(parser: argparse.ArgumentParser, args):
    """:func:`start_comfyui` with the parsed :func:`host_arguments` (a usage error when no ComfyUI is given)."""
    if not args.comfyui:
        parser.error("set COMFYUI_DIR or pass --comfyui")
    return start_comfyui(args.comfyui, gpu=args.gpu, threads=args.threads)


def start_comfyui(comfyui: str, *, gpu: bool = False, threads: int = 2):
    """Make ComfyUI at ``comfyui`` importable, on the CPU unless ``gpu`` (its default device then), with
    ``threads`` torch threads and no progress bars; import the pack as ``fewstep_pack``. Returns the pack."""
    sys.path.insert(0, str(Path(comfyui).resolve()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = not gpu
    import torch

    torch.set_num_threads(threads)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return sys.modules.get(PACK) or load_module(PACK, REPO / "__init__.py")


def tiny_sd15(checkpoint: str | None = None, *, levels: int = 2, vae: bool = True):
    """(checkpoint path, (MODEL, CLIP, VAE)) through ComfyUI's loader: ``checkpoint``, or the random SD1.5-shaped
    one (2 levels, 320/640 channels, ~100 M UNet parameters) built by tests/support/build_tiny_checkpoint.py."""
    import comfy.sd

    if checkpoint is None:
        helpers = test_support("comfy_server")
        checkpoint = str(helpers.tiny_checkpoint(Path.home() / ".cache" / "fewstep-tests", levels=levels))
    model, clip, vae_model, _ = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=vae, output_clip=True)
    return checkpoint, (model, clip, vae_model)


def centre_box_mask(size: int):
    """(1,size,size) MASK with the centre box (half the side) as the hole, the benchmarks' inpaint mask."""
    import torch

    mask = torch.zeros(1, size, size)
    mask[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


def masked_scene(model, clip, size: int, steps: int):
    """What the sampler benchmarks time on: the prompt "a wooden bench" encoded, a seeded random latent of the
    ``size``² image with :func:`centre_box_mask` as its noise mask, and FewStep Schedule's trailing sigmas."""
    import torch

    from fewstep_pack.nodes.schedule import FewStepSchedule

    conds = clip.encode_from_tokens_scheduled(clip.tokenize("a wooden bench"))
    z = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    latent = {"samples": z, "noise_mask": centre_box_mask(size)}
    sigmas = FewStepSchedule.execute(model=model, steps=steps, spacing="trailing").result[0]
    return conds, latent, sigmas



def alternate(runs: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each of ``runs`` (name → zero-argument function): one warm-up each, then ``repeats`` rounds in
    alternating order (forwards, then backwards) to cancel order effects."""
    import time

    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()
    order = list(runs)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def guided_sample(model, conds, noise, sampler, sigmas, latent: dict):
    """SamplerCustomAdvanced with a cfg-1 CFGGuider on ``conds`` (one model call per step): the sampled samples."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    return SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)[0]["samples"]
