"""SAM2 (Ravi et al., 2024) models built offline: the config a state dict needs, and Hydra left as found.

``sam2`` (PyPI ``sam2==1.1.0``, Meta's code) and Hydra are imported lazily, inside functions, so the pack imports
without them. The model is built from the package's YAML with ``OmegaConf.load`` + ``hydra.utils.instantiate``,
which never touch Hydra's global state. ``import sam2`` itself calls ``initialize_config_module`` on first import;
:func:`hydra_left_as_found` undoes that (clears ``GlobalHydra``) when Hydra was not initialised before, and leaves
a host's own initialisation alone.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from pathlib import Path

import torch

SAM2_INSTALL = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
SIZE_BY_BLOCKS = {12: "t", 16: "s", 24: "b+", 48: "l"}  # Hiera stages summed, see the package's configs
SAM21_KEY = "no_obj_embed_spatial"  # only SAM 2.1 checkpoints have it
# What sam2.build_sam.build_sam2 adds for image use (apply_postprocessing=True).
POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)


class SAM2NotInstalled(ImportError):
    """The optional ``sam2`` package (or Hydra/OmegaConf) is missing."""


class SAM2CheckpointError(ValueError):
    """A checkpoint that is not a loadable SAM2 / SAM2.1 image model."""


def trunk_block_count(state_dict: dict) -> int:
    """Number of Hiera blocks in ``image_encoder.trunk`` (0 when the state dict has none)."""
    found = {int(m.group(1)) for m in map(TRUNK_BLOCK.match, state_dict) if m}
    return max(found) + 1 if found else 0


def detect_config(state_dict: dict, source: str = "state dict") -> str:
    """Package config name (``configs/sam2.1/sam2.1_hiera_t.yaml``) from the keys of a SAM2 state dict."""
    blocks = trunk_block_count(state_dict)
    if blocks == 0:
        raise SAM2CheckpointError(f"{source}: not a SAM2 checkpoint in Meta's layout (no image_encoder.trunk.blocks.* "
                                  "keys; SAM 1 files such as sam_vit_h.pth and transformers' Sam2Model files are not "
                                  "supported)")
    if blocks not in SIZE_BY_BLOCKS:
        raise SAM2CheckpointError(f"{source}: unknown SAM2 size ({blocks} Hiera blocks; known: "
                                  f"{sorted(SIZE_BY_BLOCKS)} = tiny, small, base+, large)")
    size = SIZE_BY_BLOCKS[blocks]
    version = "sam2.1" if SAM21_KEY in state_dict else "sam2"
    return f"configs/{version}/{version}_hiera_{size}.yaml"


def sam2_root() -> Path:
    """Folder of the installed ``sam2`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("sam2")
    except ValueError:  # sys.modules["sam2"] is None
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SAM2NotInstalled(f"SAM2 needs the sam2 package: {SAM2_INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


@contextlib.contextmanager
def hydra_left_as_found():
    """Undo the global Hydra initialisation done by ``import sam2`` unless Hydra was initialised before."""
    try:
        from hydra.core.global_hydra import GlobalHydra
    except ImportError as err:
        raise SAM2NotInstalled(f"SAM2 needs hydra-core (installed with sam2): {SAM2_INSTALL}") from err
    was_initialised = GlobalHydra.instance().is_initialized()
    try:
        yield
    finally:
        if not was_initialised and GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()


def import_sam2(module: str, name: str):
    """``from sam2.<module> import <name>`` with a clear error when sam2 is missing, Hydra left as found."""
    sam2_root()
    with hydra_left_as_found():
        try:
            return getattr(importlib.import_module(f"sam2.{module}"), name)
        except ImportError as err:
            raise SAM2NotInstalled(f"cannot import sam2.{module} ({err}); install: {SAM2_INSTALL}") from err


def model_config(config_name: str, overrides=()):
    """The OmegaConf config of a package YAML with ``[++|+]key=value`` overrides applied (no Hydra globals)."""
    path = sam2_root() / config_name
    try:
        from omegaconf import OmegaConf
    except ImportError as err:
        raise SAM2NotInstalled(f"SAM2 needs omegaconf (installed with sam2): {SAM2_INSTALL}") from err
    if not path.is_file():
        raise SAM2CheckpointError(f"config {config_name!r} is not in the installed sam2 package ({path})")
    cfg = OmegaConf.load(path)
    dotlist = [text.lstrip("+") for text in (*POSTPROCESSING, *overrides)]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    OmegaConf.resolve(cfg)
    return cfg


def build_model(config_name: str, overrides=(), device: str | torch.device = "cpu") -> torch.nn.Module:
    """A randomly initialised SAM2 image model (eval mode, float32) from a package config, offline."""
    cfg = model_config(config_name, overrides)
    with hydra_left_as_found():
        from hydra.utils import instantiate

        model = instantiate(cfg.model, _recursive_=True)
    return model.to(device=device, dtype=torch.float32).eval()
