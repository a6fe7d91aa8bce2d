"""SAM2 checkpoints: Meta's ``.pt`` (tensors only, never objects) or ``.safetensors``, loaded strictly into the
model their keys call for."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .build import SAM2CheckpointError, build_model, detect_config, sam2_root

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
SHOWN_KEYS = 5


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, metadata): flat ``.safetensors``, or Meta's ``.pt``/``.pth`` ``{"model": state_dict}``.

    ``.pt`` files are read with ``torch.load(weights_only=True)``: plain tensors only, never objects.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise SAM2CheckpointError(f"{path.name}: expected one of {CHECKPOINT_SUFFIXES}")
    if not path.is_file():
        raise SAM2CheckpointError(f"{path}: file not found")
    if suffix == ".safetensors":
        from ..weights import load_weights

        return load_weights(path, device="cpu")
    if path.stat().st_size == 0:
        raise SAM2CheckpointError(f"{path.name}: the file is empty (0 bytes), an unfinished download or copy; "
                                  "download it again")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses anything beyond tensors and plain containers
        raise SAM2CheckpointError(f"{path.name}: holds Python objects besides tensors, which are never unpickled "
                                  f"(weights_only); convert it to .safetensors ({_first_line(err)})") from err
    except Exception as err:  # zip/EOF errors: a truncated or damaged file
        raise SAM2CheckpointError(f"{path.name}: damaged or not a PyTorch checkpoint ({_first_line(err)}); "
                                  "download it again") from err
    state_dict = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise SAM2CheckpointError(f"{path.name}: expected a state dict or Meta's {{'model': state_dict}}")
    return state_dict, {}


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def load_state_dict_strictly(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file and a few offending keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape))
    problems = [f"{len(keys)} {what} key(s): {', '.join(keys[:SHOWN_KEYS])}{' …' if len(keys) > SHOWN_KEYS else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong)) if keys]
    if problems:
        raise SAM2CheckpointError(f"{source}: does not match the detected SAM2 model; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def checkpoint_overrides(metadata: dict) -> list[str]:
    """Config overrides recorded in a ``.safetensors`` header: ``image_size`` (Meta's models are 1024)."""
    size = metadata.get("image_size")
    return [f"++model.image_size={int(size)}"] if size not in (None, "") else []


def load_sam2(path: str | Path, overrides=(), device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the SAM2 model a checkpoint was made for and load it strictly (float32, eval)."""
    sam2_root()  # fail before reading a large file
    state_dict, metadata = read_checkpoint(path)
    name = Path(path).name
    config = detect_config(state_dict, name)
    model = build_model(config, [*checkpoint_overrides(metadata), *overrides], device="cpu")
    load_state_dict_strictly(model, state_dict, name)
    model.sam2_config = config
    return model.to(device)
