"""SAM2 Mask's JSON text widgets → one :class:`Prompt` per image (clicks as KJNodes' Points Editor writes them,
``[{"x", "y"}, …]`` or ``[[x, y], …]``; boxes ``[[x0, y0, x1, y1], …]``; a list of sets gives one per image)."""
from __future__ import annotations

import json

from ..core.segment.prompts import Prompt, as_point, numbers, per_image


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
    return [[numbers(b, 4, f"{name}: set {s} box {i}" if nested else f"{name}: box {i}")
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


def prompts_from_json(positive: str | None, negative: str | None, boxes: str | None, batch: int) -> list[Prompt]:
    """One :class:`Prompt` per image from the node's JSON strings (batch rule of :func:`per_image`)."""
    pos = per_image(parse_point_sets(positive, "positive_points"), batch, "positive_points")
    neg = per_image(parse_point_sets(negative, "negative_points"), batch, "negative_points")
    box = per_image(parse_box_sets(boxes, "boxes"), batch, "boxes")
    return [Prompt(tuple(p), tuple(n), tuple(b)) for p, n, b in zip(pos, neg, box)]
