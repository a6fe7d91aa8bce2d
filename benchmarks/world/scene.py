"""The procedural world: seeded scenes of 1–3 shapes on a patterned background, with detailed captions,
per-object region captions and visible masks, and the parameters as JSON (the ground truth).

Pure numpy; a scene is fully determined by its seed, and the splits are disjoint seed ranges.
"""
from __future__ import annotations

import numpy as np

SIZE = 64
SUPERSAMPLE = 4  # coverage is rendered at 4× and box-filtered: anti-aliased edges, still exact per seed
COLOURS = {  # name → sRGB; far apart so a 64 px image (and a learned VAE) keeps them distinct
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 215), "yellow": (235, 205, 40),
    "purple": (135, 55, 185), "white": (240, 240, 240), "black": (25, 25, 25),
}
COLOUR_NAMES = list(COLOURS)
SHAPES = ["circle", "square", "triangle", "ring", "cross"]
SIZES = {"small": 13.0, "large": 23.0}  # object side / diameter in pixels
BACKGROUNDS = ["solid", "gradient", "stripes", "checker"]
POSITIONS = ["top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"]
CELL_CENTRES = (12.0, 32.0, 52.0)
SPLITS = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # a split's scene i has seed offset + i


def seed_of(split: str, index: int) -> int:
    """The scene seed of item ``index`` of ``split`` (disjoint ranges, so no scene is in two splits)."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {list(SPLITS)}")
    return SPLITS[split] + int(index)


def sample_params(seed: int) -> dict:
    """Random scene parameters for ``seed``: background kind and colours, 1–3 objects on distinct cells."""
    rng = np.random.default_rng(seed)
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    n_bg = 1 if kind == "solid" else 2
    bg = [COLOUR_NAMES[i] for i in rng.choice(len(COLOUR_NAMES), size=n_bg, replace=False)]
    free = [c for c in COLOUR_NAMES if c not in bg]
    count = int(rng.integers(1, 4))
    cells = rng.choice(len(POSITIONS), size=count, replace=False)
    objects = [{"shape": SHAPES[rng.integers(len(SHAPES))], "colour": free[rng.integers(len(free))],
                "size": "small" if rng.random() < 0.5 else "large", "position": POSITIONS[int(c)]} for c in cells]
    return {"seed": int(seed), "background": {"kind": kind, "colours": bg}, "objects": objects}


def _grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    n = size * SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float64) + 0.5) / SUPERSAMPLE
    return np.meshgrid(coords, coords, indexing="xy")


def shape_coverage(shape: str, size: str, position: str) -> np.ndarray:
    """Fractional coverage (64×64 float, 0..1) of one object."""
    xx, yy = _grid()
    row, col = divmod(POSITIONS.index(position), 3)
    cx, cy, s = CELL_CENTRES[col], CELL_CENTRES[row], SIZES[size]
    dx, dy, r = xx - cx, yy - cy, s / 2
    if shape == "circle":
        inside = dx**2 + dy**2 <= r**2
    elif shape == "square":
        inside = (np.abs(dx) <= r * 0.9) & (np.abs(dy) <= r * 0.9)
    elif shape == "ring":
        d = np.sqrt(dx**2 + dy**2)
        inside = (d <= r) & (d >= r * 0.55)
    elif shape == "cross":
        arm = r * 0.36
        inside = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    elif shape == "triangle":  # apex up, base at the bottom
        top, bottom = cy - r, cy + r
        t = (yy - top) / (bottom - top)
        inside = (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    else:
        raise ValueError(f"shape: {shape!r} is not one of {SHAPES}")
    return _downsample(inside.astype(np.float64))


def _downsample(x: np.ndarray) -> np.ndarray:
    n = x.shape[0] // SUPERSAMPLE
    return x.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE).mean(axis=(1, 3))


def background_image(kind: str, colours: list[str]) -> np.ndarray:
    """(64, 64, 3) float in 0..1: solid, top-to-bottom gradient, vertical stripes (8 px) or a checker of 16 px cells."""
    c = [np.array(COLOURS[name], dtype=np.float64) / 255.0 for name in colours]
    if kind == "solid":
        return np.broadcast_to(c[0], (SIZE, SIZE, 3)).copy()
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    if kind == "gradient":
        t = (yy[..., None] + 0.5) / SIZE
        return (1 - t) * c[0] + t * c[1]
    if kind == "stripes":
        second = ((xx // 8) % 2 == 1)[..., None]
    elif kind == "checker":
        second = (((xx // 16) + (yy // 16)) % 2 == 1)[..., None]
    else:
        raise ValueError(f"background kind: {kind!r} is not one of {BACKGROUNDS}")
    return np.where(second, c[1], c[0])


def render(params: dict) -> dict:
    """Image (64, 64, 3) float32 0..1, per-object visible coverage (N, 64, 64) float32, in drawing order."""
    image = background_image(params["background"]["kind"], params["background"]["colours"])
    covers = [shape_coverage(o["shape"], o["size"], o["position"]) for o in params["objects"]]
    for obj, cover in zip(params["objects"], covers):
        colour = np.array(COLOURS[obj["colour"]], dtype=np.float64) / 255.0
        image = image * (1 - cover[..., None]) + colour * cover[..., None]
    visible = []
    for i, cover in enumerate(covers):
        v = cover.copy()
        for later in covers[i + 1:]:
            v = v * (1 - later)
        visible.append(v)
    return {"image": image.astype(np.float32),
            "visible": np.stack(visible).astype(np.float32) if visible else np.zeros((0, SIZE, SIZE), np.float32),
            "visible_fraction": [float(v.sum() / max(c.sum(), 1e-6)) for v, c in zip(visible, covers)]}


def position_phrase(position: str) -> str:
    return "in the centre" if position == "centre" else f"at the {position}"


def object_caption(obj: dict) -> str:
    """Region caption of one object (TurboFill's region data): "a large red circle"."""
    return f"a {obj['size']} {obj['colour']} {obj['shape']}"


def background_caption(background: dict) -> str:
    kind, c = background["kind"], background["colours"]
    if kind == "solid":
        return f"a {c[0]} background"
    words = {"gradient": "to", "stripes": "and", "checker": "and"}[kind]
    suffix = {"gradient": "gradient", "stripes": "striped", "checker": "checkered"}[kind]
    return f"a {c[0]} {words} {c[1]} {suffix} background"


def caption(params: dict) -> str:
    """The detailed caption naming every attribute (TurboEdit's disentanglement rests on it)."""
    parts = [f"{object_caption(o)} {position_phrase(o['position'])}" for o in params["objects"]]
    if len(parts) == 1:
        objects = parts[0]
    else:
        objects = ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{objects}, on {background_caption(params['background'])}"


def scene(seed: int) -> dict:
    """Everything about one scene: params, caption, image, visible masks and region captions."""
    params = sample_params(seed)
    out = render(params)
    return {"params": params, "caption": caption(params), "image": out["image"], "visible": out["visible"],
            "visible_fraction": out["visible_fraction"], "regions": [object_caption(o) for o in params["objects"]]}


def vocabulary() -> list[str]:
    """Every word a caption can hold (the tokenizer's word-level vocabulary)."""
    words = {"a", "at", "the", "in", "and", "on", "to", "background", "gradient", "striped", "checkered", ","}
    words |= set(COLOUR_NAMES) | set(SHAPES) | set(SIZES)
    for p in POSITIONS:
        words |= set(p.split())
    return sorted(words)


def write_folder(out, split: str, count: int, *, masks: bool = False) -> list[str]:
    """Scenes 0..count-1 of ``split`` as a trainer's image folder: ``<split>_<i>.png`` with its detailed caption in
    ``.txt`` (the trainers' ``images_dir``); with ``masks``, also ``_mask.png``, the first object's visible region
    (white = hole: TurboFill's layout). Returns the file stems."""
    from pathlib import Path

    from PIL import Image

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(count):
        item = scene(seed_of(split, i))
        stem = f"{split}_{i:06d}"
        Image.fromarray((item["image"] * 255).round().astype(np.uint8)).save(folder / f"{stem}.png")
        (folder / f"{stem}.txt").write_text(item["caption"] + "\n", encoding="utf-8")
        if masks:
            hole = item["visible"][0] > 0.5 if len(item["visible"]) else np.zeros((SIZE, SIZE), bool)
            Image.fromarray(hole.astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
        stems.append(stem)
    return stems


def write_prompts(out, split: str, count: int) -> int:
    """The detailed captions of scenes 0..count-1 of ``split``, one per line (a trainer's ``prompts_file``), written
    through a temporary file; returns the number of lines."""
    import os
    from pathlib import Path

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(scene(seed_of(split, i))["caption"] + "\n" for i in range(count)), encoding="utf-8")
    os.replace(tmp, path)
    return count


def write_regions(out, split: str, count: int, *, grow: int = 3, min_visible: float = 0.5,
                  background: bool = False) -> int:
    """Scenes 0..count-1 of ``split`` as trainers.region_dataset's input: ``images/<stem>.png``, each object's
    hole ``masks/<stem>-<k>.png`` (its visible region's bounding box grown by ``grow`` px, the quality table's
    object holes; objects less than ``min_visible`` visible are left out), ``prompts.json`` giving those regions as
    mask files and ``captions.json`` their region captions ("a large red circle"). ``background``: also one box
    touching no object per image, captioned with the background ("a red and blue striped background"), the quality
    table's background holes. Returns the region count."""
    import json
    import os
    from pathlib import Path

    from PIL import Image

    from .judge import bbox_region, empty_box

    folder = Path(out)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    prompts, captions = {}, {}
    for i in range(count):
        item = scene(seed_of(split, i))
        stem = f"{split}_{i:06d}"
        Image.fromarray((item["image"] * 255).round().astype(np.uint8)).save(folder / "images" / f"{stem}.png")
        entries, texts = [], []
        for j, fraction in enumerate(item["visible_fraction"]):
            if fraction < min_visible:
                continue
            hole = bbox_region(item["visible"][j], grow) > 0.5
            name = f"masks/{stem}-{j}.png"
            Image.fromarray(hole.astype(np.uint8) * 255).save(folder / name)
            entries.append({"mask": name})
            texts.append(item["regions"][j])
        box = empty_box(item, np.random.default_rng(seed_of(split, i))) if background else None
        if box is not None:
            name = f"masks/{stem}-bg.png"
            Image.fromarray((box > 0.5).astype(np.uint8) * 255).save(folder / name)
            entries.append({"mask": name})
            texts.append(background_caption(item["params"]["background"]))
        if entries:
            prompts[f"{stem}.png"], captions[f"{stem}.png"] = entries, texts
    for name, table in (("prompts.json", prompts), ("captions.json", captions)):
        tmp = folder / f"{name}.tmp"
        tmp.write_text(json.dumps(table, indent=0))
        os.replace(tmp, folder / name)
    return sum(len(v) for v in prompts.values())
