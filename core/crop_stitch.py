"""Crop around the mask to the model's own size, and stitch the result back exactly (big photos).

A crop is a box in the original's pixels (it may reach past the image's sides, where the image is padded
and the padding counted as known), resampled to one output size shared by the whole batch. Stitching
resamples each generated crop back to its box and composites it with :func:`core.composite.exact_composite`
at the original resolution, so wherever the used mask is 0 the output is the original bit for bit.
Resampling: down with antialiased bilinear, up with bicubic (clamped to [0, 1]); masks bilinear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .composite import exact_composite
from .masks import as_b1hw, check_finite, check_mask_range, fit_mask, match_batch

PRESET_SIZES = {"512": 512, "768": 768, "1024": 1024}
TARGET_SIZES = (*PRESET_SIZES, "keep", "custom")
PADDINGS = ("edge", "reflect")
REGION_MODES = ("one", "separate")
LABEL_SIDE = 256  # connected regions are found on the mask max-pooled to at most this many pixels a side


@dataclass(frozen=True)
class Box:
    """A crop box in original pixels: rows [top, top+height), columns [left, left+width); may reach outside."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def overlaps(self, other: "Box") -> bool:
        return (self.top < other.bottom and other.top < self.bottom
                and self.left < other.right and other.left < self.right)

    def inside(self, size_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1): the part of the box within an image of ``size_hw``."""
        h, w = size_hw
        return max(self.top, 0), min(self.bottom, h), max(self.left, 0), min(self.right, w)


@dataclass
class Crop:
    """One crop of the batch: which output image it belongs to, its box, and the mask pixels it regenerates."""

    image: int
    box: Box
    region: torch.Tensor  # (H,W) bool, original resolution: the mask pixels this crop owns
    empty: bool = False


@dataclass
class StitchPlan:
    """What FewStep Stitch needs: the originals (one per output), their masks, the crops, the crops' size."""

    original: torch.Tensor  # (B,H,W,C)
    mask: torch.Tensor  # (B,1,H,W), fitted to the original
    crops: list[Crop]
    size_hw: tuple[int, int]
    padding: str
    extra: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no crop has anything to regenerate (Stitch then returns the original, nothing is sampled)."""
        return all(c.empty for c in self.crops)


# ------------------------------------------------------------------------------------------------ boxes
def mask_bounds(mask_hw: torch.Tensor) -> Box | None:
    """The tight box around the pixels where ``mask_hw`` > 0, or None when there are none."""
    rows = torch.nonzero(mask_hw.any(dim=1)).flatten()
    cols = torch.nonzero(mask_hw.any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    top, left = int(rows[0]), int(cols[0])
    return Box(top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1)


def context_box(box: Box, size_hw: tuple[int, int], context_px: int, context_factor: float) -> Box:
    """``box`` grown by ``context_px`` on every side, then scaled by ``context_factor`` about its centre, kept
    within the image (context beyond the image's sides shows the model nothing)."""
    h, w = size_hw
    height = (box.height + 2 * context_px) * context_factor
    width = (box.width + 2 * context_px) * context_factor
    cy, cx = box.top + box.height / 2, box.left + box.width / 2
    top, left = max(0, math.floor(cy - height / 2)), max(0, math.floor(cx - width / 2))
    bottom, right = min(h, math.ceil(cy + height / 2)), min(w, math.ceil(cx + width / 2))
    return Box(top, left, bottom - top, right - left)


def output_size(box: Box, target: str, custom_hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The crops' (height, width): a preset gives about preset² pixels with the box's aspect; ``custom`` the
    given size; ``keep`` the box's own size; every side a multiple of ``multiple``."""
    if target in PRESET_SIZES:
        scale = PRESET_SIZES[target] / math.sqrt(box.height * box.width)
        return _round_to(box.height * scale, multiple), _round_to(box.width * scale, multiple)
    if target == "custom":
        return _round_to(custom_hw[0], multiple), _round_to(custom_hw[1], multiple)
    if target == "keep":
        return _ceil_to(box.height, multiple), _ceil_to(box.width, multiple)
    raise ValueError(f"target_size: {target!r} is not one of {list(TARGET_SIZES)}")


def fit_box(box: Box, out_hw: tuple[int, int], size_hw: tuple[int, int], *, keep: bool) -> Box:
    """Grow ``box`` to the output's aspect (``keep``: to the output's exact size), about its centre, then move
    it inside the image along each side where it fits; where it does not, centre the image in it (padding)."""
    th, tw = out_hw
    if keep:
        height, width = th, tw
    elif box.width * th < tw * box.height:  # too narrow for the output's aspect
        height, width = box.height, max(box.width, round(box.height * tw / th))
    else:
        height, width = max(box.height, round(box.width * th / tw)), box.width
    top = _place(box.top + box.height / 2, height, size_hw[0])
    left = _place(box.left + box.width / 2, width, size_hw[1])
    return Box(top, left, height, width)


def _place(centre: float, side: int, limit: int) -> int:
    """Start of a ``side``-long span centred at ``centre``, shifted into [0, limit) when it fits, else centred."""
    if side >= limit:
        return -((side - limit) // 2)
    start = round(centre - side / 2)
    return min(max(start, 0), limit - side)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _ceil_to(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


# ------------------------------------------------------------------------------------------------ regions
def connected_regions(mask_hw: torch.Tensor) -> list[torch.Tensor]:
    """The 8-connected regions of ``mask_hw`` > 0 as (H,W) bool masks, largest first. Found on the mask
    max-pooled to ≤ ``LABEL_SIDE`` px a side, so regions closer than the pooling cell count as one."""
    hole = mask_hw > 0
    h, w = hole.shape
    cell = max(1, math.ceil(max(h, w) / LABEL_SIDE))
    small = F.max_pool2d(hole[None, None].float(), cell, stride=cell, ceil_mode=True)[0, 0] > 0
    labels = _label(small)
    full = labels.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:h, :w]
    regions = [hole & (full == k) for k in torch.unique(labels[labels > 0]).tolist()]
    return sorted(regions, key=lambda r: -int(r.sum()))


def _label(hole: torch.Tensor) -> torch.Tensor:
    """Connected-component labels of a small bool image (0 = background) by max-propagation to a fixpoint."""
    index = torch.arange(1, hole.numel() + 1, dtype=torch.float32).view(hole.shape)
    labels = torch.where(hole, index, torch.zeros_like(index))
    while True:
        grown = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0]
        grown = torch.where(hole, grown, torch.zeros_like(grown))
        if torch.equal(grown, labels):
            return labels.long()
        labels = grown


# ------------------------------------------------------------------------------------------------ planning
def plan_crops(image: torch.Tensor, mask: torch.Tensor, context_mask: torch.Tensor | None = None, *,
               context_px: int = 32, context_factor: float = 1.0, target_size: str = "512",
               custom_hw: tuple[int, int] = (512, 512), multiple: int = 8, padding: str = "edge",
               regions: str = "one") -> StitchPlan:
    """Where to crop each image (IMAGE (B,H,W,C), MASK; FewStep Crop). One crop per output image, or with
    ``regions = "separate"`` one per connected region, regions whose crops overlap merged. All crops share one
    output size (that of the largest context box); an image with an empty mask gets a placeholder crop."""
    _check_options(context_px, context_factor, target_size, custom_hw, multiple, padding, regions)
    check_finite(image, "image")
    h, w = int(image.shape[1]), int(image.shape[2])
    batch = max(image.shape[0], _batch_of(mask))
    originals = match_batch(image, batch, "image", target="mask")
    masks = match_batch(fit_mask(check_mask_range(as_b1hw(mask, "mask"), "mask"), (h, w), "mask"), batch, "mask")
    context = None
    if context_mask is not None:
        context = fit_mask(check_mask_range(as_b1hw(context_mask, "context_mask"), "context_mask"), (h, w),
                           "context_mask")
        context = match_batch(context, batch, "context_mask")
    groups = []  # per output image: list of (region mask, bounds to show)
    for b in range(batch):
        hole = masks[b, 0] > 0
        parts = connected_regions(masks[b, 0]) if regions == "separate" else ([hole] if hole.any() else [])
        shown = context[b, 0] > 0 if context is not None else None
        groups.append([(part, _bounds_with_context(part, shown)) for part in parts])
    keep = target_size == "keep"
    while True:
        shown = [[context_box(bounds, (h, w), context_px, context_factor) for _, bounds in g] for g in groups]
        out_hw = batch_output_size([bx for g in shown for bx in g] or [Box(0, 0, h, w)], target_size, custom_hw,
                                   multiple)
        boxes = [[fit_box(bx, out_hw, (h, w), keep=keep) for bx in g] for g in shown]
        if not _merge_first_overlap(groups, boxes):
            break
    crops = []
    for b, (group, group_boxes) in enumerate(zip(groups, boxes)):
        for (part, _), box in zip(group, group_boxes):
            crops.append(Crop(b, box, part))
        if not group:  # nothing to fill: a placeholder crop, so the batch keeps one crop per image
            placeholder = fit_box(Box(0, 0, h, w), out_hw, (h, w), keep=keep)
            crops.append(Crop(b, placeholder, torch.zeros(h, w, dtype=torch.bool), empty=True))
    return StitchPlan(originals, masks, crops, out_hw, padding)


def batch_output_size(boxes: list[Box], target: str, custom_hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    """One output size for every crop of a batch: the largest box's (``keep``: the largest height and width)."""
    if target == "keep":
        return output_size(Box(0, 0, max(b.height for b in boxes), max(b.width for b in boxes)), target, custom_hw,
                           multiple)
    return output_size(max(boxes, key=lambda b: b.height * b.width), target, custom_hw, multiple)


def _bounds_with_context(part: torch.Tensor, shown: torch.Tensor | None) -> Box:
    """Bounds of a region and, where given, of the context mask's pixels too (shown but not regenerated)."""
    return mask_bounds(part | shown) if shown is not None else mask_bounds(part)


def _merge_first_overlap(groups: list, boxes: list) -> bool:
    """Merge the first two regions of one image whose crops overlap; True when one was merged."""
    for group, group_boxes in zip(groups, boxes):
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if group_boxes[i].overlaps(group_boxes[j]):
                    union = group[i][0] | group[j][0]
                    bounds = _union_box(group[i][1], group[j][1])
                    group[i] = (union, bounds)
                    del group[j]
                    return True
    return False


def _union_box(a: Box, b: Box) -> Box:
    top, left = min(a.top, b.top), min(a.left, b.left)
    return Box(top, left, max(a.bottom, b.bottom) - top, max(a.right, b.right) - left)


def _batch_of(mask: torch.Tensor) -> int:
    return 1 if mask.ndim == 2 else int(mask.shape[0])


def _check_options(context_px, context_factor, target_size, custom_hw, multiple, padding, regions) -> None:
    if context_px < 0:
        raise ValueError(f"context_px: must be ≥ 0, got {context_px}")
    if not (math.isfinite(context_factor) and context_factor >= 1.0):
        raise ValueError(f"context_factor: must be a finite number ≥ 1, got {context_factor}")
    if target_size not in TARGET_SIZES:
        raise ValueError(f"target_size: {target_size!r} is not one of {list(TARGET_SIZES)}")
    if multiple < 1:
        raise ValueError(f"multiple: must be ≥ 1, got {multiple}")
    if target_size == "custom" and min(custom_hw) < multiple:
        raise ValueError(f"width/height: {custom_hw[1]}×{custom_hw[0]} is smaller than one multiple ({multiple})")
    if padding not in PADDINGS:
        raise ValueError(f"padding: {padding!r} is not one of {list(PADDINGS)}")
    if regions not in REGION_MODES:
        raise ValueError(f"regions: {regions!r} is not one of {list(REGION_MODES)}")


# ------------------------------------------------------------------------------------------------ pixels
def resample(nchw: torch.Tensor, size_hw: tuple[int, int], *, is_mask: bool = False) -> torch.Tensor:
    """Resize (N,C,H,W): down antialiased bilinear, up bicubic (images clamped to [0, 1]); masks bilinear."""
    if tuple(nchw.shape[-2:]) == tuple(size_hw):
        return nchw
    down = size_hw[0] * size_hw[1] < nchw.shape[-2] * nchw.shape[-1]
    if down or is_mask:
        out = F.interpolate(nchw, size=size_hw, mode="bilinear", align_corners=False, antialias=down)
    else:
        out = F.interpolate(nchw, size=size_hw, mode="bicubic", align_corners=False)
    return out.clamp(0.0, 1.0)


def cut_box(nchw: torch.Tensor, box: Box, padding: str | None) -> torch.Tensor:
    """The box's pixels of (N,C,H,W); outside the image edge/reflect padding, or zeros when ``padding`` is None
    (masks: the padding is known). Reflection wider than the image falls back to edge."""
    h, w = nchw.shape[-2:]
    pads = (max(0, -box.left), max(0, box.right - w), max(0, -box.top), max(0, box.bottom - h))
    r0, r1, c0, c1 = box.inside((h, w))
    part = nchw[..., r0:r1, c0:c1]
    if any(pads):
        if padding is None:
            part = F.pad(part, pads, mode="constant", value=0.0)
        else:
            mode = "reflect" if padding == "reflect" and max(pads) < min(part.shape[-2:]) else "replicate"
            part = F.pad(part, pads, mode=mode)
    return part


def crop_images(plan: StitchPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """The cropped IMAGE (N,h,w,C) and MASK (N,h,w) of every crop in ``plan``, at its output size."""
    images, masks = [], []
    for crop in plan.crops:
        original = plan.original[crop.image : crop.image + 1].permute(0, 3, 1, 2)
        region_mask = plan.mask[crop.image : crop.image + 1] * crop.region[None, None].to(plan.mask.dtype)
        images.append(resample(cut_box(original, crop.box, plan.padding), plan.size_hw))
        masks.append(resample(cut_box(region_mask, crop.box, None), plan.size_hw, is_mask=True))
    return torch.cat(images).permute(0, 2, 3, 1).contiguous(), torch.cat(masks)[:, 0]


def stitch(plan: StitchPlan, generated: torch.Tensor, original: torch.Tensor | None = None, *, grow_px: int = 0,
           feather_px: int = 0, color_match: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each generated crop (IMAGE (N,h,w,C)) back into its image: resampled to its box and composited
    exactly (Exact Composite's rules) over the crop's own mask pixels. Returns (image, used mask (B,H,W))."""
    base = plan.original if original is None else _check_original(original, plan)
    out = base.clone()
    used = torch.zeros(out.shape[0], out.shape[1], out.shape[2], dtype=torch.float32)
    if plan.empty:
        return out, used
    check_finite(generated, "generated")
    if generated.ndim != 4 or generated.shape[0] != len(plan.crops):
        raise ValueError(f"generated: expected a batch of {len(plan.crops)} crops (FewStep Crop's image output), "
                         f"got shape {tuple(generated.shape)}")
    if generated.shape[-1] != out.shape[-1]:
        raise ValueError(f"generated: has {generated.shape[-1]} channels but the original has {out.shape[-1]}")
    size_hw = (int(out.shape[1]), int(out.shape[2]))
    for k, crop in enumerate(plan.crops):
        if crop.empty:
            continue
        r0, r1, c0, c1 = crop.box.inside(size_hw)
        back = resample(generated[k : k + 1].permute(0, 3, 1, 2).to(base.device, torch.float32),
                        (crop.box.height, crop.box.width))
        back = back[..., r0 - crop.box.top : r1 - crop.box.top, c0 - crop.box.left : c1 - crop.box.left]
        region = plan.mask[crop.image, 0, r0:r1, c0:c1] * crop.region[r0:r1, c0:c1].to(plan.mask.dtype)
        piece, piece_used = exact_composite(
            base[crop.image : crop.image + 1, r0:r1, c0:c1], back.permute(0, 2, 3, 1).to(out.dtype), region[None],
            grow_px=grow_px, feather_px=feather_px, color_match=color_match)
        out[crop.image, r0:r1, c0:c1] = piece[0]
        used[crop.image, r0:r1, c0:c1] = torch.maximum(used[crop.image, r0:r1, c0:c1], piece_used[0])
    return out, used


def _check_original(original: torch.Tensor, plan: StitchPlan) -> torch.Tensor:
    check_finite(original, "original")
    if original.ndim != 4 or tuple(original.shape[1:3]) != tuple(plan.original.shape[1:3]):
        raise ValueError(f"original: expected an IMAGE of {plan.original.shape[2]}×{plan.original.shape[1]} px "
                         f"(the one FewStep Crop cut), got shape {tuple(original.shape)}")
    return match_batch(original, plan.original.shape[0], "original", target="stitch")
