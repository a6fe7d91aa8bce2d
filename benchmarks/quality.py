"""Quality benchmark on the learned world (InverFill Table 1 / TurboFill Table 1 / TurboEdit's PIE-Bench, at toy scale).

    python -m benchmarks.quality [--cases FILE] [--out DIR] [--rows NAMES] [--world DIR] [--trained DIR]
                                 [--write-cases FILE]

Every row runs through the pack's core/ functions (the ones the nodes call) on the committed world
(benchmarks/world/weights): the few-step student, the 50-step teacher, the VAE, and the judge that scores
semantics; trained rows load the method weights the pack's trainers made on it (benchmarks/world/trained).
Edit cases run TurboEdit's rows (benchmarks/edit_quality.py). Writes DIR/quality.json, DIR/quality.md (the tables),
DIR/contact_sheet.png (per inpainting case: input | mask | every row) and DIR/edit_contact_sheet.png (per edit:
source | target | changed pixels | every edit row). The case format is documented in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import edit_quality  # noqa: E402
from benchmarks.world import WEIGHTS, models, sampling, scene  # noqa: E402
from benchmarks.world.judge import bbox_region, empty_box, region_matches  # noqa: E402
from core.blend import clear_hole, reblend_noise  # noqa: E402
from core.composite import exact_composite  # noqa: E402
from core.inverfill import black_out, blended_start, invert, sampler_noise_for_start  # noqa: E402
from core.masks import mask_for_latent  # noqa: E402
from core.prefill import prefill  # noqa: E402
from core.rad import region_aware_denoise, sample_region_aware, sigma_maps  # noqa: E402
from core.samplers import sample_fewstep_blended, seeded_noise_sampler, ve_renoise  # noqa: E402
from core.schedules import trailing_timesteps  # noqa: E402

CASE_SEED_OFFSET = 10_000  # evaluation cases use test-split scenes 10 000+ (caption agreement uses 0..255)
ROW_SEED = 1234
COMPOSITE = {"grow_px": 0, "feather_px": 4, "color_match": 1.0}  # Exact Composite's node defaults (nodes/composite.py)


# ------------------------------------------------------------------------------------------ the world


@dataclass
class World:
    vae: torch.nn.Module
    text: torch.nn.Module
    tokenizer: object
    student: torch.nn.Module
    teacher: torch.nn.Module
    judge: torch.nn.Module
    scaling_factor: float
    summary: dict = field(default_factory=dict)

    def encode(self, images_bchw: torch.Tensor) -> torch.Tensor:
        """Scaled latents (posterior mean × scaling factor) of images in 0..1."""
        with torch.no_grad():
            return self.vae.encode(images_bchw * 2 - 1).latent_dist.mean * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ((self.vae.decode(latents / self.scaling_factor).sample + 1) / 2).clamp(0, 1)

    def cond(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return sampling.encode_text(self.text, self.tokenizer, prompts)


def load_world(folder: str | Path = WEIGHTS) -> World:
    """The committed world: turbo/ (student, the few-step base), teacher/, judge.safetensors, world.json."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from core.weights import load_weights

    folder = Path(folder)
    if not (folder / "turbo" / "unet").is_dir():
        raise FileNotFoundError(f"{folder}: no built world (turbo/unet); "
                                f"run python -m benchmarks.world build --out {folder}")
    kw = {"torch_dtype": torch.float32, "local_files_only": True}
    vae = AutoencoderKL.from_pretrained(folder / "turbo" / "vae", **kw).eval()
    judge = models.Judge()
    judge.load_state_dict(load_weights(folder / "judge.safetensors")[0])
    summary = json.loads((folder / "world.json").read_text()) if (folder / "world.json").is_file() else {}
    return World(vae=vae, text=CLIPTextModel.from_pretrained(folder / "turbo" / "text_encoder", **kw).eval(),
                 tokenizer=CLIPTokenizer.from_pretrained(folder / "turbo" / "tokenizer", local_files_only=True),
                 student=UNet2DConditionModel.from_pretrained(folder / "turbo" / "unet", **kw).eval(),
                 teacher=UNet2DConditionModel.from_pretrained(folder / "teacher" / "unet", **kw).eval(),
                 judge=judge.eval(), scaling_factor=float(vae.config.scaling_factor), summary=summary)


# ------------------------------------------------------------------------------------------ cases


def default_cases(count: int = 48) -> list[dict]:
    """The fixed evaluation set: held-out test scenes, a third each of holes over background only, over part of
    an object (one half of its box) and over a whole object (its box grown by 3 px); plus ``count`` edit cases."""
    cases, i = [], 0
    kinds = ["background", "object_part", "object"]
    while len(cases) < count:
        seed = scene.seed_of("test", CASE_SEED_OFFSET + i)
        i += 1
        item = scene.scene(seed)
        kind = kinds[len(cases) % 3]
        rng = np.random.default_rng(seed)
        if kind == "background":
            box = empty_box(item, rng)
            if box is None:
                continue
            cases.append({"id": f"background-{seed}", "task": "inpaint", "seed": seed, "box": _box_of(box),
                          "expect": {"shape": "none"}, "fidelity": True})
            continue
        whole = [j for j, f in enumerate(item["visible_fraction"]) if f >= 0.95]
        if not whole:
            continue
        j = int(rng.choice(whole))
        obj = item["params"]["objects"][j]
        x0, y0, x1, y1 = _box_of(bbox_region(item["visible"][j], 3))
        if kind == "object_part":
            half = ["left", "right", "top", "bottom"][int(rng.integers(4))]
            mid_x, mid_y = (x0 + x1) // 2, (y0 + y1) // 2
            x0, x1 = (x0, mid_x) if half == "left" else (mid_x, x1) if half == "right" else (x0, x1)
            y0, y1 = (y0, mid_y) if half == "top" else (mid_y, y1) if half == "bottom" else (y0, y1)
            cases.append({"id": f"part-{seed}", "task": "inpaint", "seed": seed, "box": [x0, y0, x1, y1],
                          "expect": None, "fidelity": True})
        else:
            cases.append({"id": f"object-{seed}", "task": "inpaint", "seed": seed, "box": [x0, y0, x1, y1],
                          "expect": {"shape": obj["shape"], "colour": obj["colour"]}, "fidelity": True})
    return cases + default_edit_cases(count)


def default_edit_cases(count: int) -> list[dict]:
    """Edit cases, a third each: the colour or the shape of one whole-visible object, or the first background
    colour, changed to another; the target image is the re-rendered scene, so every edit has ground truth
    (benchmarks/edit_quality.py)."""
    cases, i = [], 0
    attributes = ["colour", "shape", "background"]
    while len(cases) < count:
        seed = scene.seed_of("test", CASE_SEED_OFFSET + 5000 + i)
        i += 1
        item = scene.scene(seed)
        rng = np.random.default_rng(seed)
        attribute = attributes[len(cases) % 3]
        bg = item["params"]["background"]["colours"]
        case = {"id": f"edit-{seed}", "task": "edit", "seed": seed, "attribute": attribute}
        if attribute == "background":
            used = set(bg) | {o["colour"] for o in item["params"]["objects"]}
            choices = [c for c in scene.COLOUR_NAMES if c not in used]
        else:
            whole = [j for j, f in enumerate(item["visible_fraction"]) if f >= 0.95]
            if not whole:
                continue
            j = int(rng.choice(whole))
            obj = item["params"]["objects"][j]
            case["object"] = j
            choices = [c for c in scene.COLOUR_NAMES if c not in bg and c != obj["colour"]] \
                if attribute == "colour" else [s for s in scene.SHAPES if s != obj["shape"]]
        if not choices:
            continue
        cases.append({**case, "to": str(rng.choice(choices))})
    return cases


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask > 0.5)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def load_cases(path: str | Path) -> list[dict]:
    """Cases from a JSON file ({"cases": [...]}, docs/benchmarks.md, the case format); relative image paths resolve
    against the file's folder."""
    path = Path(path)
    data = json.loads(path.read_text())
    cases = data["cases"] if isinstance(data, dict) else data
    for n, case in enumerate(cases):
        case.setdefault("id", f"case-{n}")
        task = case.setdefault("task", "inpaint")
        if task not in ("inpaint", "edit"):
            raise ValueError(f"{path}: case {case['id']}: task {task!r} is not inpaint or edit")
        if "seed" not in case and "image" not in case:
            raise ValueError(f"{path}: case {case['id']}: give a world scene 'seed' or an 'image' file")
        if task == "inpaint" and "box" not in case and "mask" not in case:
            raise ValueError(f"{path}: case {case['id']}: give a 'box' [x0, y0, x1, y1] or a 'mask' file")
        for key in ("image", "mask"):
            if key in case and not Path(case[key]).is_absolute():
                case[key] = str(path.parent / case[key])
    return cases


@dataclass
class Batch:
    cases: list[dict]
    images: torch.Tensor  # (B,3,64,64) in 0..1
    masks: torch.Tensor  # (B,1,64,64), 1 = regenerate
    prompts: list[str]
    truth: torch.Tensor | None  # ground-truth images where the hole's content is fixed by the scene
    fidelity: list[bool]
    expect: list[dict | None]


def materialise(cases: list[dict]) -> Batch:
    """Images, masks and prompts of inpainting cases."""
    images, masks, prompts, fidelity, expect = [], [], [], [], []
    for case in cases:
        if "seed" in case:
            item = scene.scene(int(case["seed"]))
            image = torch.from_numpy(item["image"]).permute(2, 0, 1)
            prompt = case.get("prompt", item["caption"])
        else:
            image = _read_png(case["image"], 3)
            prompt = case["prompt"]
        mask = torch.zeros(1, *image.shape[-2:])
        if "box" in case:
            x0, y0, x1, y1 = case["box"]
            mask[:, y0:y1, x0:x1] = 1
        else:
            mask = (_read_png(case["mask"], 1) > 0.5).float()
        images.append(image)
        masks.append(mask)
        prompts.append(prompt)
        fidelity.append(bool(case.get("fidelity", "seed" in case)))
        expect.append(case.get("expect"))
    images_t = torch.stack(images)
    return Batch(cases, images_t, torch.stack(masks), prompts, images_t.clone(), fidelity, expect)


def _read_png(path: str, channels: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L").resize((scene.SIZE, scene.SIZE))
        array = np.asarray(img, dtype=np.float32) / 255.0
    t = torch.from_numpy(array)
    return t.permute(2, 0, 1) if channels == 3 else t.unsqueeze(0)


# ------------------------------------------------------------------------------------------ rows


@dataclass
class Row:
    name: str
    method: str
    steps: int
    nfe: int
    run: Callable  # (world, source latents, pixel masks (B,1,H,W), cond, uncond, seed[, images=]) -> latents
    needs_images: bool = False  # run also takes images= (B,3,H,W) in 0..1, e.g. to encode the masked image


def latent_mask(masks: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """The pixel mask at latent size, as ComfyUI's prepare_mask gives a sampler its denoise_mask (bilinear)."""
    return F.interpolate(masks, size=latents.shape[-2:], mode="bilinear")


def fewstep_row(steps: int, hole_init: str = "source", known_noise: str = "fresh", reblend: bool = False,
                teacher_steps: int = 0) -> Callable:
    """The FewStep Blended Sampler's path (nodes/comfy_sampler.py) on the student: start, then core's sampler."""

    def run(world, source, pixel_mask, cond, uncond, seed):
        mask = latent_mask(pixel_mask, source)
        sigmas = sampling.grid_sigmas(steps)
        noise, _ = sampling.start_noise(source.shape, seed, sigmas[0])
        if reblend:  # Re-Blend: the hole's noise is a second seeded draw (nodes/noise.py)
            fresh, _ = sampling.start_noise(source.shape, seed + 1, sigmas[0])
            noise = reblend_noise(noise, fresh, mask_for_latent(pixel_mask[:, 0], source.shape))
        start = clear_hole(source, mask) if hole_init == "noise" else source
        x = ve_renoise(torch.sqrt(1 + sigmas[0] ** 2), noise, start)  # ComfyUI's noise_scaling at full denoise
        model = sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)
        return sample_fewstep_blended(model, x, sigmas, {"seed": seed}, disable=True, source=source, mask=mask,
                                      noise_sampler=seeded_noise_sampler(x, seed),
                                      known_noise=noise if known_noise == "start" else None)

    return run


def prefill_row(steps: int, mode: str) -> Callable:
    """FewStep Crop's ``prefill`` (core.prefill) on the image before it is encoded, then :func:`fewstep_row`."""
    blended = fewstep_row(steps)

    def run(world, source, pixel_mask, cond, uncond, seed, images):
        filled = prefill(images.permute(0, 2, 3, 1), pixel_mask[:, 0], mode).permute(0, 3, 1, 2)
        return blended(world, world.encode(filled), pixel_mask, cond, uncond, seed)

    return run


class X0Inpaint:
    """ComfyUI's KSamplerX0Inpaint reproduced: before each call the known region is z + σ·n (the start NOISE),
    after it the prediction is blended with z."""

    def __init__(self, model, source, mask, noise):
        self.model, self.source, self.mask, self.noise = model, source, mask, noise

    def __call__(self, x, sigma, **kw):
        m = self.mask
        s = sigma.reshape(-1, 1, 1, 1)
        x = x * m + (self.source + s * self.noise) * (1 - m)
        out = self.model(x, sigma, **kw)
        return out * m + self.source * (1 - m)


def core_blend_row(steps: int, teacher: bool = False, cfg_scale: float = 3.0) -> Callable:
    """Core ComfyUI inpainting: KSampler + Set Latent Noise Mask. Student: the ``lcm`` sampler (x̂0, fresh noise);
    teacher: ``euler`` with CFG. Start x = z + √(1+σ0²)·n, as ComfyUI at full denoise."""

    def run(world, source, pixel_mask, cond, uncond, seed):
        mask = latent_mask(pixel_mask, source)
        sigmas = sampling.grid_sigmas(steps)
        noise, _ = sampling.start_noise(source.shape, seed, sigmas[0])
        x = source + torch.sqrt(1 + sigmas[0] ** 2) * noise
        unet = world.teacher if teacher else world.student
        inner = sampling.guided(sampling.unet_denoiser(unet), cond, uncond if teacher else None,
                                cfg_scale if teacher else 1.0)
        model = X0Inpaint(inner, source, mask, noise)
        if teacher:
            out = sampling.sample_euler(model, x, sigmas)[0]
        else:
            out = sample_fewstep_blended(model, x, sigmas, {"seed": seed}, disable=True,
                                         noise_sampler=seeded_noise_sampler(x, seed))
        return torch.where(mask == 0, source, out)

    return run


def repaint_row(steps: int, resample: int, teacher: bool = False, cfg_scale: float = 3.0) -> Callable:
    """RePaint's resampling loop (Lugmayr et al. 2022, jump length 1), the baseline of RAD's speed claim, as
    benchmarks/rad_overhead.py runs it in ComfyUI: at every σ_i the step to σ_{i+1} is taken ``resample`` times,
    each but the last followed by re-noising back to σ_i; the known region is blended before and after every call
    as core's KSamplerX0Inpaint. Student: the x̂0 + fresh-noise step; teacher: Euler, with CFG."""

    def run(world, source, pixel_mask, cond, uncond, seed):
        mask = latent_mask(pixel_mask, source)
        sigmas = sampling.grid_sigmas(steps)
        noise, _ = sampling.start_noise(source.shape, seed, sigmas[0])
        generator = torch.Generator().manual_seed(seed + 1)
        unet = world.teacher if teacher else world.student
        inner = sampling.guided(sampling.unet_denoiser(unet), cond, uncond if teacher else None,
                                cfg_scale if teacher else 1.0)
        model = X0Inpaint(inner, source, mask, noise)
        x = source + torch.sqrt(1 + sigmas[0] ** 2) * noise
        s_in = x.new_ones(x.shape[0])
        for i in range(len(sigmas) - 1):
            hi, lo = sigmas[i], sigmas[i + 1]
            for u in range(resample):
                denoised = model(x, hi * s_in)
                if teacher:
                    x = x + (lo - hi) * (x - denoised) / hi
                else:
                    x = denoised + lo * torch.randn(x.shape, generator=generator) if lo > 0 else denoised
                if u < resample - 1:
                    x = x + torch.sqrt(hi ** 2 - lo ** 2) * torch.randn(x.shape, generator=generator)
        return torch.where(mask == 0, source, x)

    return run


TRAINED = REPO / "benchmarks" / "world" / "trained"  # method weights trained on the world by the pack's trainers
RAD_LORAS = {"rad_4_lora": ("rad_world.safetensors", "Region-Aware Sampler + RAD LoRA (Perlin masks)"),
             "rad_4_lora_pixel": ("rad_world_pixel.safetensors",
                                  "Region-Aware Sampler + RAD LoRA (independent-pixel masks, RAD's ablation)")}


def student_with_lora(world, path: Path, strength: float = 1.0):
    """A copy of the world's student with a RAD file (kohya LoRA + time-layer diffs) merged in with ComfyUI
    LoraLoader's arithmetic (core.lora.merge_lora); tests/test_world.py checks the node path gives the same."""
    import copy

    from core.lora import merge_lora
    from core.weights import load_weights

    state, _ = load_weights(path)
    unet = copy.deepcopy(world.student)
    merge_lora(unet, state, strength)
    return unet.eval()


def rad_row(steps: int, lora: Path | None = None) -> Callable:
    """Region-Aware Sampler (nodes/rad.py): per-pixel σ maps on the student's time layers, without a LoRA or with
    the RAD file ``lora`` (trainers.rad's output) merged in."""
    from trainers.common.unet_walk import spatial_forward

    cache: dict = {}

    def run(world, source, pixel_mask, cond, uncond, seed):
        if lora is not None and "unet" not in cache:
            cache["unet"] = student_with_lora(world, lora)
        unet = cache.get("unet", world.student)
        alphas = sampling.scaled_linear_alphas_cumprod()
        timesteps = trailing_timesteps(steps)
        m = mask_for_latent(pixel_mask[:, 0], source.shape)
        maps = [s.expand(source.shape[0], -1, -1, -1) for s in sigma_maps(alphas, timesteps, m)]
        sigmas = sampling.grid_sigmas(steps)
        generator = torch.Generator().manual_seed(seed)

        def eps_fn(x, tau, **c):
            return spatial_forward(unet, x, tau, cond)

        def model(x, smap, **kw):
            return region_aware_denoise(eps_fn, x, smap.to(x), sampling.SIGMA_TABLE)

        with torch.no_grad():
            return sample_region_aware(model, source, sigmas, disable=True, source=source, maps=maps,
                                       noise_sampler=lambda i: torch.randn(source.shape, generator=generator))

    return run


INVERFILL_NETS = {
    "inverfill": ("inverfill_world.safetensors", "InverFill (Inverse Noise Init) + FewStep Blended Sampler"),
    "inverfill_4_no_reg": ("inverfill_world_no_reg.safetensors", "InverFill trained without L_reg (Table 2)"),
    "inverfill_4_no_reblend": ("inverfill_world_no_reblend.safetensors",
                               "InverFill trained without Re-Blend (Figs. 5–6)"),
    "inverfill_4_no_adv": ("inverfill_world_no_adv.safetensors", "InverFill trained without the adversarial term"),
}


def inversion_network(world, path: Path):
    """F as trainers.inverfill exported it: diffusers UNet keys in the student's architecture (what InverFill
    Loader rebuilds in the MODEL's own; tests/test_world.py checks the node path gives the same)."""
    import copy

    from core.weights import load_weights

    state, _ = load_weights(path)
    unet = copy.deepcopy(world.student)
    unet.load_state_dict(state)
    return unet.eval()


def inverfill_row(steps: int, network: Path) -> Callable:
    """Inverse Noise Init (nodes/comfy_inverfill.py) → FewStep Blended Sampler, known_noise start: ẑ_T = F(E(image
    with the hole black), 500, c), Re-Blend with the seeded ε′, the NOISE that starts the sampler exactly at
    ẑ_T^blend and re-noises the known region with it (docs/methods.md §1.3)."""
    from trainers.common.base_model import unet_eps_fn

    cache: dict = {}

    def run(world, source, pixel_mask, cond, uncond, seed, images):
        if "f" not in cache:
            cache["f"] = inversion_network(world, network)
        sigmas = sampling.grid_sigmas(steps)
        fresh, _ = sampling.start_noise(source.shape, seed, sigmas[0])
        masked = world.encode(black_out(images, pixel_mask))
        inverted = invert(unet_eps_fn(cache["f"]), masked, encoder_hidden_states=cond)
        vp_start = blended_start(inverted, fresh, mask_for_latent(pixel_mask[:, 0], source.shape))
        regenerate = latent_mask(pixel_mask, source)
        noise = sampler_noise_for_start(vp_start, source, float(sigmas[0]), True, regenerate)
        x = ve_renoise(torch.sqrt(1 + sigmas[0] ** 2), noise, source)
        model = sampling.guided(sampling.unet_denoiser(world.student), cond, None, 1.0)
        return sample_fewstep_blended(model, x, sigmas, {"seed": seed}, disable=True, source=source,
                                      mask=regenerate, noise_sampler=seeded_noise_sampler(x, seed), known_noise=noise)

    return run


def inverfill_rows() -> list[Row]:
    """InverFill Table 1 at toy scale: the trained F at 1, 2 and 4 steps (baseline: fewstep_N_known_start, the
    same sampler from plain seeded noise), and the ablations' networks at 4 steps; rows whose file is absent are
    left out. NFE counts F's pass."""
    rows = []
    file, method = INVERFILL_NETS["inverfill"]
    if (TRAINED / file).is_file():
        rows += [Row(f"inverfill_{n}", method, n, n + 1, inverfill_row(n, TRAINED / file), needs_images=True)
                 for n in (1, 2, 4)]
    rows += [Row(name, method, 4, 5, inverfill_row(4, TRAINED / file), needs_images=True)
             for name, (file, method) in INVERFILL_NETS.items() if name != "inverfill" and (TRAINED / file).is_file()]
    return rows


TURBOFILL_ADAPTERS = {
    "turbofill_4": ("turbofill_world.safetensors", "TurboFill adapter + FewStep Blended Sampler"),
    "turbofill_4_no_bg": ("turbofill_world_no_bg.safetensors", "TurboFill trained without L_BG (Table 3)"),
    "turbofill_4_no_fake_diff": ("turbofill_world_no_fake_diff.safetensors",
                                 "TurboFill trained without the fake diffusion loss (Table 3)"),
    "turbofill_4_no_real_diff": ("turbofill_world_no_real_diff.safetensors",
                                 "TurboFill trained without the real diffusion loss (Table 3)"),
    "turbofill_4_teacher_only": ("turbofill_world_teacher_only.safetensors",
                                 "adapter trained on the teacher only, used on the student (BrushNet moved)"),
    "turbofill_4_bg_regions": ("turbofill_world_bg_regions.safetensors",
                               "TurboFill trained on object and background-box regions (our data variant)"),
}


def turbofill_adapter(path: Path):
    """The adapter as trainers.turbofill exported it (its adapter_config metadata, strict keys), as TurboFill
    Loader builds it; tests/test_world.py checks the node path gives the same."""
    from core.turbofill import AdapterConfig, TurboFillAdapter
    from core.weights import load_weights

    state, metadata = load_weights(path)
    adapter = TurboFillAdapter(AdapterConfig(**metadata["adapter_config"]))
    adapter.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return adapter.eval()


def turbofill_row(steps: int, path: Path) -> Callable:
    """TurboFill Adapter Apply (nodes/comfy_turbofill.py) + FewStep Blended Sampler on the student, the shipped
    template's graph: the adapter reads the VP-scaled input, the masked image's latent (hole black) and the hole at
    latent size, and adds its residuals to the student's encoder, middle and skips at every step."""
    from core.denoiser import EpsDenoiser
    from core.turbofill import hint_mask, masked_image
    from trainers.common.unet_walk import walk_unet

    cache: dict = {}

    def run(world, source, pixel_mask, cond, uncond, seed, images):
        if "adapter" not in cache:
            cache["adapter"] = turbofill_adapter(path)
        adapter = cache["adapter"]
        hole = (pixel_mask > 0.5).float()
        hint = torch.cat([world.encode(masked_image(images, hole)), hint_mask(hole, source.shape[-2:])], 1)

        def eps_fn(x, t, encoder_hidden_states):
            control = adapter(x, hint, t.float())
            return walk_unet(world.student, x, encoder_hidden_states, timesteps=t, control=control)

        mask = latent_mask(pixel_mask, source)
        sigmas = sampling.grid_sigmas(steps)
        noise, _ = sampling.start_noise(source.shape, seed, sigmas[0])
        x = ve_renoise(torch.sqrt(1 + sigmas[0] ** 2), noise, source)
        model = sampling.guided(EpsDenoiser(eps_fn), cond, None, 1.0)
        return sample_fewstep_blended(model, x, sigmas, {"seed": seed}, disable=True, source=source, mask=mask,
                                      noise_sampler=seeded_noise_sampler(x, seed))

    return run


def turbofill_rows() -> list[Row]:
    """TurboFill Table 1 / 3 at toy scale: each committed adapter at 4 steps (baseline: fewstep_4, the same graph
    without the adapter); rows whose file is absent are left out."""
    return [Row(name, method, 4, 4, turbofill_row(4, TRAINED / file), needs_images=True)
            for name, (file, method) in TURBOFILL_ADAPTERS.items() if (TRAINED / file).is_file()]


def all_rows() -> list[Row]:
    rows = [Row("core_blend_4", "core ComfyUI blend (KSamplerX0Inpaint, lcm)", 4, 4, core_blend_row(4))]
    for n in (1, 2, 4):
        rows.append(Row(f"fewstep_{n}", "FewStep Blended Sampler", n, n, fewstep_row(n)))
    for n in (1, 2, 4):
        rows.append(Row(f"fewstep_{n}_reblend", "FewStep Blended Sampler + Re-Blend", n, n,
                        fewstep_row(n, reblend=True)))
    rows.append(Row("fewstep_4_hole_noise", "FewStep Blended Sampler, hole_init noise", 4, 4,
                    fewstep_row(4, hole_init="noise")))
    for n, mode in ((1, "blur"), (4, "blur"), (1, "neutral"), (4, "neutral")):
        rows.append(Row(f"fewstep_{n}_prefill_{mode}", f"FewStep Blended Sampler after prefill {mode}", n, n,
                        prefill_row(n, mode), needs_images=True))
    for n in (1, 2, 4):
        rows.append(Row(f"fewstep_{n}_known_start", "FewStep Blended Sampler, known_noise start", n, n,
                        fewstep_row(n, known_noise="start")))
    rows += [
        *inverfill_rows(),
        *turbofill_rows(),
        Row("rad_4_no_lora", "Region-Aware Sampler, no LoRA", 4, 4, rad_row(4)),
        *(Row(name, method, 4, 4, rad_row(4, TRAINED / file)) for name, (file, method) in RAD_LORAS.items()
          if (TRAINED / file).is_file()),
        Row("teacher_50_blend", "teacher + core blend (euler, cfg 3), multi-step reference", 50, 100,
            core_blend_row(50, teacher=True)),
        Row("repaint_4x10", "RePaint resampling loop on the student (10 resamples per step)", 4, 40,
            repaint_row(4, 10)),
        Row("repaint_teacher_50x10", "RePaint resampling loop on the teacher (euler, cfg 3, 10 resamples)", 50, 1000,
            repaint_row(50, 10, teacher=True)),
    ]
    return rows


# ------------------------------------------------------------------------------------------ metrics


def seam_score(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |Δ| between 4-neighbours that straddle the mask boundary ÷ mean |Δ| over all 4-neighbour pairs of
    the same image (1 ≈ the boundary is as smooth as the image is anywhere; a seam raises it)."""
    m = (mask > 0.5)[:, 0]
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1)
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1)
    across = torch.cat([dx[m[..., :, 1:] != m[..., :, :-1]], dy[m[..., 1:, :] != m[..., :-1, :]]])
    overall = torch.cat([dx.flatten(), dy.flatten()]).mean()
    return float(across.mean() / overall.clamp_min(1e-6)) if len(across) else float("nan")


def ring(mask: torch.Tensor, width: int = 3) -> torch.Tensor:
    """The hole's inner boundary ring: hole pixels within ``width`` px of the known region."""
    hole = mask > 0.5
    eroded = -F.max_pool2d(-hole.float(), 2 * width + 1, stride=1, padding=width) > 0.5
    return hole & ~eroded


def case_metrics(world: World, batch: Batch, generated: torch.Tensor) -> list[dict]:
    """Per case: known-region max |Δ| before/after Exact Composite, hole MSE/PSNR, semantic agreement, seam score,
    colour shift of the hole's boundary ring."""
    original = batch.images.permute(0, 2, 3, 1)
    composite, _ = exact_composite(original, generated.permute(0, 2, 3, 1), batch.masks[:, 0], **COMPOSITE)
    composite = composite.permute(0, 3, 1, 2)
    known = batch.masks == 0
    shapes, colours, judged = [], [], []
    for n, e in enumerate(batch.expect):
        if e:
            judged.append(n)
            shapes.append(scene.SHAPES.index(e["shape"]) if e["shape"] != "none" else models.NONE_SHAPE)
            colours.append(scene.COLOUR_NAMES.index(e["colour"]) if e.get("colour") else -1)
    semantic = {}
    if judged:
        idx = torch.tensor(judged)
        got = region_matches(world.judge, composite[idx], batch.masks[idx], shapes, colours)
        for n, _s, c, g in zip(judged, shapes, colours, got):
            semantic[n] = g * 2 if c == -1 else g  # "none" has no colour: shape only
    out = []
    for n in range(len(batch.cases)):
        hole = batch.masks[n].expand(3, -1, -1) > 0.5
        k = known[n].expand(3, -1, -1)
        row = {"id": batch.cases[n]["id"],
               "known_max_abs_before": float((generated[n] - batch.images[n]).abs()[k].max()) if k.any() else 0.0,
               "known_max_abs_after": float((composite[n] - batch.images[n]).abs()[k].max()) if k.any() else 0.0,
               "seam_score": seam_score(composite[n:n + 1], batch.masks[n:n + 1])}
        if batch.fidelity[n] and batch.truth is not None:
            mse = float((composite[n] - batch.truth[n])[hole].pow(2).mean())
            row["hole_mse"] = mse
            row["hole_psnr_db"] = 10 * math.log10(1.0 / max(mse, 1e-10))
            r = ring(batch.masks[n:n + 1])[0].expand(3, -1, -1)
            if r.any():
                shift = (composite[n][r].reshape(3, -1).mean(1) - batch.truth[n][r].reshape(3, -1).mean(1)).norm()
                row["ring_colour_shift"] = float(shift) * 255
        if n in semantic:
            row["semantic_agreement"] = semantic[n]
        out.append(row)
    return out


def aggregate(per_case: list[dict]) -> dict:
    keys = sorted({k for r in per_case for k in r if k != "id"})
    out = {}
    for k in keys:
        values = [r[k] for r in per_case if k in r and not math.isnan(r[k])]
        if not values:
            continue
        out[k] = float(max(values)) if k.startswith("known_max_abs") else float(np.mean(values))
    out["cases"] = len(per_case)
    return out


def paired(report: dict, a: str, b: str, key: str = "hole_psnr_db") -> dict:
    """Row a minus row b on the same cases: mean difference of ``key``, its standard error, and the cases where a is
    ahead (PSNR, semantic and the edit measures: higher; MSE, seam and colour shift: lower) — how
    docs/benchmarks.md states "ties" and "beats"; edit rows too."""
    rows = {r["name"]: {c["id"]: c for c in r["per_case"]} for r in report["rows"] + report.get("edit_rows", [])}
    common = [i for i in rows[a] if key in rows[a][i] and key in rows[b].get(i, {})]
    diffs = np.array([rows[a][i][key] - rows[b][i][key] for i in common])
    higher_better = key.endswith("_db") or key in ("semantic_agreement", "edit_success", "others_kept")
    ahead = int((diffs > 0).sum() if higher_better else (diffs < 0).sum())
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
    return {"mean": float(diffs.mean()), "se": se, "ahead": ahead, "cases": len(diffs)}


# ------------------------------------------------------------------------------------------ run


def row_images(world: World, batch: Batch, row: Row, seed: int = ROW_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, decoded images) of one row on a batch: encode, the row's sampler, decode."""
    source = world.encode(batch.images)
    with torch.no_grad():
        extra = {"images": batch.images} if row.needs_images else {}
        latents = row.run(world, source, batch.masks, world.cond(batch.prompts), world.cond([""]), seed, **extra)
    return latents, world.decode(latents)


def run_rows(world: World, batch: Batch, rows: list[Row], seed: int = ROW_SEED) -> tuple[list[dict], dict]:
    results, images = [], {}
    for row in rows:
        t0 = time.perf_counter()
        _, generated = row_images(world, batch, row, seed)
        seconds = time.perf_counter() - t0
        per_case = case_metrics(world, batch, generated)
        metrics = aggregate(per_case)
        metrics.pop("cases")
        results.append({"task": "inpaint", "method": row.method, "name": row.name, "steps": row.steps,
                        "nfe": row.nfe, "seconds": round(seconds, 3),
                        "seconds_per_image": round(seconds / len(batch.cases), 4),
                        "metrics": metrics, "per_case": per_case})
        images[row.name] = generated
    return results, images


def case_kind(case_id: str) -> str:
    """The default set's hole kind from a case id (background-…, part-…, object-…); "other" for user cases."""
    kind = case_id.split("-", 1)[0]
    return kind if kind in ("background", "part", "object") else "other"


def by_kind(per_case: list[dict], key: str = "hole_psnr_db") -> dict:
    """Mean of ``key`` per hole kind (a method trained on one kind of hole shows it here)."""
    groups: dict = {}
    for c in per_case:
        if key in c and not math.isnan(c[key]):
            groups.setdefault(case_kind(c["id"]), []).append(c[key])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def markdown(report: dict) -> str:
    w = report["world"]
    lines = [f"# Quality on the learned world ({report['date']})", "",
             f"`{report['command']}` on {report['machine']}; {report['cases']} inpainting cases.", "",
             f"World: judge accuracy {w.get('judge_accuracy')}, caption agreement "
             + ", ".join(f"{k} {v}" for k, v in (w.get("caption_agreement") or {}).items()), "",
             "| row | steps | NFE | known max Δ before | after | hole PSNR dB | hole MSE | semantic | seam "
             "| ring colour shift | s/image |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        m = r["metrics"]

        def f(key, fmt="{:.3f}", m=m):
            return fmt.format(m[key]) if key in m else "–"

        lines.append(f"| {r['name']} | {r['steps']} | {r['nfe']} | {f('known_max_abs_before')} | "
                     f"{f('known_max_abs_after', '{:g}')} | "
                     f"{f('hole_psnr_db', '{:.2f}')} | {f('hole_mse', '{:.4f}')} | {f('semantic_agreement')} | "
                     f"{f('seam_score')} | {f('ring_colour_shift', '{:.1f}')} | {r['seconds_per_image']:.4f} |")
    kinds = [k for k in ("background", "part", "object", "other")
             if any(k in by_kind(r["per_case"]) for r in report["rows"])]
    lines += ["", "Hole PSNR dB by hole kind:", "", "| row | " + " | ".join(kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for r in report["rows"]:
        means = by_kind(r["per_case"])
        lines.append(f"| {r['name']} | " + " | ".join(f"{means[k]:.2f}" if k in means else "–" for k in kinds) + " |")
    if report.get("edit_rows"):
        lines += edit_quality.edit_markdown(report["edit_rows"], report["edit_cases"])
    return "\n".join(lines) + "\n"


def contact_sheet(path: Path, batch: Batch, images: dict, limit: int = 12) -> None:
    """Per case (first ``limit``): input | mask | every row's composite, one 64 px tile each."""
    from PIL import Image

    rows = []
    for n in range(min(limit, len(batch.cases))):
        m = batch.masks[n]
        tiles = [batch.images[n], m.expand(3, -1, -1)]
        for generated in images.values():
            composite, _ = exact_composite(batch.images[n:n + 1].permute(0, 2, 3, 1),
                                           generated[n:n + 1].permute(0, 2, 3, 1), m, **COMPOSITE)
            tiles.append(composite[0].permute(2, 0, 1))
        rows.append(torch.cat([F.pad(t, (1, 1, 1, 1), value=1.0) for t in tiles], dim=2))
    grid = torch.cat(rows, dim=1)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def use_trained(folder: Path) -> None:
    """Rows of trained methods read their files from ``folder`` (the committed ones unless told otherwise)."""
    global TRAINED
    if not folder.is_dir():
        raise SystemExit(f"--trained: {folder} is not a folder")
    TRAINED = edit_quality.TRAINED = folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="JSON file of cases (default: the fixed evaluation set)")
    parser.add_argument("--out", default="benchmarks/results/quality", help="output folder")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--world", default=str(WEIGHTS), help="built world folder")
    parser.add_argument("--trained", default=str(TRAINED),
                        help="folder of the methods' trained files (default: the committed ones); e.g. a GPU run's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-cases", help="write the default evaluation set to this JSON file and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.write_cases:
        Path(args.write_cases).write_text(json.dumps({"cases": default_cases()}, indent=1))
        return 0
    use_trained(Path(args.trained))
    rows, edits = all_rows(), edit_quality.edit_rows()
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = sorted(set(wanted) - {r.name for r in rows + edits})
        if unknown:
            parser.error(f"--rows: unknown {unknown}; choose from {[r.name for r in rows + edits]}")
        rows, edits = [r for r in rows if r.name in wanted], [r for r in edits if r.name in wanted]
    cases = load_cases(args.cases) if args.cases else default_cases()
    inpaint = [c for c in cases if c["task"] == "inpaint"]
    edit_cases = [c for c in cases if c["task"] == "edit"]
    world = load_world(args.world)
    batch = materialise(inpaint)
    results, images = run_rows(world, batch, rows)
    edit_batch = edit_quality.materialise_edits(edit_cases) if edit_cases and edits else None
    edit_images: dict = {}
    edit_results = edit_quality.run_edit_rows(world, edit_batch, edits, ROW_SEED, edit_images) if edit_batch else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import platform

    report = {"world": world.summary.get("world", {}), "date": time.strftime("%Y-%m-%d"),
              "command": "python -m benchmarks.quality " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
              "cases": len(inpaint), "edit_cases": len(edit_cases), "rows": results, "edit_rows": edit_results}
    tmp = out / "quality.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "quality.json")
    (out / "quality.md").write_text(markdown(report))
    contact_sheet(out / "contact_sheet.png", batch, images)
    if edit_batch is not None:
        edit_quality.edit_contact_sheet(out / "edit_contact_sheet.png", edit_batch, edit_images)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
