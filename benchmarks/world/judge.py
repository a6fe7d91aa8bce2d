"""The judge's training regions and labels, its held-out accuracy, and caption agreement of generated images."""
from __future__ import annotations

import numpy as np
import torch

from . import models, scene

IGNORE = -100
MIN_VISIBLE = 0.3  # an object less than 30 % visible (occluded) is not judged


def visible_fraction(item: dict, i: int) -> float:
    return item["visible_fraction"][i]


def bbox_region(mask: np.ndarray, grow: int) -> np.ndarray:
    """The bounding box of ``mask > 0.5`` grown by ``grow`` pixels (a hole drawn around an object)."""
    ys, xs = np.nonzero(mask > 0.5)
    out = np.zeros_like(mask)
    if len(ys):
        out[max(ys.min() - grow, 0): ys.max() + grow + 1, max(xs.min() - grow, 0): xs.max() + grow + 1] = 1
    return out


def background_labels(params: dict) -> dict:
    bg = params["background"]
    first = scene.COLOUR_NAMES.index(bg["colours"][0])
    second = scene.COLOUR_NAMES.index(bg["colours"][1]) if len(bg["colours"]) > 1 else models.NONE_COLOUR
    return {"bg_kind": scene.BACKGROUNDS.index(bg["kind"]), "bg_first": first, "bg_second": second}


def empty_box(item: dict, rng: np.random.Generator) -> np.ndarray | None:
    """A random box touching no object, or None."""
    occupied = item["visible"].sum(axis=0) > 0.01 if len(item["visible"]) else np.zeros((scene.SIZE,) * 2, bool)
    for _ in range(8):
        h, w = rng.integers(8, 25, size=2)
        y, x = rng.integers(0, scene.SIZE - h), rng.integers(0, scene.SIZE - w)
        if not occupied[y:y + h, x:x + w].any():
            box = np.zeros((scene.SIZE, scene.SIZE), np.float32)
            box[y:y + h, x:x + w] = 1
            return box
    return None


def judge_batch(items: list[dict], rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """Regions (B,1,64,64) and labels: an object's visible mask or its grown box (labelled with its shape and
    colour), or an empty box (shape "none"); background labels always."""
    regions, labels = [], {k: [] for k in ("shape", "colour", "bg_kind", "bg_first", "bg_second")}
    for item in items:
        for k, v in background_labels(item["params"]).items():
            labels[k].append(v)
        box = empty_box(item, rng) if rng.random() < 0.3 else None
        if box is not None:
            regions.append(box)
            labels["shape"].append(models.NONE_SHAPE)
            labels["colour"].append(IGNORE)
            continue
        i = int(rng.integers(len(item["params"]["objects"])))
        obj = item["params"]["objects"][i]
        mask = item["visible"][i]
        region = (mask > 0.5).astype(np.float32) if rng.random() < 0.5 else bbox_region(mask, int(rng.integers(0, 7)))
        regions.append(region)
        ok = visible_fraction(item, i) >= MIN_VISIBLE
        labels["shape"].append(scene.SHAPES.index(obj["shape"]) if ok else IGNORE)
        labels["colour"].append(scene.COLOUR_NAMES.index(obj["colour"]) if ok else IGNORE)
    return (torch.from_numpy(np.stack(regions)).unsqueeze(1).float(),
            {k: torch.tensor(v, dtype=torch.long) for k, v in labels.items()})


def object_regions(item: dict) -> list[tuple[int, np.ndarray]]:
    """(object index, region) of every object visible enough to be judged."""
    return [(i, (item["visible"][i] > 0.5).astype(np.float32)) for i in range(len(item["params"]["objects"]))
            if visible_fraction(item, i) >= MIN_VISIBLE]


@torch.no_grad()
def predict(judge, images: torch.Tensor, regions: torch.Tensor, device="cpu") -> dict:
    """argmax of every head for (B,3,64,64) images in 0..1 and (B,1,64,64) regions."""
    out = judge(images.to(device).float(), regions.to(device).float())
    return {k: v.argmax(dim=1).cpu() for k, v in out.items()}


def _judged(judge, items: list[dict], images: torch.Tensor, device) -> list[dict]:
    """Per item: the predicted and the true attributes (background + every judged object)."""
    rows = []
    blank = torch.zeros(len(items), 1, scene.SIZE, scene.SIZE)
    bg = predict(judge, images, blank, device)
    pairs = [(n, i, r) for n, item in enumerate(items) for i, r in object_regions(item)]
    obj = None
    if pairs:
        idx = torch.tensor([n for n, _, _ in pairs])
        regions = torch.from_numpy(np.stack([r for _, _, r in pairs])).unsqueeze(1)
        obj = predict(judge, images[idx.to(images.device)], regions, device)
    for n, item in enumerate(items):
        truth = background_labels(item["params"])
        row = {"bg_kind": (int(bg["bg_kind"][n]), truth["bg_kind"]),
               "bg_first": (int(bg["bg_first"][n]), truth["bg_first"])}
        if truth["bg_second"] != models.NONE_COLOUR:
            row["bg_second"] = (int(bg["bg_second"][n]), truth["bg_second"])
        rows.append(row)
    for j, (n, i, _) in enumerate(pairs):
        o = items[n]["params"]["objects"][i]
        rows[n][f"shape_{i}"] = (int(obj["shape"][j]), scene.SHAPES.index(o["shape"]))
        rows[n][f"colour_{i}"] = (int(obj["colour"][j]), scene.COLOUR_NAMES.index(o["colour"]))
    return rows


def judge_accuracy(judge, items: list[dict], images: torch.Tensor, device="cpu") -> dict:
    """Held-out accuracy per attribute kind and overall (every judged attribute counts once)."""
    rows = _judged(judge, items, images, device)
    hits: dict[str, list[bool]] = {}
    for row in rows:
        for key, (pred, true) in row.items():
            hits.setdefault(key.split("_")[0] if key.startswith(("shape", "colour")) else key, []).append(pred == true)
    out = {k: round(float(np.mean(v)), 4) for k, v in hits.items()}
    out["overall"] = round(float(np.mean([h for v in hits.values() for h in v])), 4)
    return out


def caption_agreement(judge, items: list[dict], images: torch.Tensor, device="cpu") -> tuple[float, float]:
    """(mean fraction of a caption's attributes the judge finds in the image, fraction of images with all right).

    Attributes: background kind and colour(s), and each object's shape and colour read in the region where the
    caption puts it (its ground-truth visible mask)."""
    rows = _judged(judge, items, images, device)
    fractions = [np.mean([p == t for p, t in row.values()]) for row in rows]
    return round(float(np.mean(fractions)), 4), round(float(np.mean([f == 1.0 for f in fractions])), 4)


@torch.no_grad()
def region_matches(judge, images: torch.Tensor, regions: torch.Tensor, shapes: list[int], colours: list[int],
                   device="cpu") -> list[float]:
    """Per image: the share of {shape, colour} the judge reads in ``regions`` that match the prompt's object."""
    got = predict(judge, images, regions, device)
    return [float((int(s) == a) + (int(c) == b)) / 2
            for s, c, a, b in zip(got["shape"], got["colour"], shapes, colours)]
