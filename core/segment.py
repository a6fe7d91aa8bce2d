"""SAM2 (Ravi et al., 2024) masks from clicks and boxes: config detection, offline build, strict loading, prompts.

``sam2`` (PyPI ``sam2==1.1.0``, Meta's code) and Hydra are imported lazily, inside functions, so the
pack imports without them. Install: ``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0``.

Hydra: the model is built from the package's YAML with ``OmegaConf.load`` + ``hydra.utils.instantiate``,
which never touch Hydra's global state. ``import sam2`` itself calls ``initialize_config_module`` on
first import; :func:`hydra_left_as_found` undoes that (clears ``GlobalHydra``) when Hydra was not
initialised before, and leaves a host's own initialisation alone.

Prompts are pixels of the image: ``(x, y)`` clicks, ``(x0, y0, x1, y1)`` boxes. Each box is one
object and every click is added to each box's prompt (SAM's box + clicks refinement); without boxes
all clicks form one object. The mask is the union of the objects' masks, 1 = the object.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SAM2_INSTALL = "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")
TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
SIZE_BY_BLOCKS = {12: "t", 16: "s", 24: "b+", 48: "l"}  # Hiera stages summed, see the package's configs
SAM21_KEY = "no_obj_embed_spatial"  # only SAM 2.1 checkpoints have it
# What sam2.build_sam.build_sam2 adds for image use (apply_postprocessing=True).
POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
# best: highest predicted IoU of SAM's 3 candidates; largest: most pixels; union: all 3;
# single: SAM's one-mask mode (for unambiguous prompts: boxes, several clicks); 0/1/2: candidate index.
MULTIMASK = ("best", "largest", "union", "single", "0", "1", "2")
SHOWN_KEYS = 5
IMAGE_OVERSHOOT = 0.05  # float images may overshoot [0, 1] this much (then clamped); more is an error


class SAM2NotInstalled(ImportError):
    """The optional ``sam2`` package (or Hydra/OmegaConf) is missing."""


class SAM2CheckpointError(ValueError):
    """A checkpoint that is not a loadable SAM2 / SAM2.1 image model."""


# ---------------------------------------------------------------- config detection and build


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


# ---------------------------------------------------------------- checkpoints


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
        from .weights import load_weights

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


# ---------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt:
    """Clicks and boxes for one image, in pixels of that image."""

    positive_points: tuple = ()
    negative_points: tuple = ()
    boxes: tuple = ()


def _numbers(values, count: int, what: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise ValueError(f"{what}: expected {count} numbers, got {values!r}")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: expected {count} numbers, got {values!r}") from err
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what}: not finite: {values!r}")
    return out


def as_point(item, what: str) -> tuple[float, float]:
    """``{"x": .., "y": ..}`` (KJNodes Points Editor) or ``[x, y]`` → (x, y)."""
    if isinstance(item, dict):
        if "x" not in item or "y" not in item:
            raise ValueError(f"{what}: a point needs 'x' and 'y', got {item!r}")
        item = [item["x"], item["y"]]
    return _numbers(item, 2, what)


def check_prompt(prompt: Prompt, height: int, width: int, where: str = "") -> None:
    """ValueError naming the input for clicks outside the image, empty boxes or no prompt at all."""
    at = f" ({where})" if where else ""
    for name in ("positive_points", "negative_points"):
        for i, (x, y) in enumerate(getattr(prompt, name)):
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(f"{name}: point {i} ({x:g}, {y:g}) lies outside the {width}×{height} image{at}")
    for i, (x0, y0, x1, y1) in enumerate(prompt.boxes):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"boxes: box {i} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has zero area "
                             f"(need x0 < x1 and y0 < y1){at}")
        if min(x0, y0) < 0 or x1 > width or y1 > height:
            raise ValueError(f"boxes: box {i} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the "
                             f"{width}×{height} image{at}")
    if not prompt.positive_points and not prompt.boxes:
        raise ValueError(f"positive_points / boxes: no prompt{at}: give at least one positive point or a box")


def _depth(value) -> int:
    """Nesting depth of JSON lists (dicts count as a leaf level)."""
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 1 if isinstance(value, dict) else 0


def parse_point_sets(text: str | None, name: str) -> list[list[tuple[float, float]]]:
    """JSON clicks → point sets: ``[{"x","y"}, …]`` or ``[[x, y], …]`` is one set; a list of sets, one per image."""
    data = _load_json(text, name)
    if not data:
        return [[]]
    nested = _depth(data) == 3
    sets = data if nested else [data]
    return [[as_point(p, f"{name}: set {s} point {i}" if nested else f"{name}: point {i}")
             for i, p in enumerate(points)] for s, points in enumerate(sets)]


def parse_box_sets(text: str | None, name: str = "boxes") -> list[list[tuple[float, float, float, float]]]:
    """JSON boxes → box sets: ``[[x0, y0, x1, y1], …]`` is one set; a list of those, one per image."""
    data = _load_json(text, name)
    if not data:
        return [[]]
    if _depth(data) == 1:
        data = [data]  # a single box
    nested = _depth(data) == 3
    sets = data if nested else [data]
    return [[_numbers(b, 4, f"{name}: set {s} box {i}" if nested else f"{name}: box {i}")
             for i, b in enumerate(boxes)] for s, boxes in enumerate(sets)]


def _load_json(text: str | None, name: str):
    if text is None or not str(text).strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{name}: not valid JSON ({err.msg} at character {err.pos})") from err
    if not isinstance(data, list):
        raise ValueError(f"{name}: expected a JSON list, got {type(data).__name__}")
    return data


def prompt_from_dict(entry: dict, where: str = "prompt") -> Prompt:
    """``{"positive_points": [[x, y] | {"x","y"}, …], "negative_points": […], "boxes": [[x0, y0, x1, y1]]}``."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with positive_points / negative_points / boxes, got {entry!r}")
    unknown = sorted(set(entry) - set(Prompt.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected positive_points, negative_points, boxes")
    lists = {k: entry.get(k) or [] for k in Prompt.__dataclass_fields__}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise ValueError(f"{where}: {key} must be a list, got {value!r}")
    return Prompt(tuple(as_point(p, f"{where}: positive_points {i}") for i, p in enumerate(lists["positive_points"])),
                  tuple(as_point(p, f"{where}: negative_points {i}") for i, p in enumerate(lists["negative_points"])),
                  tuple(_numbers(b, 4, f"{where}: boxes {i}") for i, b in enumerate(lists["boxes"])))


def per_image(sets: list, batch: int, name: str) -> list:
    """Batch rule: one set applies to every image; otherwise exactly one set per image."""
    if len(sets) == 1:
        return sets * batch
    if len(sets) == batch:
        return list(sets)
    raise ValueError(f"{name}: {len(sets)} prompt sets for a batch of {batch} images "
                     "(give one set for all images, or exactly one per image)")


def prompts_from_json(positive: str | None, negative: str | None, boxes: str | None, batch: int) -> list[Prompt]:
    """One :class:`Prompt` per image from the node's JSON strings (batch rule of :func:`per_image`)."""
    pos = per_image(parse_point_sets(positive, "positive_points"), batch, "positive_points")
    neg = per_image(parse_point_sets(negative, "negative_points"), batch, "negative_points")
    box = per_image(parse_box_sets(boxes, "boxes"), batch, "boxes")
    return [Prompt(tuple(p), tuple(n), tuple(b)) for p, n, b in zip(pos, neg, box)]


# ---------------------------------------------------------------- prediction


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """Backbone feature map sizes SAM2ImagePredictor assumes (image_size / 4, / 8, / 16)."""
    return [(image_size // s, image_size // s) for s in (4, 8, 16)]


def fit_predictor(predictor, image_size: int):
    """Match a ``SAM2ImagePredictor`` to a model's image size, and run its resize + normalise eagerly.

    SAM2Transforms wraps ``Resize`` + ``Normalize`` in ``torch.jit.script``, which re-profiles for about
    a second per predictor and image size on a CPU; the eager modules compute the same tensor.
    """
    from torchvision.transforms import Normalize, Resize

    predictor._bb_feat_sizes = feature_sizes(image_size)
    transforms = predictor._transforms
    transforms.transforms = torch.nn.Sequential(Resize((image_size, image_size)),
                                                Normalize(transforms.mean, transforms.std))
    return predictor


def image_predictor(model: torch.nn.Module):
    """A ``SAM2ImagePredictor`` for ``model`` (any image size)."""
    predictor_cls = import_sam2("sam2_image_predictor", "SAM2ImagePredictor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script in SAM2Transforms
        predictor = predictor_cls(model)
    return fit_predictor(predictor, int(model.image_size))


def as_rgb_array(image, name: str = "image") -> np.ndarray:
    """(H,W,3) or (B,H,W,3) float [0,1] / uint8 tensor or array → float32 numpy in [0, 1] (alpha dropped)."""
    array = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    if array.ndim not in (3, 4) or array.shape[-1] not in (3, 4):
        raise ValueError(f"{name}: expected (H,W,3) or (B,H,W,3) RGB, got shape {tuple(array.shape)}")
    if min(array.shape[-3:-1]) == 0:
        raise ValueError(f"{name}: empty image of shape {tuple(array.shape)}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN/inf values")
    if array.min() < -IMAGE_OVERSHOOT or array.max() > 1 + IMAGE_OVERSHOOT:
        raise ValueError(f"{name}: float values must lie in [0, 1], got [{array.min():g}, {array.max():g}]")
    return np.clip(array, 0.0, 1.0)  # slight overshoot from upstream arithmetic


def select_mask(masks: torch.Tensor, scores: torch.Tensor, multimask: str) -> torch.Tensor:
    """One (H,W) bool mask from SAM's candidates (C,H,W) with predicted IoUs (C,)."""
    if multimask in ("best", "single"):
        return masks[int(scores.argmax())]
    if multimask == "largest":
        return masks[int(masks.flatten(1).sum(1).argmax())]
    if multimask == "union":
        return masks.any(0)
    index = int(multimask)
    if index >= masks.shape[0]:
        raise ValueError(f"multimask: candidate {index} does not exist (SAM returned {masks.shape[0]})")
    return masks[index]


def predict_mask(predictor, prompt: Prompt, multimask: str = "best") -> torch.Tensor:
    """(H,W) float {0,1} mask for the image set on ``predictor``: union over objects (one per box)."""
    points = [*prompt.positive_points, *prompt.negative_points]
    labels = [1] * len(prompt.positive_points) + [0] * len(prompt.negative_points)
    coords = np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None
    label_array = np.asarray(labels, dtype=np.int32) if points else None
    boxes = np.asarray(prompt.boxes, dtype=np.float32).reshape(-1, 4) if prompt.boxes else None
    if boxes is not None and coords is not None:
        coords = np.repeat(coords[None], len(boxes), 0)  # every click joins every box's prompt
        label_array = np.repeat(label_array[None], len(boxes), 0)
    masks, scores, _ = predictor.predict(point_coords=coords, point_labels=label_array, box=boxes,
                                         multimask_output=multimask != "single")
    masks, scores = torch.from_numpy(masks) > 0.5, torch.from_numpy(scores)
    if masks.ndim == 3:  # one object: (C,H,W) → (1,C,H,W)
        masks, scores = masks[None], scores[None]
    objects = [select_mask(m, s, multimask) for m, s in zip(masks, scores)]
    return torch.stack(objects).any(0).to(torch.float32)


def check_multimask(multimask: str) -> None:
    if multimask not in MULTIMASK:
        raise ValueError(f"multimask: {multimask!r} is not one of {MULTIMASK}")


@torch.no_grad()
def segment(model: torch.nn.Module, images, prompts, multimask: str = "best", callback=None) -> torch.Tensor:
    """SAM2 masks for (H,W,3) → (H,W) or (B,H,W,3) → (B,H,W); float32 {0,1} on the CPU, 1 = object.

    ``prompts``: one :class:`Prompt` for every image, or a list with exactly one per image.
    ``callback(done, total)`` runs after each image.
    """
    check_multimask(multimask)
    array = as_rgb_array(images)
    single = array.ndim == 3
    batch = array[None] if single else array
    prompt_list = per_image(list(prompts) if isinstance(prompts, (list, tuple)) else [prompts], len(batch), "prompts")
    height, width = batch.shape[1:3]
    for i, prompt in enumerate(prompt_list):
        check_prompt(prompt, height, width, f"image {i}" if len(batch) > 1 else "")
    predictor = image_predictor(model)
    out = []
    for image, prompt in zip(batch, prompt_list):
        predictor.set_image(np.ascontiguousarray(image))
        out.append(predict_mask(predictor, prompt, multimask))
        if callback is not None:
            callback(len(out), len(batch))
    predictor.reset_predictor()
    masks = torch.stack(out)
    return masks[0] if single else masks


@torch.no_grad()
def segment_regions(model: torch.nn.Module, image, prompts: list[Prompt],
                    multimask: str = "best") -> list[torch.Tensor]:
    """One (H,W) float {0,1} mask per prompt on a single (H,W,3) image (one encoder pass for all)."""
    check_multimask(multimask)
    array = as_rgb_array(image)
    if array.ndim != 3:
        raise ValueError(f"image: expected one (H,W,3) image, got shape {array.shape}")
    for i, prompt in enumerate(prompts):
        check_prompt(prompt, array.shape[0], array.shape[1], f"region {i}")
    predictor = image_predictor(model)
    predictor.set_image(np.ascontiguousarray(array))
    masks = [predict_mask(predictor, prompt, multimask) for prompt in prompts]
    predictor.reset_predictor()
    return masks


@dataclass
class Region:
    """One automatic region: a (H,W) float {0,1} mask with SAM's scores."""

    mask: torch.Tensor
    area: float  # fraction of the image
    score: float  # predicted IoU


@torch.no_grad()
def automatic_regions(model: torch.nn.Module, image, *, max_regions: int = 3, min_area: float = 0.02,
                      max_area: float = 0.6, rank_by: str = "score", points_per_side: int = 16,
                      pred_iou_thresh: float = 0.8, stability_score_thresh: float = 0.95) -> list[Region]:
    """Top ``max_regions`` masks of SAM2AutomaticMaskGenerator whose area fraction lies in [min_area, max_area]."""
    if rank_by not in ("score", "area"):
        raise ValueError(f"rank_by: {rank_by!r} is not 'score' or 'area'")
    if not 0 <= min_area <= max_area <= 1:
        raise ValueError(f"min_area / max_area: need 0 <= min_area <= max_area <= 1, got {min_area}, {max_area}")
    array = as_rgb_array(image)
    if array.ndim != 3:
        raise ValueError(f"image: automatic regions take one (H,W,3) image, got {array.shape}")
    generator_cls = import_sam2("automatic_mask_generator", "SAM2AutomaticMaskGenerator")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        generator = generator_cls(model, points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                                  stability_score_thresh=stability_score_thresh)
    fit_predictor(generator.predictor, int(model.image_size))
    records = generator.generate(np.ascontiguousarray(array))
    return top_regions(records, array.shape[0] * array.shape[1], max_regions=max_regions, min_area=min_area,
                       max_area=max_area, rank_by=rank_by)


def top_regions(records: list[dict], pixels: int, *, max_regions: int, min_area: float, max_area: float,
                rank_by: str = "score") -> list[Region]:
    """SAM2AutomaticMaskGenerator records (``segmentation``, ``area``, ``predicted_iou``) → the kept regions."""
    regions = [Region(torch.from_numpy(np.asarray(r["segmentation"])).to(torch.float32), r["area"] / pixels,
                      float(r["predicted_iou"])) for r in records]
    regions = [r for r in regions if min_area <= r.area <= max_area]
    regions.sort(key=lambda r: (r.score, r.area) if rank_by == "score" else (r.area, r.score), reverse=True)
    return regions[:max_regions]
