"""Model folders under ``models/fewstep/<kind>/`` and weight loading through ComfyUI's managers."""
from __future__ import annotations

import contextlib
import logging
import os

from ..core.manifest import find_entry, load_manifest, mismatch_message, missing_weight_message, verify_listed_file
from ..core.weights import WeightFileError, load_weights

KINDS = ("inverfill", "turbofill", "rad", "turboedit")
EXTENSIONS = {".safetensors"}
SAM2_FOLDERS = ("sam2", "sams")  # "sams" is shared with other segment-anything packs
SAM2_EXTENSIONS = {".safetensors", ".pt", ".pth"}
log = logging.getLogger(__name__)


def folder_key(kind: str) -> str:
    """The ``folder_paths`` name of a kind, also the key to use in ``extra_model_paths.yaml``."""
    if kind not in KINDS:
        raise ValueError(f"unknown weight kind {kind!r}; expected one of {KINDS}")
    return f"fewstep_{kind}"


def register_model_folders() -> None:
    """Register ``models/fewstep/<kind>`` for every kind, keeping paths from extra_model_paths.yaml."""
    import folder_paths

    for kind in KINDS:
        key = folder_key(kind)
        default = os.path.join(folder_paths.models_dir, "fewstep", kind)
        paths = list(folder_paths.folder_names_and_paths.get(key, ([], set()))[0])
        if default not in paths:
            paths.insert(0, default)
        folder_paths.folder_names_and_paths[key] = (paths, set(EXTENSIONS))
        try:
            os.makedirs(default, exist_ok=True)
        except OSError as err:  # read-only installs still work with extra paths
            log.debug("FewStep: cannot create %s: %s", default, err)
    register_sam2_folders()


def register_sam2_folders() -> None:
    """Register ``models/sam2`` and ``models/sams`` for SAM2 checkpoints, keeping paths and extensions set elsewhere."""
    import folder_paths

    for key in SAM2_FOLDERS:
        default = os.path.join(folder_paths.models_dir, key)
        paths, extensions = folder_paths.folder_names_and_paths.get(key, ([], set()))
        paths = list(paths)
        if default not in paths:
            paths.insert(0, default)
        folder_paths.folder_names_and_paths[key] = (paths, set(extensions) | SAM2_EXTENSIONS)
    try:
        os.makedirs(os.path.join(folder_paths.models_dir, SAM2_FOLDERS[0]), exist_ok=True)
    except OSError as err:
        log.debug("FewStep: cannot create the sam2 folder: %s", err)


def sam2_files() -> list[str]:
    """SAM2 checkpoint names for the loader's Combo (empty where folder_paths is unavailable)."""
    try:
        import folder_paths
    except ImportError:
        return []
    names = []
    for key in SAM2_FOLDERS:
        try:
            names += [n for n in folder_paths.get_filename_list(key) if n not in names]
        except KeyError:
            continue
    return names


def sam2_missing_message(filename: str) -> str:
    """Where to put which SAM2 checkpoint."""
    import folder_paths

    folders = [p for key in SAM2_FOLDERS for p in folder_paths.folder_names_and_paths.get(key, ([], set()))[0]]
    which = f"{filename!r} was not found" if filename else "no SAM2 checkpoint found"
    return (f"SAM2 Loader: {which}. Put a SAM2 / SAM2.1 checkpoint (e.g. sam2.1_hiera_tiny.pt or a .safetensors "
            "conversion, from facebookresearch/sam2 or huggingface.co/facebook/sam2.1-hiera-tiny) into "
            f"{' or '.join(folders) or 'ComfyUI/models/sam2'}, then refresh the page.")


def sam2_path(filename: str) -> str:
    """Full path of a SAM2 checkpoint, or a FileNotFoundError saying where to put one."""
    import folder_paths

    for key in SAM2_FOLDERS:
        registered = key in folder_paths.folder_names_and_paths
        path = folder_paths.get_full_path(key, filename) if filename and registered else None
        if path and os.path.isfile(path):
            return path
    raise FileNotFoundError(sam2_missing_message(filename))


def weight_path(kind: str, filename: str) -> str:
    """Full path of a weight file, or a MissingWeightError naming the file, folders and trainer."""
    import folder_paths

    key = folder_key(kind)
    path = folder_paths.get_full_path(key, filename) if filename else None
    if path is None or not os.path.isfile(path):
        entry = find_entry(load_manifest(), filename, kind)
        raise FileNotFoundError(missing_weight_message(kind, filename, folder_paths.get_folder_paths(key), entry))
    return path


def check_against_manifest(kind: str, filename: str, path: str) -> None:
    """A file listed in weights_manifest.json must have its size and sha256 (hashed on first load only)."""
    entry = find_entry(load_manifest(), filename, kind)
    if entry is None:
        return
    if os.path.getsize(path) != entry["bytes"]:
        raise WeightFileError(mismatch_message(entry, path, os.path.getsize(path)))
    verify_listed_file(entry, path)


def load_weight_file(kind: str, filename: str) -> tuple[dict, dict]:
    """(state_dict on the CPU, decoded metadata) of a ``.safetensors`` weight, checked against the manifest."""
    path = weight_path(kind, filename)
    check_against_manifest(kind, filename, path)
    state_dict, metadata = load_weights(path, device="cpu")
    declared = metadata.get("kind")
    if declared is not None and declared != kind:
        raise WeightFileError(f"{filename}: is a '{declared}' weight, but this node needs a '{kind}' weight")
    return state_dict, metadata


@contextlib.contextmanager
def input_named(input_name: str):
    """Prefix a loader's error with the node input that chose the file ("network_name: x.safetensors: …"),
    so the message names both the file and the widget to change (docs/nodes.md, 'Bad input')."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        if message.startswith(f"{input_name}:"):
            raise
        try:
            named = type(err)(f"{input_name}: {message}")
        except TypeError:  # an exception type with another constructor
            named = ValueError(f"{input_name}: {message}")
        raise named from err


def network_dtype(parameter_count: int, stored_dtype=None):
    """The dtype ComfyUI would run a UNet-sized network in on the current device."""
    import comfy.model_management as mm

    return mm.unet_dtype(model_params=parameter_count, weight_dtype=stored_dtype)


def wrap_network(module, dtype=None):
    """A ModelPatcher so ComfyUI loads, offloads and frees the network like its own models.

    The module is cast to ``dtype`` (default: what ComfyUI picks for its size and stored dtype)
    and parked on the offload device. Call ``comfy.model_management.load_models_gpu([patcher])``
    before use, then run ``patcher.model``.
    """
    import comfy.model_management as mm
    import comfy.model_patcher

    if dtype is None:
        params = list(module.parameters())
        dtype = network_dtype(sum(p.numel() for p in params), params[0].dtype if params else None)
    module.to(device=mm.unet_offload_device(), dtype=dtype)
    return comfy.model_patcher.ModelPatcher(
        module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
    )
