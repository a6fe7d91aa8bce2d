"""SAM2 prompts: clicks and boxes in pixels of the image, their checks, the prompts-file entry form, and the
batch rule. (The node's JSON text widgets are parsed next to the node: nodes/sam2_prompts.py.)

``(x, y)`` clicks, ``(x0, y0, x1, y1)`` boxes. Each box is one object and every click is added to each box's
prompt (SAM's box + clicks refinement); without boxes all clicks form one object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """Clicks and boxes for one image, in pixels of that image."""

    positive_points: tuple = ()
    negative_points: tuple = ()
    boxes: tuple = ()


def numbers(values, count: int, what: str) -> tuple[float, ...]:
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
    return numbers(item, 2, what)


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
                  tuple(numbers(b, 4, f"{where}: boxes {i}") for i, b in enumerate(lists["boxes"])))


def per_image(sets: list, batch: int, name: str) -> list:
    """Batch rule: one set applies to every image; otherwise exactly one set per image."""
    if len(sets) == 1:
        return sets * batch
    if len(sets) == batch:
        return list(sets)
    raise ValueError(f"{name}: {len(sets)} prompt sets for a batch of {batch} images "
                     "(give one set for all images, or exactly one per image)")
