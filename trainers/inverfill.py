"""InverFill trainer: learn the one-step inversion network F_θ for a few-step base model, image-free.

    python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml [--key=value …]
    accelerate launch --num_processes 2 -m trainers.inverfill --config … (multi-GPU / multi-process)

Per step (Vu et al., CVPR 2026, Sec. 3; methods.md §1.4): prompts → frozen one-step generator G
synthesises z0 = G(ε, c) → random brush/shape/Perlin hole M → masked image latent z0^m =
E((1−M)⊙D(z0)) → ẑ_T = F(z0^m, 500, c) → Re-Blend ẑ_T^blend = m⊙ε′ + (1−m)⊙ẑ_T → ẑ0 = G(ẑ_T^blend, c).
Loss = λ_noise‖(1−m)(ẑ_T − ε)‖² + λ_image‖ẑ0 − z0‖² + λ_reg·moments(ẑ_T^blend) [+ λ_adv·LADD hinge].
Output ``<output_dir>/<name>.safetensors`` (diffusers UNet keys, metadata) loads into the
*FewStep InverFill Loader* node as is; its manifest entry is written beside it.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.denoiser import EpsDenoiser
from core.discriminator import FeatureDiscriminator, FeatureTap, hinge_d_loss, hinge_g_loss
from core.inverfill import black_out, blended_start, invert, known_mse, moment_loss, one_step_generate
from core.random_masks import random_hole_masks
from core.samplers import sample_fewstep_blended
from core.schedules import fewstep_sigmas, sigmas_from_alphas_cumprod, trailing_timesteps
from trainers.common.base_model import BaseModel, check_base_model, load_base_model, unet_eps_fn
from trainers.common.checkpoint import latest_checkpoint
from trainers.common.config import build_config, check_output_paths, config_dict
from trainers.common.data import read_prompts, step_generator
from trainers.common.ema import EMA
from trainers.common.export import atomic_json, export_run
from trainers.common.run import (
    cast_tree, ema_weights, frozen_dtype, head, jsonable, make_accelerator, peak_memory, rank_file, resume_state,
    save_state, split_config_arg, weights_digest,
)
from trainers.common.tracking import log_images, save_preview

MODULE = "trainers.inverfill"


@dataclass
class InverFillConfig:
    """Every option, with the paper's values as defaults (SDXL-Turbo run, methods.md §1.4)."""

    base_model: str = ""  # diffusers folder or single-file .safetensors of the few-step base
    single_file_config: str = ""  # diffusers config folder for a single-file base
    prompts_file: str = ""  # one prompt per line
    eval_prompts_file: str = ""  # held-out prompts; default: the last eval_count prompts are held out
    eval_count: int = 8
    output_dir: str = "runs/inverfill"
    name: str = "inverfill"  # stem of the exported weight file and manifest id
    resolution: int = 1024
    batch_size: int = 1
    grad_accum: int = 1
    max_steps: int = 3000
    lr: float = 1e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA
    mixed_precision: str = "bf16"  # no | fp16 | bf16
    gradient_checkpointing: bool = True
    seed: int = 0
    lambda_noise: float = 1.0
    lambda_image: float = 1.0
    lambda_reg: float = 0.5
    lambda_adv: float = 0.5  # the paper's SDXL run ("clsgan+lr1e-6+weight0.5+1critic"); 0 turns the critic off
    image_loss: str = "all"  # all | known
    masking: str = "pixel"  # pixel: E((1−M)⊙D(z0)) as the paper; latent: z0⊙(1−m), no VAE pass (faster)
    adv_lr: float = 1e-6
    teacher_model: str = ""  # the critic's frozen feature network (LADD: a multi-step teacher, e.g. SDXL base); "" = base
    adv_t_range: list = field(default_factory=lambda: [100, 900])
    mask_probs: dict = field(default_factory=lambda: {"brush": 0.45, "shape": 0.45, "perlin": 0.1})
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 250
    preview_every: int = 250
    preview_count: int = 4
    export_dtype: str = "fp16"  # fp32 | fp16 | bf16
    manifest: str = ""  # a weights_manifest.json to add the entry to (e.g. the pack's)
    license: str = "same as the base model"


# --------------------------------------------------------------------------------------- data


@dataclass
class Batch:
    prompts: list[str]
    cond: dict
    eps: torch.Tensor  # ε, the noise z0 was generated from (B,C,h,w)
    z0: torch.Tensor  # generated clean latent (model space)
    image: torch.Tensor  # D(z0) in [0, 1] (B,3,H,W)
    pixel_mask: torch.Tensor  # (B,1,H,W), 1 = hole
    mask: torch.Tensor  # (B,1,h,w) bilinear
    masked_latent: torch.Tensor  # E(image ⊙ (1 − M)) in model space
    fresh: torch.Tensor  # ε′ for the hole


@torch.no_grad()
def make_batch(cfg: InverFillConfig, base: BaseModel, prompts: list[str], generator: torch.Generator,
               device, dtype) -> Batch:
    """Synthesise one image-free training batch (everything random comes from ``generator``)."""
    b, res = cfg.batch_size, cfg.resolution
    factor = 2 ** (len(base.vae.config.block_out_channels) - 1)
    h = w = res // factor
    channels = base.unet.config.in_channels
    picked = [prompts[int(i)] for i in torch.randint(len(prompts), (b,), generator=generator)]
    eps = torch.randn(b, channels, h, w, generator=generator).to(device)
    fresh = torch.randn(b, channels, h, w, generator=generator).to(device)
    pixel_mask = random_hole_masks(b, res, res, generator, cfg.mask_probs).to(device)
    cond = base.encode_prompts(picked, device, (res, res))
    g_eps = unet_eps_fn(base.unet)
    z0 = one_step_generate(g_eps, eps.to(dtype), base.alphas_cumprod, **cast_tree(cond, dtype)).float()
    image = ((base.vae.decode((z0 / base.scaling_factor).to(dtype)).sample.float() + 1) / 2).clamp(0, 1)
    mask = F.interpolate(pixel_mask, size=(h, w), mode="bilinear", align_corners=False)
    if cfg.masking == "latent":
        masked_latent = black_out(z0, mask)
    else:
        masked = black_out(image, pixel_mask) * 2 - 1
        masked_latent = base.vae.encode(masked.to(dtype)).latent_dist.mean.float() * base.scaling_factor
    return Batch(picked, cond, eps, z0, image, pixel_mask, mask, masked_latent, fresh)





# ------------------------------------------------------------------------------------- model


def inverfill_forward(f_eps, g_eps, base: BaseModel, batch: Batch, dtype) -> dict:
    """F → Re-Blend → G, with gradients through G into F's output."""
    cond = cast_tree(batch.cond, dtype)
    inverted = invert(f_eps, batch.masked_latent.to(dtype), **cond).float()
    blended = blended_start(inverted, batch.fresh, batch.mask)
    recon = one_step_generate(g_eps, blended.to(dtype), base.alphas_cumprod, **cond).float()
    return {"inverted": inverted, "blended": blended, "recon": recon}


def inverfill_losses(cfg: InverFillConfig, out: dict, batch: Batch) -> dict:
    noise = known_mse(out["inverted"], batch.eps, batch.mask)
    if cfg.image_loss == "known":
        image = known_mse(out["recon"], batch.z0, batch.mask)
    else:
        image = F.mse_loss(out["recon"], batch.z0)
    reg = moment_loss(out["blended"])
    total = cfg.lambda_noise * noise + cfg.lambda_image * image + cfg.lambda_reg * reg
    return {"loss": total, "noise": noise, "image": image, "reg": reg}


class Adversary:
    """LADD-style critic (Sauer et al. 2024): heads on a frozen UNet's mid/up-block features at a re-noised input.
    The UNet is ``teacher_model`` (LADD's multi-step teacher) when given, else the few-step base itself; the heads
    see the prompt only through those features (LADD also feeds them the pooled text and the noise level)."""

    def __init__(self, cfg: InverFillConfig, base: BaseModel, device):
        self.cfg, self.base = cfg, base
        modules = [base.unet.mid_block, *base.unet.up_blocks]
        self.tap = FeatureTap(modules)
        channels = [base.unet.config.block_out_channels[-1]] + list(reversed(base.unet.config.block_out_channels))
        self.heads = FeatureDiscriminator(channels[: len(modules)]).to(device)

    def logits(self, heads, x0, cond, generator, dtype):
        lo, hi = self.cfg.adv_t_range
        t = torch.randint(lo, hi + 1, (x0.shape[0],), generator=generator).to(x0.device)
        a = self.base.alphas_cumprod.to(x0.device)[t].float().view(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with self.tap.capture():
            self.base.unet(x_t.to(dtype), t, **cast_tree(cond, dtype), return_dict=False)
        return heads(self.tap.take())


# -------------------------------------------------------------------------------- evaluation





@torch.no_grad()
def evaluate(cfg, base, f_model, eval_batches: list[Batch], dtype) -> float:
    """Held-out reconstruction error of the known region: mean over batches of known_mse(ẑ0, z0)."""
    f_eps, g_eps = unet_eps_fn(f_model), unet_eps_fn(base.unet)
    errors = [float(known_mse(inverfill_forward(f_eps, g_eps, base, b, dtype)["recon"], b.z0, b.mask))
              for b in eval_batches]
    return sum(errors) / len(errors)


@torch.no_grad()
def preview_rows(cfg, base, f_model, batch: Batch, dtype, steps: int = 4) -> list[torch.Tensor]:
    """Masked input | one-step G(ẑ_T^blend) | 4-step blended sampling from ẑ_T^blend | ground truth."""
    out = inverfill_forward(unet_eps_fn(f_model), unet_eps_fn(base.unet), base, batch, dtype)
    denoiser = EpsDenoiser(lambda x, t, **c: unet_eps_fn(base.unet)(x.to(dtype), t, **cast_tree(c, dtype)).float(),
                           base.alphas_cumprod)
    sigmas = fewstep_sigmas(trailing_timesteps(steps), sigmas_from_alphas_cumprod(base.alphas_cumprod)).to(
        batch.z0.device)
    x = out["blended"] * math.sqrt(1 + float(sigmas[0]) ** 2)
    sampled = sample_fewstep_blended(denoiser, x, sigmas, {**batch.cond, "seed": cfg.seed}, disable=True,
                                     source=batch.z0, mask=batch.mask)

    def decode(z):
        return ((base.vae.decode((z / base.scaling_factor).to(dtype)).sample.float() + 1) / 2).clamp(0, 1)

    return [black_out(batch.image, batch.pixel_mask), decode(out["recon"]), decode(sampled), batch.image]


# ---------------------------------------------------------------------------------- training


def split_prompts(cfg: InverFillConfig) -> tuple[list[str], list[str]]:
    prompts = read_prompts(cfg.prompts_file, "prompts_file")
    if cfg.eval_prompts_file:
        return prompts, read_prompts(cfg.eval_prompts_file, "eval_prompts_file")
    if len(prompts) <= cfg.eval_count:
        return prompts, prompts
    return prompts[: -cfg.eval_count], prompts[-cfg.eval_count:]


def check_config(cfg: InverFillConfig) -> None:
    check_output_paths(cfg)
    if not cfg.base_model:
        raise ValueError("base_model: set it to a local diffusers folder or single-file checkpoint")
    check_base_model(cfg.base_model, cfg.single_file_config or None)
    if cfg.teacher_model:
        try:
            check_base_model(cfg.teacher_model, cfg.single_file_config or None)
        except ValueError as err:
            raise ValueError(str(err).replace("base_model:", "teacher_model:", 1)) from None
    if cfg.export_dtype not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"export_dtype: {cfg.export_dtype!r} is not fp32, fp16 or bf16")
    if cfg.masking not in ("pixel", "latent"):
        raise ValueError(f"masking: {cfg.masking!r} is not 'pixel' or 'latent'")
    if cfg.image_loss not in ("all", "known"):
        raise ValueError(f"image_loss: {cfg.image_loss!r} is not 'all' or 'known'")
    if cfg.resolution % 8:
        raise ValueError(f"resolution: {cfg.resolution} is not a multiple of 8")
    for name in ("batch_size", "grad_accum", "max_steps", "checkpoint_every", "eval_every", "preview_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: must be at least 1")





def train(cfg: InverFillConfig, config_path: str = "") -> dict:
    """Run (or resume) training; returns a summary. Multi-process when launched with ``accelerate``."""
    from tqdm.auto import tqdm

    check_config(cfg)
    out_dir = Path(cfg.output_dir)
    train_prompts, eval_prompts = split_prompts(cfg)
    accelerator = make_accelerator(cfg, out_dir)
    device, rank = accelerator.device, accelerator.process_index
    compute_dtype = frozen_dtype(cfg, device)
    base = load_base_model(cfg.base_model, single_file_config=cfg.single_file_config or None).to(device, compute_dtype)

    f_model = copy.deepcopy(base.unet).float().requires_grad_(True).train()
    if cfg.gradient_checkpointing:
        f_model.enable_gradient_checkpointing()
        base.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(f_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    adversary = Adversary(cfg, critic_backbone(cfg, base, device, compute_dtype), device) if cfg.lambda_adv > 0 else None
    d_optimizer = torch.optim.AdamW(adversary.heads.parameters(), lr=cfg.adv_lr) if adversary else None
    if adversary:
        f_model, optimizer, adversary.heads, d_optimizer = accelerator.prepare(
            f_model, optimizer, adversary.heads, d_optimizer)
    else:
        f_model, optimizer = accelerator.prepare(f_model, optimizer)
    unwrapped = accelerator.unwrap_model(f_model)
    ema = EMA(unwrapped, cfg.ema_decay) if cfg.ema_decay > 0 else None
    extras = {"critic": (adversary.heads, d_optimizer)} if adversary else {}

    metrics: dict = {"eval_known_mse": {}}
    start = 0
    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None:
        start, metrics = resume_state(ckpt, cfg, unwrapped, optimizer, ema, extras, accelerator)
    eval_batches = [make_batch(cfg, base, eval_prompts, step_generator(cfg.seed, i, 0, "eval"), device,
                               compute_dtype) for i in range(math.ceil(cfg.eval_count / cfg.batch_size))]
    accelerator.init_trackers("inverfill", config={k: str(v) for k, v in config_dict(cfg).items()})
    if "initial" not in metrics:
        metrics["initial"] = evaluate(cfg, base, unwrapped, eval_batches, compute_dtype)
        metrics["eval_known_mse"]["0"] = metrics["initial"]

    f_eps, g_eps = unet_eps_fn(f_model), unet_eps_fn(base.unet)
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc="InverFill",
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    t0, logs, step_times = time.time(), {}, []
    for step in bar:
        step_start = time.perf_counter()
        critic_inputs = []
        for micro in range(cfg.grad_accum):
            generator = step_generator(cfg.seed, step * cfg.grad_accum + micro, rank)
            batch = make_batch(cfg, base, train_prompts, generator, device, compute_dtype)
            with accelerator.accumulate(f_model), accelerator.autocast():
                out = inverfill_forward(f_eps, g_eps, base, batch, compute_dtype)
                losses = inverfill_losses(cfg, out, batch)
                loss = losses["loss"]
                if adversary:
                    losses["adv_g"] = hinge_g_loss(adversary.logits(adversary.heads, out["recon"], batch.cond,
                                                                    generator, compute_dtype))
                    loss = loss + cfg.lambda_adv * losses["adv_g"]
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(f_model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if adversary:
                critic_inputs.append((out["recon"].detach(), batch, generator))
        if adversary:
            losses["adv_d"] = _critic_step(adversary, d_optimizer, accelerator, critic_inputs, compute_dtype)
        if ema is not None:
            ema.update(unwrapped, step)
        step_times.append(time.perf_counter() - step_start)
        done = step + 1
        logs = {k: float(v.detach()) for k, v in losses.items()}
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=done)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            with ema_weights(unwrapped, ema):
                value = evaluate(cfg, base, unwrapped, eval_batches, compute_dtype)
            metrics["eval_known_mse"][str(done)] = value
            accelerator.log({"eval/known_mse": value}, step=done)
        if accelerator.is_main_process and (done % cfg.preview_every == 0 or done == cfg.max_steps):
            with ema_weights(unwrapped, ema):
                rows = preview_rows(cfg, base, unwrapped, head(eval_batches[0], cfg.preview_count), compute_dtype)
            grid = save_preview(out_dir / "previews" / f"step_{done:08d}.png", rows)
            log_images(accelerator, "preview", grid, done)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            save_state(out_dir, done, cfg, unwrapped, optimizer, ema, extras, metrics, accelerator)
    metrics["final"] = metrics["eval_known_mse"].get(str(cfg.max_steps), metrics["initial"])
    weights_sha = weights_digest(unwrapped, ema)
    rank_file(out_dir, rank, weights_sha)
    summary = {"steps": cfg.max_steps, "resumed_from": start, "seconds": round(time.time() - t0, 2),
               "seconds_per_step": round(sum(step_times[1:]) / max(1, len(step_times) - 1), 4) if step_times else None,
               **peak_memory(device), "initial_known_mse": metrics["initial"], "final_known_mse": metrics["final"],
               "weights_sha256": weights_sha,
               "critic_backbone": (cfg.teacher_model or cfg.base_model) if adversary else None}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = _export(cfg, config_path, base, unwrapped, ema, cfg.max_steps)
        summary["weights"] = str(path)
        atomic_json(out_dir / "metrics.json", {**metrics, **summary})
    accelerator.end_training()
    return summary








def _critic_step(adversary, d_optimizer, accelerator, inputs, dtype) -> torch.Tensor:
    """One critic update per network step (the paper's "1critic"), its gradient accumulated over the micro-batches."""
    d_optimizer.zero_grad(set_to_none=True)  # drop what the generator's adversarial loss left on the heads
    total = 0.0
    for recon, batch, generator in inputs:
        real = adversary.logits(adversary.heads, batch.z0, batch.cond, generator, dtype)
        fake = adversary.logits(adversary.heads, recon, batch.cond, generator, dtype)
        loss = hinge_d_loss(real, fake) / len(inputs)
        accelerator.backward(loss)
        total = total + loss.detach()
    d_optimizer.step()
    d_optimizer.zero_grad(set_to_none=True)
    return total


def critic_backbone(cfg: InverFillConfig, base: BaseModel, device, dtype) -> BaseModel:
    """The frozen network the critic reads: ``teacher_model`` (same family, so the same conditioning) or the base."""
    if not cfg.teacher_model:
        return base
    teacher = load_base_model(cfg.teacher_model, single_file_config=cfg.single_file_config or None).to(device, dtype)
    if teacher.family != base.family:
        raise ValueError(f"teacher_model: {cfg.teacher_model} is a {teacher.family} model but base_model is "
                         f"{base.family}; the critic reads the teacher with the base's text conditioning")
    return teacher


def _export(cfg, config_path, base, model, ema, step) -> Path:
    state = ema.full_state_dict(model) if ema is not None else model.state_dict()
    metadata = {"kind": "inverfill", "base_family": base.family, "format_version": "1", "step": str(step),
                "ema": "true" if ema is not None else "false", "key_format": "diffusers",
                "inversion_timestep": "500", "masking": cfg.masking, "config": config_dict(cfg), "unet_config": jsonable(base.unet_config)}
    return export_run(cfg, config_path, MODULE, state, metadata, base=base, kind="inverfill",
                      title="InverFill inversion network",
                      reference="https://arxiv.org/abs/2603.23463",
                      description=f"InverFill one-step inversion network trained from {Path(cfg.base_model).name} "
                                  f"for {step} steps")





def main(argv: list[str] | None = None) -> int:
    config_path, argv = split_config_arg(sys.argv[1:] if argv is None else argv)
    cfg = build_config(InverFillConfig, config_path or None, argv)
    summary = train(cfg, config_path)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
