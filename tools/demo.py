"""See the pack work in one command, with no download and no ComfyUI: inpaint and edit on the committed world.

    python -m tools.demo [--out DIR] [--count 4]
    python -m tools.demo --image photo.png --mask hole.png --prompt "a red circle …" [--edit "red → blue"]

On the committed learned world (benchmarks/world: a 64×64 few-step student, its VAE and text encoder), through
the same core/ functions the nodes call: inpaints held-out images (or yours, resized to 64×64) with the
no-extra-weights path (FewStep Blended Sampler + Re-Blend, 4 steps, Exact Composite) and with every trained
method whose weights are in benchmarks/world/trained (InverFill, TurboFill, RAD), then makes one TurboEdit edit
(exact inversion, the attention mask). Writes before/after PNGs and contact sheets to DIR and prints where they
are and how long each method took.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROWS = {  # name → (what it is, the committed weight file it needs or None)
    "fewstep": ("FewStep Blended Sampler + Re-Blend, no extra weights", None),
    "inverfill": ("InverFill: Inverse Noise Init + FewStep Blended Sampler", "inverfill_world.safetensors"),
    "turbofill": ("TurboFill adapter + FewStep Blended Sampler", "turbofill_world.safetensors"),
    "rad": ("Region-Aware Sampler + RAD LoRA", "rad_world.safetensors"),
}
EDIT = "color: blue"  # the edit of --image when --edit is not given


def inpaint_rows(trained: Path) -> list:
    """The no-weights row and each trained method whose file is present, as benchmarks.quality builds them."""
    from benchmarks import quality

    makers = {"fewstep": lambda f: quality.fewstep_row(4, reblend=True),
              "inverfill": lambda f: quality.inverfill_row(4, f), "turbofill": lambda f: quality.turbofill_row(4, f),
              "rad": lambda f: quality.rad_row(4, f)}
    rows = []
    for name, (method, file) in ROWS.items():
        if file is None or (trained / file).is_file():
            rows.append(quality.Row(name, method, 4, 4, makers[name](trained / file if file else None),
                                    needs_images=name in ("inverfill", "turbofill")))
    return rows


def save_png(path: Path, image_chw: torch.Tensor) -> None:
    """A (3,H,W) or (1,H,W) image in 0..1 as a PNG, written to a temporary name first."""
    from PIL import Image

    array = (image_chw.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(tmp)
    os.replace(tmp, path)


def read_user_case(image: str, mask: str, prompt: str) -> dict:
    """A case of the user's own files, checked with errors that name the option."""
    from PIL import Image, UnidentifiedImageError

    for option, path in (("--image", image), ("--mask", mask)):
        if not Path(path).is_file():
            raise ValueError(f"{option}: {path} does not exist")
        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{option}: {path} is not an image ({err})") from None
    with Image.open(image) as img, Image.open(mask) as hole:
        if abs(img.width / img.height - hole.width / hole.height) > 0.02:
            raise ValueError(f"--mask: {hole.width}×{hole.height} has another aspect than the image "
                             f"({img.width}×{img.height})")
        if img.width != img.height:
            print(f"note: {image} is {img.width}×{img.height}; the world's model is 64×64, so it is resized to that")
    if not prompt.strip():
        raise ValueError("--prompt: empty; describe what goes in the hole (and, for the edit, the whole image)")
    return {"id": "yours", "task": "inpaint", "image": str(image), "mask": str(mask), "prompt": prompt,
            "fidelity": False}


def run_inpaint(world, batch, rows, out: Path) -> dict:
    """Each row on the batch, composited exactly over the input; PNGs per case and row; seconds per row."""
    from tqdm.auto import tqdm

    from benchmarks import quality
    from core.composite import exact_composite

    images, seconds = {}, {}
    for row in tqdm(rows, desc="inpaint", unit="method"):
        t0 = time.perf_counter()
        _, generated = quality.row_images(world, batch, row)
        seconds[row.name] = time.perf_counter() - t0
        images[row.name] = generated
        for n, case in enumerate(batch.cases):
            composite, _ = exact_composite(batch.images[n:n + 1].permute(0, 2, 3, 1),
                                           generated[n:n + 1].permute(0, 2, 3, 1), batch.masks[n], **quality.COMPOSITE)
            save_png(out / f"{case['id']}_{row.name}.png", composite[0].permute(2, 0, 1))
    for n, case in enumerate(batch.cases):
        save_png(out / f"{case['id']}_input.png", batch.images[n])
        save_png(out / f"{case['id']}_mask.png", batch.masks[n])
    quality.contact_sheet(out / "contact_sheet.png", batch, images)
    return seconds


def run_edit(world, image_chw: torch.Tensor, source: str, target: str, out: Path, seed: int = 1234) -> float:
    """One TurboEdit edit: exact inversion (4 passes) under ``source`` and replay with ``target``, the attention
    mask on the changed tokens (Iterative Inverter + TurboEdit Edit Sampler's path, benchmarks.edit_quality)."""
    from benchmarks import edit_quality

    inputs = edit_quality.EditInputs(
        world.encode(image_chw[None]), world.cond([source]), world.cond([target]),
        edit_quality.changed_tokens(world.tokenizer, [source], [target]), torch.zeros(1, 1, *image_chw.shape[-2:]),
        seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        edited, _ = edit_quality.few_step_row("exact", 4, "attention")(world, inputs, edit_quality.Meter())
    seconds = time.perf_counter() - t0
    after, through_vae = world.decode(edited)[0], world.decode(inputs.source)[0]
    save_png(out / "edit_before.png", image_chw)
    save_png(out / "edit_after.png", after)
    tiles = (image_chw, through_vae, after)  # the VAE round trip shows which blur is the VAE's, not the edit's
    save_png(out / "edit_contact_sheet.png", torch.cat([torch.nn.functional.pad(t, (1, 1, 1, 1), value=1.0)
                                                        for t in tiles], dim=2))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/demo", help="folder for the PNGs (default: outputs/demo)")
    parser.add_argument("--count", type=int, default=4, help="held-out world images to inpaint (1–48, default 4)")
    parser.add_argument("--image", help="your own image (resized to 64×64), with --mask and --prompt")
    parser.add_argument("--mask", help="your mask, same aspect as the image: white = the hole to regenerate")
    parser.add_argument("--prompt", help="with --image: what goes in the hole; also the caption the edit changes")
    parser.add_argument("--edit", help=f"with --image: the TurboEdit edit of --prompt, 'old → new' (default {EDIT!r})")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    own = [args.image, args.mask, args.prompt]
    if any(own) and not all(own):
        parser.error("--image, --mask and --prompt go together (your image, its hole, and what to put there)")
    if args.edit and not args.image:
        parser.error("--edit goes with --image and --prompt (the world's own edit needs no options)")
    if not 1 <= args.count <= 48:
        parser.error(f"--count: {args.count} is not in 1..48")
    torch.set_num_threads(args.threads)

    from benchmarks import edit_quality, quality

    try:
        cases = [read_user_case(args.image, args.mask, args.prompt)] if args.image else \
            [c for c in quality.default_cases(max(args.count, 1)) if c["task"] == "inpaint"][:args.count]
    except ValueError as err:
        parser.error(str(err))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = quality.load_world()
    loaded = time.perf_counter() - t0
    batch = quality.materialise(cases)
    rows = inpaint_rows(quality.TRAINED)
    seconds = run_inpaint(world, batch, rows, out)
    if args.image:
        from core.caption_edit import CaptionEditError, apply_edit

        try:
            change = apply_edit(args.prompt, args.edit or EDIT)
        except CaptionEditError as err:
            parser.error(f"--edit: {err} (the caption is --prompt)")
        source, target, image = change.source, change.target, batch.images[0]
    else:  # a held-out world scene and one attribute of it changed (benchmarks.quality's edit cases)
        edits = edit_quality.materialise_edits(quality.default_edit_cases(1))
        source, target, image = edits.source_captions[0], edits.target_captions[0], edits.sources[0]
    edit_seconds = run_edit(world, image, source, target, out)

    print(f"world loaded in {loaded:.1f} s (benchmarks/world/weights; {len(batch.cases)} image(s), 64×64)")
    for row in rows:
        print(f"  {row.method}: {seconds[row.name]:.2f} s for {len(batch.cases)} image(s)")
    print(f"  TurboEdit edit (exact inversion, attention mask): {edit_seconds:.2f} s")
    print(f"inpainted: {out}/<case>_<method>.png beside <case>_input.png and <case>_mask.png")
    print(f"contact sheet (input | mask | {' | '.join(r.name for r in rows)}): {out / 'contact_sheet.png'}")
    print(f"edit: {out / 'edit_before.png'} → {out / 'edit_after.png'} (sheet: before | through the VAE | after: "
          f"{out / 'edit_contact_sheet.png'})\n  \"{source}\"\n  → \"{target}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
