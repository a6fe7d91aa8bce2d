"""Region-caption data builder: SAM2 regions of a folder of photos → the TurboFill dataset layout.

    python -m trainers.region_dataset --images_dir DIR --output_dir OUT --sam2_checkpoint FILE \\
        [--prompts prompts.json | --prompts automatic] [--captions captions.json | --captioner module:function]

For every (image, region k) it writes the sample ``<stem>-r<k>``: ``OUT/<stem>-r<k>.png`` (the image,
RGB), ``OUT/<stem>-r<k>_mask.png`` (L: 255 = the region = the hole, 0 = keep) and ``OUT/<stem>-r<k>.txt``
(the caption, UTF-8); every file atomically. ``OUT/progress.json`` lists finished images, so a rerun
skips them; images that are unreadable, get no mask or no caption are skipped, listed there under
``skipped`` and retried by the next run. The last stdout line is a JSON summary.

prompts.json (keys: file name or stem; one region object or a list of them, region k = list index)::

    {"astronaut.png": [{"positive_points": [[250, 120]], "negative_points": [], "boxes": [[140, 20, 370, 300]]}]}

A region may instead be given as a mask file, ``{"mask": "masks/astronaut-0.png"}`` (relative to the prompts
file; white = the region, the image's size): it is taken as it is, without SAM2 (hand-painted masks, another
segmenter's, or a synthetic world's ground truth). ``--sam2_checkpoint`` is needed only for clicks, boxes and
``automatic``.

captions.json (a text for all regions, a list by region index, or ``"<stem>-r<k>"`` keys)::

    {"astronaut.png": ["an astronaut's helmet"], "coffee": "a cup of coffee", "chelsea-r1": "a cat's ear"}

``--captioner pkg.module:function`` imports ``function(image_pil, mask_pil) -> str`` (none is bundled).
"""
from __future__ import annotations

import dataclasses
import importlib
import io
import json
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch

from core.segment import MULTIMASK, automatic_regions, check_prompt, load_sam2, prompt_from_dict, segment_regions
from trainers.common.config import ConfigError, build_config, check_writable_path, config_dict
from trainers.common.data import DataError
from trainers.common.export import atomic_json
from trainers.common.images import IMAGE_SUFFIXES
from trainers.common.run import split_config_arg

AUTOMATIC = "automatic"
PROGRESS = "progress.json"
log = logging.getLogger(__name__)


@dataclasses.dataclass
class RegionDatasetConfig:
    images_dir: str = ""
    output_dir: str = ""
    sam2_checkpoint: str = ""         # .safetensors, or Meta's .pt (tensors only); not needed for mask regions
    prompts: str = AUTOMATIC          # a prompts.json, or "automatic" (SAM2AutomaticMaskGenerator)
    captions: str = ""                # captions.json …
    captioner: str = ""               # … or module:function(image_pil, mask_pil) -> str
    multimask: str = "best"           # prompts mode: best | largest | union | single | 0 | 1 | 2
    max_regions: int = 3              # automatic mode: keep the top N regions …
    min_area: float = 0.02            # … whose area fraction lies in [min_area, max_area]
    max_area: float = 0.6
    rank_by: str = "score"            # score (predicted IoU) | area
    points_per_side: int = 16
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    device: str = "auto"              # auto = cuda when available


# ---------------------------------------------------------------- inputs


def check_config(cfg: RegionDatasetConfig) -> None:
    """Errors naming the option, before any work."""
    for name in ("images_dir", "output_dir"):
        if not getattr(cfg, name):
            raise ConfigError(f"--{name} is required")
    if not cfg.sam2_checkpoint and cfg.prompts == AUTOMATIC:
        raise ConfigError("--sam2_checkpoint is required (automatic regions come from SAM2)")
    if not Path(cfg.images_dir).is_dir():
        raise DataError(f"images_dir: {cfg.images_dir} is not a folder")
    check_writable_path(cfg.output_dir, "output_dir")
    if cfg.sam2_checkpoint and not Path(cfg.sam2_checkpoint).is_file():
        raise DataError(f"sam2_checkpoint: {cfg.sam2_checkpoint} does not exist")
    if cfg.prompts != AUTOMATIC and not Path(cfg.prompts).is_file():
        raise DataError(f"prompts: {cfg.prompts} does not exist (give a prompts.json or 'automatic')")
    if bool(cfg.captions) == bool(cfg.captioner):
        raise ConfigError("give exactly one of --captions captions.json or --captioner module:function")
    if cfg.captions and not Path(cfg.captions).is_file():
        raise DataError(f"captions: {cfg.captions} does not exist")
    if cfg.multimask not in MULTIMASK:
        raise ConfigError(f"multimask: {cfg.multimask!r} is not one of {MULTIMASK}")


def read_json_object(path: str, what: str) -> dict:
    """A JSON file holding an object; errors name the option."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{what}: cannot read {path} ({err})") from err
    if not isinstance(data, dict):
        raise DataError(f"{what}: {path} must hold a JSON object keyed by image name")
    return data


def entry_for(table: dict, image: Path):
    """The entry of an image by file name, else by stem (None when absent)."""
    return table.get(image.name, table.get(image.stem))


def caption_from_table(table: dict, image: Path, k: int) -> str:
    """``"<stem>-r<k>"`` key, else the image's entry: a string, a list by region or ``{"k": text}``."""
    value = table.get(sample_name(image, k))
    if value is None:
        value = entry_for(table, image)
        if isinstance(value, list):
            value = value[k] if k < len(value) else None
        elif isinstance(value, dict):
            value = value.get(str(k))
    return value.strip() if isinstance(value, str) else ""


def import_captioner(spec: str):
    """``module:function`` → the callable (imported from the working directory / sys.path)."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise ConfigError(f"captioner: {spec!r} is not module:function")
    try:
        fn = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"captioner: cannot import {spec} ({err})") from err
    if not callable(fn):
        raise ConfigError(f"captioner: {spec} is not callable")
    return fn


def list_images(folder: Path) -> tuple[list[Path], list[dict]]:
    """Image files in name order, and a skip entry for each later file whose stem is taken."""
    images, skipped, stems = [], [], {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.stem in stems:
            skipped.append(skip(path.name, None, f"same stem as {stems[path.stem]} (sample names would collide)"))
            continue
        stems[path.stem] = path.name
        images.append(path)
    return images, skipped


def read_rgb(path: Path) -> np.ndarray:
    """(H,W,3) uint8, EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB")).copy()


# ---------------------------------------------------------------- outputs


def sample_name(image: Path, k: int) -> str:
    return f"{image.stem}-r{k}"


def skip(image: str, region: int | None, reason: str) -> dict:
    return {"image": image, "region": region, "reason": reason}


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of a uint8 array: (H,W,3) → RGB, (H,W) → L."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def mask_to_l(mask: torch.Tensor) -> np.ndarray:
    """(H,W) {0,1} → uint8 L image: 255 = region (hole), 0 = keep."""
    return np.where(mask.cpu().numpy() > 0.5, 255, 0).astype(np.uint8)


def write_sample(out: Path, name: str, image_png: bytes, mask: torch.Tensor, caption: str) -> None:
    atomic_write(out / f"{name}.png", image_png)
    atomic_write(out / f"{name}_mask.png", png_bytes(mask_to_l(mask)))
    atomic_write(out / f"{name}.txt", caption.encode("utf-8"))


def remove_samples(out: Path, image: Path) -> None:
    """Delete files of an earlier, interrupted pass over this image (so reruns leave no stale regions)."""
    pattern = re.compile(rf"^{re.escape(image.stem)}-r\d+(_mask)?\.(png|txt)$")
    for path in out.iterdir():
        if pattern.match(path.name):
            path.unlink()


def load_progress(out: Path) -> dict:
    path = out / PROGRESS
    if not path.is_file():
        return {"version": 1, "finished": [], "samples": {}, "skipped": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"output_dir: {path} is corrupt ({err}); delete it to start over") from err


# ---------------------------------------------------------------- regions and captions


def image_entries(prompts: dict, image: Path) -> list | None:
    """The image's region entries in prompts.json as a list (None when it has no entry)."""
    entry = entry_for(prompts, image)
    return None if entry is None else entry if isinstance(entry, list) else [entry]


def needs_sam2(prompts: dict | None) -> bool:
    """Whether any region is to be segmented (clicks, boxes or automatic) rather than given as a mask file."""
    if prompts is None:
        return True
    return any(not (isinstance(item, dict) and "mask" in item)
               for entry in prompts.values() for item in (entry if isinstance(entry, list) else [entry]))


def read_region_mask(item: dict, base: Path, rgb: np.ndarray, where: str) -> torch.Tensor:
    """A region given as a mask file (white = region), as a (H,W) {0,1} tensor; ValueError naming the entry."""
    from PIL import Image

    unknown = sorted(set(item) - {"mask"})
    if unknown:
        raise ValueError(f"{where}: a mask region takes only 'mask', not {unknown}")
    path = base / str(item["mask"])
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("L"))
    except Exception as err:  # PIL raises many types for missing or broken files
        raise ValueError(f"{where}: cannot read mask {path} ({err})") from err
    if array.shape != rgb.shape[:2]:
        raise ValueError(f"{where}: mask {path} is {array.shape[1]}×{array.shape[0]} but the image is "
                         f"{rgb.shape[1]}×{rgb.shape[0]}")
    return torch.from_numpy(array > 127).float()


def prompt_regions(model, cfg, prompts: dict, image: Path, rgb: np.ndarray) -> tuple[dict, list[dict]]:
    """{k: mask} for the image's prompts in prompts.json (SAM2 for clicks and boxes, mask files as they are), and
    skip entries for bad ones."""
    entries = image_entries(prompts, image)
    if entries is None:
        return {}, [skip(image.name, None, "no entry in the prompts file")]
    good, given, skipped = {}, {}, []
    for k, item in enumerate(entries):
        where = f"prompts[{image.name}][{k}]"
        try:
            if isinstance(item, dict) and "mask" in item:
                given[k] = read_region_mask(item, Path(cfg.prompts).parent, rgb, where)
                continue
            prompt = prompt_from_dict(item, where)
            check_prompt(prompt, rgb.shape[0], rgb.shape[1], f"region {k}")
            good[k] = prompt
        except ValueError as err:
            skipped.append(skip(image.name, k, str(err)))
    masks = segment_regions(model, rgb, list(good.values()), cfg.multimask) if good else []
    return dict(sorted({**dict(zip(good, masks)), **given}.items())), skipped


def auto_regions(model, cfg, rgb: np.ndarray) -> dict:
    """{k: mask} of the top regions of SAM2's automatic mask generator."""
    regions = automatic_regions(model, rgb, max_regions=cfg.max_regions, min_area=cfg.min_area,
                                max_area=cfg.max_area, rank_by=cfg.rank_by, points_per_side=cfg.points_per_side,
                                pred_iou_thresh=cfg.pred_iou_thresh, stability_score_thresh=cfg.stability_score_thresh)
    return {k: r.mask for k, r in enumerate(regions)}


def caption_for(cfg, captions: dict, captioner, image: Path, rgb: np.ndarray, k: int, mask: torch.Tensor) -> str:
    """The region's caption from the captions file or the captioner ('' when none)."""
    if captioner is None:
        return caption_from_table(captions, image, k)
    from PIL import Image

    text = captioner(Image.fromarray(rgb), Image.fromarray(mask_to_l(mask)))
    return text.strip() if isinstance(text, str) else ""


def process_image(model, cfg, prompts, captions, captioner, image: Path, out: Path) -> tuple[list[str], list[dict]]:
    """Write the samples of one image; (sample names, skip entries). Never raises for bad data."""
    try:
        rgb = read_rgb(image)
    except Exception as err:  # PIL raises many types for broken files
        return [], [skip(image.name, None, f"unreadable image ({err})")]
    if prompts is None:
        masks, skipped = auto_regions(model, cfg, rgb), []
    else:
        masks, skipped = prompt_regions(model, cfg, prompts, image, rgb)
    if not masks and not skipped:
        skipped.append(skip(image.name, None, "no mask (no region found within the area limits)"))
    remove_samples(out, image)
    image_png, written = png_bytes(rgb), []
    for k, mask in masks.items():
        if not bool(mask.any()):
            skipped.append(skip(image.name, k, "no mask (an empty region)"))
            continue
        try:
            caption = caption_for(cfg, captions, captioner, image, rgb, k, mask)
        except Exception as err:  # a user's captioner may fail on one image; report and go on
            skipped.append(skip(image.name, k, f"captioner failed ({type(err).__name__}: {err})"))
            continue
        if not caption:
            skipped.append(skip(image.name, k, "no caption"))
            continue
        write_sample(out, sample_name(image, k), image_png, mask, caption)
        written.append(sample_name(image, k))
    return written, skipped


# ---------------------------------------------------------------- run


def pick_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def build(cfg: RegionDatasetConfig, model=None) -> dict:
    """Build (or resume) the dataset; returns the summary. ``model``: an already loaded SAM2 (tests)."""
    from tqdm.auto import tqdm

    check_config(cfg)
    prompts = None if cfg.prompts == AUTOMATIC else read_json_object(cfg.prompts, "prompts")
    captions = read_json_object(cfg.captions, "captions") if cfg.captions else {}
    captioner = import_captioner(cfg.captioner) if cfg.captioner else None
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, collisions = list_images(Path(cfg.images_dir))
    progress = load_progress(out)
    finished = set(progress["finished"])
    kept = [s for s in progress["skipped"] if s["image"] in finished]  # unfinished images are retried
    progress = {**progress, "version": 1, "config": config_dict(cfg), "skipped": kept + collisions}
    todo = [p for p in images if p.name not in finished]
    if todo and model is None and needs_sam2(prompts):
        if not cfg.sam2_checkpoint:
            raise ConfigError("--sam2_checkpoint is required: the prompts file has clicks or boxes (only regions "
                              "given as {\"mask\": file} need no SAM2)")
        model = load_sam2(cfg.sam2_checkpoint, device=pick_device(cfg.device))
    written = 0
    for image in tqdm(todo, desc="regions", unit="image"):
        names, skipped = process_image(model, cfg, prompts, captions, captioner, image, out)
        for entry in skipped:
            region = "" if entry["region"] is None else f" region {entry['region']}"
            log.warning("skipped %s%s: %s", entry["image"], region, entry["reason"])
        progress["skipped"] += skipped
        if names:
            progress["finished"] = sorted({*progress["finished"], image.name})
            progress["samples"] = {**progress.get("samples", {}), image.name: names}
            written += len(names)
        atomic_json(out / PROGRESS, progress)
    atomic_json(out / PROGRESS, progress)
    return {"output_dir": str(out), "images": len(images), "finished": len(progress["finished"]),
            "already_finished": len(images) - len(todo), "samples_written": written,
            "samples_total": sum(len(v) for v in progress.get("samples", {}).values()),
            "skipped": progress["skipped"]}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # sam2 logs INFO on root
    config_path, argv = split_config_arg(sys.argv[1:] if argv is None else argv)
    cfg = build_config(RegionDatasetConfig, config_path or None, argv)
    print(json.dumps(build(cfg), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
