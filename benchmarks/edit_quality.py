"""TurboEdit's table on the learned world (its PIE-Bench table at toy scale): the edit rows of benchmarks.quality.

An edit case changes one attribute of a test scene (an object's colour or shape, or the first background colour);
the re-rendered scene is the ground truth. Every row inverts the source image under its detailed caption and
edits with the caption that names the new attribute, through core's functions (the ones the TurboEdit nodes
call): ``invert_exact`` / ``invert_with_encoder`` + ``sample_replay`` on the student, ``invert_ddim`` + Euler on
the teacher. Measures (per case, then means): edit success and the other attributes kept (the judge), PSNR
outside the changed pixels (against the source; object edits), PSNR to the ground truth, reconstruction PSNR (the
inversion replayed with the source caption), network passes counted per image (NFE) and seconds.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.world import sampling, scene
from benchmarks.world import models
from benchmarks.world.judge import MIN_VISIBLE, background_labels, bbox_region, predict
from core.attention_mask import edit_mask, soften_local_mask, token_attention
from core.caption_edit import changed_token_positions
from core.masks import grow, mask_for_latent
from core.turboedit import invert_ddim, invert_exact, invert_with_encoder, sample_replay

TRAINED = Path(__file__).resolve().parent / "world" / "trained"
CHANGED_GROW_PX = 2  # the changed pixels grown by 2 px: the ground-truth edit region (and its outside)
ATTENTION_THRESHOLD = 0.4  # TurboEdit Edit Sampler's defaults (nodes/turboedit.py)
MASK_BLUR = -1


# ------------------------------------------------------------------------------------------ cases


def edited_params(params: dict, case: dict) -> dict:
    """The scene parameters with the case's one attribute changed."""
    out = copy.deepcopy(params)
    if case["attribute"] == "background":
        out["background"]["colours"][0] = case["to"]
    elif case["attribute"] in ("colour", "shape"):
        out["objects"][int(case["object"])][case["attribute"]] = case["to"]
    else:
        raise ValueError(f"case {case['id']}: attribute {case['attribute']!r} is not colour, shape or background")
    return out


def scene_of(params: dict) -> dict:
    """A scene dict (as scene.scene gives) for given parameters."""
    return {"params": params, "caption": scene.caption(params), **scene.render(params)}


@dataclass
class EditBatch:
    cases: list[dict]
    sources: torch.Tensor  # (B,3,64,64) in 0..1
    targets: torch.Tensor  # the re-rendered edited scenes
    source_captions: list[str]
    target_captions: list[str]
    changed: torch.Tensor  # (B,1,64,64): pixels that differ between source and target, grown by CHANGED_GROW_PX
    reads: list[dict]  # per case: judge key → (region (64, 64) or None for the background, the true label)
    edited_keys: list[str]  # the judge's key of the edited attribute (colour_j, shape_j, bg_first)


def judge_reads(source: dict, target: dict) -> dict:
    """What the judge reads in an edited image and the target scene's truth: the background, and each object's
    shape and colour in the box around its source and target silhouettes grown by 3 px (a box, not the silhouette:
    the judge also reads shape from a region's outline, which would give a shape edit away)."""
    reads = {k: (None, v) for k, v in background_labels(target["params"]).items()
             if not (k == "bg_second" and v == models.NONE_COLOUR)}
    for i, obj in enumerate(target["params"]["objects"]):
        if target["visible_fraction"][i] < MIN_VISIBLE:
            continue
        box = bbox_region(np.maximum(source["visible"][i], target["visible"][i]), 3)
        reads[f"shape_{i}"] = (box, scene.SHAPES.index(obj["shape"]))
        reads[f"colour_{i}"] = (box, scene.COLOUR_NAMES.index(obj["colour"]))
    return reads


def materialise_edits(cases: list[dict]) -> EditBatch:
    """Source and target images, captions and the ground-truth change of world edit cases."""
    sources, targets, src_caps, tgt_caps, changed, items, keys = [], [], [], [], [], [], []
    for case in cases:
        if "seed" not in case:
            raise ValueError(f"case {case['id']}: an edit case needs a world scene 'seed' (its ground truth is the "
                             "re-rendered scene)")
        source = scene.scene(int(case["seed"]))
        target = scene_of(edited_params(source["params"], case))
        if target["caption"] == source["caption"]:
            raise ValueError(f"case {case['id']}: the edit changes nothing ({case['attribute']} is already "
                             f"{case['to']!r})")
        src, tgt = (torch.from_numpy(x["image"]).permute(2, 0, 1) for x in (source, target))
        sources.append(src)
        targets.append(tgt)
        src_caps.append(source["caption"])
        tgt_caps.append(target["caption"])
        changed.append(((src - tgt).abs().amax(0, keepdim=True) > 1e-3).float())
        items.append(judge_reads(source, target))
        keys.append("bg_first" if case["attribute"] == "background" else f"{case['attribute']}_{case['object']}")
    return EditBatch(cases, torch.stack(sources), torch.stack(targets), src_caps, tgt_caps,
                     grow(torch.stack(changed), CHANGED_GROW_PX), items, keys)


def changed_tokens(tokenizer, sources: list[str], targets: list[str]) -> list[list[int]]:
    """Per case: positions of the target caption's tokens that differ from the source's (Caption Editor's tokens)."""
    def ids(texts):
        return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True).input_ids

    return [changed_token_positions(s, t)[1] for s, t in zip(ids(sources), ids(targets))]


# ------------------------------------------------------------------------------------------ attention


class CrossAttentionRecorder:
    """A diffusers attention processor that records each sample's cross-attention to its changed tokens (what
    nodes/comfy_turboedit.py's AttentionRecorder does through ComfyUI's attention override), then attends as
    ``inner`` does."""

    def __init__(self, inner, tokens: list[list[int]], maps: list, state: dict):
        self.inner, self.tokens, self.maps, self.state = inner, tokens, maps, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if self.state["active"] and encoder_hidden_states is not None and hidden_states.ndim == 3:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross \
                else encoder_hidden_states
            q, k = attn.to_q(hidden_states), attn.to_k(context)
            self.maps.append(torch.cat([token_attention(q[b:b + 1], k[b:b + 1], attn.heads, self.tokens[b])
                                        for b in range(q.shape[0])]))
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class attention_mask_from:
    """Context manager: records the unet's cross-attention to ``tokens`` and gives ``mask_at`` for sample_replay
    (the step-0 maps → core.attention_mask.edit_mask with the Edit Sampler's defaults)."""

    def __init__(self, unet, tokens: list[list[int]], latent_hw: tuple[int, int]):
        self.unet, self.tokens, self.latent_hw = unet, tokens, latent_hw
        self.maps, self.state = [], {"active": True}

    def __enter__(self):
        self.saved = dict(self.unet.attn_processors)
        self.unet.set_attn_processor({name: CrossAttentionRecorder(p, self.tokens, self.maps, self.state)
                                      if name.endswith("attn2.processor") else p for name, p in self.saved.items()})
        return self

    def __exit__(self, *exc):
        self.unet.set_attn_processor(self.saved)

    def mask_at(self, step: int, x0: torch.Tensor) -> torch.Tensor:
        self.state["active"] = False
        return edit_mask(self.maps, self.latent_hw, threshold=ATTENTION_THRESHOLD, blur=MASK_BLUR).to(x0)


# ------------------------------------------------------------------------------------------ rows


@dataclass
class EditInputs:
    source: torch.Tensor  # latents (model space)
    cond_source: torch.Tensor
    cond_target: torch.Tensor
    tokens: list[list[int]]
    changed: torch.Tensor  # pixel mask (B,1,64,64) of the ground-truth change
    seed: int


@dataclass
class EditRow:
    name: str
    method: str
    inversion: str  # exact | encoder | ddim | none
    steps: int
    local_mask: str  # off | attention | ground truth | –
    run: Callable  # (world, EditInputs, meter) -> (edited latents, reconstruction latents or None)


def encoder_network(path: Path):
    """The TurboEdit encoder as trainers.turboedit exported it (its unet_config metadata: the student's UNet with
    2C channels); tests/test_world.py checks TurboEdit Encoder Loader's network gives the same inversion."""
    from diffusers import UNet2DConditionModel

    from core.weights import load_weights

    state, metadata = load_weights(path)
    unet = UNet2DConditionModel.from_config(metadata["unet_config"])
    unet.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return unet.float().eval()


class Meter:
    """Seconds and network passes of a row's inversion and of its edit, apart (the reconstruction is not metered).
    A pass is one forward of any UNet (student, teacher or encoder) on the batch: one NFE per image."""

    def __init__(self):
        self.seconds = {"invert": 0.0, "edit": 0.0}
        self.passes = {"invert": 0, "edit": 0}

    @contextlib.contextmanager
    def __call__(self, part: str):
        from diffusers import UNet2DConditionModel

        def count(module, *_):
            if isinstance(module, UNet2DConditionModel):
                self.passes[part] += 1

        handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t0
            handle.remove()


def student_model(world, cond: torch.Tensor):
    return sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)


def local_mask_of(kind: str, world, inputs: EditInputs):
    """(mask, attention context or None) of a row's local mask: none, the ground truth softened as the Edit
    Sampler softens a MASK input, or attention to the changed tokens."""
    if kind == "ground truth":
        return soften_local_mask(mask_for_latent(inputs.changed[:, 0], inputs.source.shape), MASK_BLUR), None
    if kind == "attention":
        return None, attention_mask_from(world.student, inputs.tokens, tuple(inputs.source.shape[-2:]))
    return None, None


def few_step_row(inversion: str, steps: int, local_mask: str, encoder_file: Optional[Path] = None) -> Callable:
    """Iterative Inverter (exact or encoder) → TurboEdit Edit Sampler on the student, cfg 1, the trailing grid."""
    cache: dict = {}

    def run(world, inputs: EditInputs, meter: Meter):
        from trainers.turboedit import encoder_fn

        sigmas = sampling.grid_sigmas(steps)
        source_model = student_model(world, inputs.cond_source)
        with meter("invert"):
            if inversion == "exact":
                traj = invert_exact(source_model, inputs.source, sigmas, {"seed": inputs.seed}, disable=True,
                                    generator=torch.Generator().manual_seed(inputs.seed))
            else:
                if "encoder" not in cache:
                    cache["encoder"] = encoder_network(encoder_file)
                encode = encoder_fn(cache["encoder"], sampling.SIGMA_TABLE,
                                    {"encoder_hidden_states": inputs.cond_source}, torch.float32)
                traj = invert_with_encoder(source_model, encode, inputs.source, sigmas, disable=True)
        with meter("edit"):
            mask, attention = local_mask_of(local_mask, world, inputs)
            target_model = student_model(world, inputs.cond_target)
            if attention is None:
                edited = sample_replay(target_model, inputs.source, sigmas, disable=True, trajectory=traj, mask=mask)
            else:
                with attention:
                    edited = sample_replay(target_model, inputs.source, sigmas, disable=True, trajectory=traj,
                                           mask_at=attention.mask_at)
        recon = sample_replay(source_model, inputs.source, sigmas, disable=True, trajectory=traj)
        return edited, recon

    return run


def ddim_teacher_row(steps: int = 50) -> Callable:
    """The multi-step baseline: deterministic DDIM inversion on the teacher under the source caption, then DDIM
    (Euler) sampling from the inverted noise with the target caption; cfg 1 both ways."""

    def run(world, inputs: EditInputs, meter: Meter):
        sigmas = sampling.grid_sigmas(steps)
        source_model = sampling.guided(sampling.unet_denoiser(world.teacher), inputs.cond_source, None, 1.0)
        target_model = sampling.guided(sampling.unet_denoiser(world.teacher), inputs.cond_target, None, 1.0)
        with meter("invert"):
            start = invert_ddim(source_model, inputs.source, sigmas, disable=True)
        with meter("edit"):
            edited = sampling.sample_euler(target_model, start, sigmas)[0]
        return edited, sampling.sample_euler(source_model, start, sigmas)[0]

    return run


def fresh_noise_row(steps: int = 4) -> Callable:
    """No inversion: the student samples the target caption from fresh seeded noise (what an edit must beat on
    keeping the image)."""

    def run(world, inputs: EditInputs, meter: Meter):
        with meter("edit"):
            return sampling.sample_student(student_model(world, inputs.cond_target), inputs.source.shape,
                                           inputs.seed, steps), None

    return run


def source_row() -> Callable:
    """The reference: the source itself through the VAE (the judge's and the VAE's ceiling; no edit)."""

    def run(world, inputs: EditInputs, meter: Meter):
        return inputs.source, inputs.source

    return run


TURBOEDIT_ENCODERS = {4: "turboedit_world.safetensors", 1: "turboedit_world_1step.safetensors"}
MASKS = {"off": "off", "attention": "attention", "gt_mask": "ground truth"}


def edit_rows() -> list[EditRow]:
    """TurboEdit's table: exact and encoder inversion at 4 steps (and the 1-step encoder), each without a local
    mask, with the attention mask and with the ground-truth mask; DDIM on the teacher; fresh noise; the source.
    Encoder rows whose file is absent are left out."""
    rows = [EditRow("edit_source", "the source through the VAE (no edit; ceiling)", "none", 0, "–", source_row()),
            EditRow("edit_fresh_4", "fresh noise + target caption (student)", "none", 4, "–", fresh_noise_row(4))]
    for suffix, mask in MASKS.items():
        rows.append(EditRow(f"edit_exact_4_{suffix}", "exact inversion + TurboEdit Edit Sampler", "exact", 4, mask,
                            few_step_row("exact", 4, mask)))
    for steps, file in TURBOEDIT_ENCODERS.items():
        if (TRAINED / file).is_file():
            rows += [EditRow(f"edit_encoder_{steps}_{suffix}", "TurboEdit encoder inversion + TurboEdit Edit Sampler",
                             "encoder", steps, mask, few_step_row("encoder", steps, mask, TRAINED / file))
                     for suffix, mask in MASKS.items()]
    rows.append(EditRow("edit_ddim_teacher_50", "50-step DDIM inversion + DDIM edit on the teacher (cfg 1)", "ddim",
                        50, "off", ddim_teacher_row(50)))
    return rows


# ------------------------------------------------------------------------------------------ metrics


def psnr(a: torch.Tensor, b: torch.Tensor, where: Optional[torch.Tensor] = None) -> float:
    diff = (a - b).pow(2)
    mse = float(diff[where.expand_as(diff)].mean()) if where is not None else float(diff.mean())
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def read_attributes(judge, batch: EditBatch, images: torch.Tensor) -> list[dict]:
    """Per case: judge key → (read label, true label), every read of every case in one batched judge call."""
    flat = [(n, key, region, truth) for n, reads in enumerate(batch.reads) for key, (region, truth) in reads.items()]
    blank = np.zeros((scene.SIZE, scene.SIZE), np.float32)
    regions = torch.from_numpy(np.stack([blank if r is None else r for _, _, r, _ in flat])).unsqueeze(1)
    got = predict(judge, images[torch.tensor([n for n, *_ in flat])], regions)
    out: list[dict] = [{} for _ in batch.cases]
    for j, (n, key, _, truth) in enumerate(flat):
        out[n][key] = (int(got[key.split("_")[0] if key.startswith(("shape", "colour")) else key][j]), truth)
    return out


def case_edit_metrics(world, batch: EditBatch, edited: torch.Tensor, recon: Optional[torch.Tensor]) -> list[dict]:
    """Per case: the edit as asked (judge), the other attributes as before (judge, against the target scene whose
    other attributes are the source's), PSNR outside the change (object edits only: a background edit changes
    nearly every pixel, the objects being all it keeps, which the judge reads) and to the ground truth,
    reconstruction PSNR."""
    reads = read_attributes(world.judge, batch, edited)
    out = []
    for n, case in enumerate(batch.cases):
        key = batch.edited_keys[n]
        others = [p == t for k, (p, t) in reads[n].items() if k != key]
        outside = batch.changed[n] < 0.5
        metrics = {"id": case["id"], "attribute": case["attribute"],
                   "edit_success": float(reads[n][key][0] == reads[n][key][1]),
                   "others_kept": float(np.mean(others)) if others else float("nan"),
                   "target_psnr_db": psnr(edited[n], batch.targets[n])}
        if case["attribute"] != "background":  # a background edit changes nearly every pixel: no outside to keep
            metrics["psnr_outside_db"] = psnr(edited[n], batch.sources[n], outside)
        if recon is not None:
            metrics["recon_psnr_db"] = psnr(recon[n], batch.sources[n])
        out.append(metrics)
    return out


def edit_inputs(world, batch: EditBatch, seed: int) -> EditInputs:
    """What every row takes: source latents, both captions encoded, the changed tokens and pixels."""
    return EditInputs(world.encode(batch.sources), world.cond(batch.source_captions),
                      world.cond(batch.target_captions),
                      changed_tokens(world.tokenizer, batch.source_captions, batch.target_captions),
                      batch.changed, seed)


def run_edit_rows(world, batch: EditBatch, rows: list[EditRow], seed: int,
                  images_out: Optional[dict] = None) -> list[dict]:
    """Every row on the batch: counted passes, seconds, per-case and mean metrics (and, into ``images_out``, each
    row's edited images by name)."""
    inputs = edit_inputs(world, batch, seed)
    results = []
    for row in rows:
        meter = Meter()
        with torch.no_grad():
            edited, recon = row.run(world, inputs, meter)
        images = world.decode(edited)
        if images_out is not None:
            images_out[row.name] = images
        per_case = case_edit_metrics(world, batch, images, None if recon is None else world.decode(recon))
        metrics = {k: float(np.nanmean([c[k] for c in per_case if k in c]))
                   for k in ("edit_success", "others_kept", "psnr_outside_db", "target_psnr_db", "recon_psnr_db")
                   if any(k in c for c in per_case)}
        metrics["edit_success_by_attribute"] = {
            a: float(np.mean([c["edit_success"] for c in per_case if c["attribute"] == a]))
            for a in ("colour", "shape", "background") if any(c["attribute"] == a for c in per_case)}
        results.append({"task": "edit", "name": row.name, "method": row.method, "inversion": row.inversion,
                        "steps": row.steps, "local_mask": row.local_mask,
                        "nfe": meter.passes["invert"] + meter.passes["edit"], "nfe_invert": meter.passes["invert"],
                        "nfe_edit": meter.passes["edit"],
                        "seconds": round(meter.seconds["invert"] + meter.seconds["edit"], 3),
                        "seconds_invert_per_image": round(meter.seconds["invert"] / len(batch.cases), 4),
                        "seconds_edit_per_image": round(meter.seconds["edit"] / len(batch.cases), 4),
                        "metrics": metrics, "per_case": per_case})
    return results


def edit_markdown(rows: list[dict], cases: int) -> list[str]:
    """The edit table's lines for quality.md."""
    lines = ["", f"Edits ({cases} cases: an object's colour, an object's shape, the background colour; TurboEdit's "
             "table at toy scale):", "",
             "| row | inversion | steps | local mask | NFE invert | NFE edit | edit success (colour / shape / bg) "
             "| others kept | PSNR outside dB (object edits) | target PSNR dB | recon PSNR dB | s invert | s edit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        parts = " / ".join(f"{m['edit_success_by_attribute'][a]:.2f}" for a in ("colour", "shape", "background")
                           if a in m["edit_success_by_attribute"])
        recon = f"{m['recon_psnr_db']:.2f}" if "recon_psnr_db" in m else "–"
        lines.append(f"| {r['name']} | {r['inversion']} | {r['steps']} | {r['local_mask']} | {r['nfe_invert']} | "
                     f"{r['nfe_edit']} | {m['edit_success']:.3f} ({parts}) | {m['others_kept']:.3f} | "
                     f"{m['psnr_outside_db']:.2f} | {m['target_psnr_db']:.2f} | {recon} | "
                     f"{r['seconds_invert_per_image']:.4f} | {r['seconds_edit_per_image']:.4f} |")
    return lines




def edit_contact_sheet(path: Path, batch: EditBatch, images: dict, limit: int = 12) -> None:
    """Per case (first ``limit``): source | ground-truth target | changed pixels | every row's edit, 64 px tiles."""
    from PIL import Image

    lines = []
    for n in range(min(limit, len(batch.cases))):
        tiles = [batch.sources[n], batch.targets[n], batch.changed[n].expand(3, -1, -1)]
        tiles += [edited[n].clamp(0, 1) for edited in images.values()]
        lines.append(torch.cat([F.pad(t, (1, 1, 1, 1), value=1.0) for t in tiles], dim=2))
    array = (torch.cat(lines, dim=1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(array).save(tmp)
    tmp.replace(path)
