"""Probe a teacher recipe without rebuilding the world: train a fresh text encoder + teacher UNet with the build's
loss (``build.teacher_loss``) on the committed world's VAE latents, and read what it learned every few steps.

    python -m benchmarks.world.probe --out runs/probe_b16 --steps 4800 --batch 16 --eval-every 2400
    python -m benchmarks.world.probe --out runs/probe_objw --steps 4800 --batch 16 --object-weight 6
    python -m benchmarks.world.probe --out runs/bind --steps 1200 --t-min 850 --conditioning slots --eval one-step

Each evaluation (EMA weights) appends a line to OUT/probe.jsonl: caption agreement of 20-step CFG-3 samples of the
first ``--eval-scenes`` test scenes, overall and per attribute kind, and the one-step x̂0 reading
(``build.one_step_agreement``). ``--object-weight W`` weights the loss by 1 + W inside the objects' masks.

Diagnostics of where object binding stalls (not the world's formats): ``--t-min T`` trains on t in [T, 999] only,
where the caption alone must place the objects; ``--conditioning slots`` replaces the text encoder by the scene's
parameters as one token per object (``SlotEncoder``, what a perfect text encoder could give); ``--coords`` gives the
UNet two coordinate channels (``CoordUNet``), which SD's UNet lacks; ``--eval one-step`` reads only the one-step x̂0
at t = 950 (seconds instead of minutes). What the probes found is in docs/benchmarks.md ('What holds at this
scale'); they start from scratch and write only OUT.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import WEIGHTS, models, sampling, scene
from .build import caption_encoder, decode, object_masks, one_step_agreement, teacher_loss
from .judge import background_labels, caption_agreement, judge_accuracy


class SlotEncoder(nn.Module):
    """Captions as slots: the background, then each object (shape, colour, size, cell as one-hots), one linear
    token each, zeros for absent objects and for the empty caption: all a text encoder could tell the UNet."""

    OBJECT = len(scene.SHAPES) + len(scene.COLOUR_NAMES) + len(scene.SIZES) + len(scene.POSITIONS)
    BACKGROUND = len(scene.BACKGROUNDS) + 2 * len(scene.COLOUR_NAMES)

    def __init__(self, scenes: list[dict], width: int = models.TEXT_WIDTH):
        super().__init__()
        self.object, self.background = nn.Linear(self.OBJECT, width), nn.Linear(self.BACKGROUND, width)
        self.table = {"": (torch.zeros(3, self.OBJECT), torch.zeros(3), torch.zeros(self.BACKGROUND))}
        self.table.update({s["caption"]: self.one_hots(s["params"]) for s in scenes})  # once, not per step

    @classmethod
    def one_hots(cls, params: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(3, OBJECT) object one-hots, (3,) which are present, (BACKGROUND,) background one-hots."""
        objects, present, background = torch.zeros(3, cls.OBJECT), torch.zeros(3), torch.zeros(cls.BACKGROUND)
        labels = background_labels(params)
        background[labels["bg_kind"]] = 1
        background[len(scene.BACKGROUNDS) + labels["bg_first"]] = 1
        if labels["bg_second"] != models.NONE_COLOUR:
            background[len(scene.BACKGROUNDS) + len(scene.COLOUR_NAMES) + labels["bg_second"]] = 1
        offsets = np.cumsum([0, len(scene.SHAPES), len(scene.COLOUR_NAMES), len(scene.SIZES)])
        for j, obj in enumerate(params["objects"]):
            present[j] = 1
            indices = (scene.SHAPES.index(obj["shape"]), scene.COLOUR_NAMES.index(obj["colour"]),
                       list(scene.SIZES).index(obj["size"]), scene.POSITIONS.index(obj["position"]))
            for offset, index in zip(offsets, indices):
                objects[j, offset + index] = 1
        return objects, present, background

    def features(self, caption: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``one_hots`` of a known caption's scene (all zeros for the empty caption)."""
        return self.table[caption]

    def forward(self, captions: list[str]) -> torch.Tensor:
        objects, present, background = (torch.stack(x) for x in zip(*map(self.features, captions)))
        has_background = (background.sum(1, keepdim=True) > 0).float()
        return torch.cat([(self.background(background) * has_background)[:, None],
                          self.object(objects) * present[..., None]], dim=1)


class CoordUNet(nn.Module):
    """The world's UNet with two more input channels holding x and y in [-1, 1]: the position signal SD's UNet
    lacks (its queries learn where they are only from the zero padding)."""

    def __init__(self):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.unet = UNet2DConditionModel(**{**models.UNET_CONFIG, "in_channels": 6})
        size = models.UNET_CONFIG["sample_size"]
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        self.register_buffer("grid", torch.stack([xx, yy])[None], persistent=False)

    def forward(self, x, t, encoder_hidden_states, added_cond_kwargs=None, return_dict=True):
        return self.unet(torch.cat([x, self.grid.expand(len(x), -1, -1, -1)], dim=1), t,
                         encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs,
                         return_dict=return_dict)


@torch.no_grad()
def evaluate(vae, judge, unet, encode, test: list[dict], cfg_scale: float = 3.0, one_step_only: bool = False) -> dict:
    """Caption agreement (overall, per attribute kind) of 20-step CFG samples, and the one-step x̂0 reading (at
    t = 950 only with ``one_step_only``, which skips the samples)."""
    images = torch.from_numpy(np.stack([s["image"] for s in test])).permute(0, 3, 1, 2)
    if one_step_only:
        return {"one_step_by_attribute": one_step_agreement(vae, judge, unet, encode, test, images, timesteps=(950,))}
    cond, uncond = encode([s["caption"] for s in test]), encode([""])
    latents = sampling.sample_teacher(sampling.guided(sampling.unet_denoiser(unet), cond, uncond, cfg_scale),
                                      (len(test), 4, 16, 16), 7, 20)
    samples = decode(vae, latents / vae.config.scaling_factor)
    agreement, all_right = caption_agreement(judge, test, samples)
    return {"caption_agreement": agreement, "all_right": all_right,
            "by_attribute": judge_accuracy(judge, test, samples),
            "one_step_by_attribute": one_step_agreement(vae, judge, unet, encode, test, images)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.world.probe", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--world", default=str(WEIGHTS), help="a built world: its VAE and judge are used")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--offset-noise", type=float, default=0.3)
    parser.add_argument("--object-weight", type=float, default=0.0)
    parser.add_argument("--t-min", type=int, default=0, help="train on t in [T, 999] only")
    parser.add_argument("--conditioning", choices=("caption", "slots"), default="caption")
    parser.add_argument("--coords", action="store_true", help="the UNet also sees x, y channels (CoordUNet)")
    parser.add_argument("--eval", choices=("samples", "one-step"), default="samples")
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--train-scenes", type=int, default=12000)
    parser.add_argument("--eval-scenes", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "train_scenes", "eval_scenes", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.t_min <= 999:
        parser.error("--t-min must be in 0..999")
    torch.set_num_threads(args.threads)
    from benchmarks.quality import load_world
    from trainers.common.ema import EMA

    world = load_world(args.world)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = [scene.scene(scene.seed_of("train", i)) for i in range(args.train_scenes)]
    images = torch.from_numpy(np.stack([s["image"] for s in scenes])).permute(0, 3, 1, 2)
    with torch.no_grad():
        latents = torch.cat([world.vae.encode(images[i:i + 256] * 2 - 1).latent_dist.mean * world.scaling_factor
                             for i in range(0, len(images), 256)])
    pixel = 1.0 + args.object_weight * object_masks(scenes)
    captions = [s["caption"] for s in scenes]
    test = [scene.scene(scene.seed_of("test", i)) for i in range(args.eval_scenes)]
    torch.manual_seed(args.seed)
    tokenizer = models.word_tokenizer()
    unet = CoordUNet() if args.coords else models.unet()
    text = SlotEncoder(scenes + test) if args.conditioning == "slots" else models.text_encoder(len(tokenizer))

    def encoder(module):
        return module if args.conditioning == "slots" else caption_encoder(module, tokenizer)

    encode = encoder(text)
    params = list(unet.parameters()) + list(text.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    emas = (EMA(unet, args.ema), EMA(text, args.ema))
    abar = sampling.scaled_linear_alphas_cumprod().to(torch.float32)
    log = out / "probe.jsonl"
    t0 = time.perf_counter()
    for step in tqdm(range(args.steps), desc="probe: teacher"):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        rng = np.random.default_rng([args.seed, step])
        idx = rng.integers(len(captions), size=args.batch)
        texts = ["" if d else captions[i] for i, d in zip(idx, rng.random(len(idx)) < 0.1)]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        loss = teacher_loss(unet, encode, latents[idx], texts, gen, args.offset_noise, abar,
                            pixel[idx] if args.object_weight else None, args.t_min)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        for ema, module in zip(emas, (unet, text)):
            ema.update(module, step)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            averaged = [copy.deepcopy(m) for m in (unet, text)]
            for ema, module in zip(emas, averaged):
                module.load_state_dict(ema.full_state_dict(module))
                module.eval()
            row = {"step": step + 1, "seconds": round(time.perf_counter() - t0, 1), "loss": round(loss.item(), 4),
                   **{k: v for k, v in vars(args).items() if k not in ("out", "world", "threads")},
                   **evaluate(world.vae, world.judge, averaged[0], encoder(averaged[1]), test,
                              one_step_only=args.eval == "one-step")}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("step", "seconds", "caption_agreement", "by_attribute",
                                                   "one_step_by_attribute") if k in row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
