"""SAM2 masks: the image predictor, one mask per prompt (union over a prompt's objects), batches, and the
automatic regions of SAM2AutomaticMaskGenerator. Masks are float {0, 1}, 1 = the object."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .build import import_sam2
from .prompts import Prompt, check_prompt, per_image

# best: highest predicted IoU of SAM's 3 candidates; largest: most pixels; union: all 3;
# single: SAM's one-mask mode (for unambiguous prompts: boxes, several clicks); 0/1/2: candidate index.
MULTIMASK = ("best", "largest", "union", "single", "0", "1", "2")
IMAGE_OVERSHOOT = 0.05  # float images may overshoot [0, 1] this much (then clamped); more is an error


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
