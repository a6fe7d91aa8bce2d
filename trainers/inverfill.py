"""InverFill trainer: learn the one-step inversion network F_θ for a few-step base model, image-free.

    python -m trainers.inverfill --config trainers/configs/inverfill_sdxl_turbo.yaml [--key=value …]
    accelerate launch --num_processes 2 -m trainers.inverfill --config … (multi-GPU / multi-process)

Per step (Vu et al., CVPR 2026, Sec. 3; docs/methods.md §1.4): prompts → frozen one-step generator G
synthesises z0 = G(ε, c) → random brush/shape/Perlin hole M → masked image latent z0^m =
E((1−M)⊙D(z0)) → ẑ_T = F(z0^m, 500, c) → Re-Blend ẑ_T^blend = m⊙ε′ + (1−m)⊙ẑ_T → ẑ0 = G(ẑ_T^blend, c).
Loss = λ_noise‖(1−m)(ẑ_T − ε)‖² + λ_image‖ẑ0 − z0‖² + λ_reg·moments(ẑ_T^blend) [+ λ_adv·LADD hinge].
Output ``<output_dir>/<name>.safetensors`` (diffusers UNet keys, metadata) loads into the
*FewStep InverFill Loader* node as is; its manifest entry is written beside it. A FLUX-family diffusers folder
(transformer/, vae/, CLIP-L + T5) as ``base_model`` trains F as the DiT itself (docs/methods.md §1.6).
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.denoiser import EpsDenoiser
from core.discriminator import FeatureDiscriminator, FeatureTap, hinge_d_loss, hinge_g_loss
from core.inverfill import (
    black_out,
    blended_start,
    invert,
    invert_flow,
    known_mse,
    moment_loss,
    one_step_generate,
    one_step_generate_flow,
)
from core.random_masks import random_hole_masks
from core.samplers import flow_renoise, sample_fewstep_blended
from core.schedules import add_noise, fewstep_sigmas, sigmas_from_alphas_cumprod, trailing_timesteps
from trainers.common.base_model import BaseModel, check_base_model, load_base_model, unet_eps_fn
from trainers.common.config import RunConfig
from trainers.common.data import read_prompts, step_generator
from trainers.common.export import export_run
from trainers.common.flux_base import flux_sigmas, flux_velocity_fn, is_flux_folder
from trainers.common.loop import Recipe, accumulate, check_common_config, cli, run_training, start_run
from trainers.common.run import cast_tree, head, jsonable

MODULE = "trainers.inverfill"


@dataclass
class InverFillConfig(RunConfig):
    """Every option, with the paper's values as defaults (SDXL-Turbo run, docs/methods.md §1.4)."""

    prompts_file: str = ""  # one prompt per line
    eval_prompts_file: str = ""  # held-out prompts; default: the last eval_count prompts are held out
    eval_count: int = 8
    output_dir: str = "runs/inverfill"
    name: str = "inverfill"  # stem of the exported weight file and manifest id
    max_steps: int = 3000
    lambda_noise: float = 1.0
    lambda_image: float = 1.0
    lambda_reg: float = 0.5
    lambda_adv: float = 0.5  # the paper's SDXL run ("clsgan+lr1e-6+weight0.5+1critic"); 0 turns the critic off
    image_loss: str = "all"  # all | known
    masking: str = "pixel"  # pixel: E((1−M)⊙D(z0)) as the paper; latent: z0⊙(1−m), no VAE pass (faster)
    reblend: bool = True  # false: G sees ẑ_T itself, no fresh hole noise in training (the paper's w/o Re-Blend)
    adv_lr: float = 1e-6
    teacher_model: str = ""  # the critic's frozen feature network (LADD: multi-step teacher, e.g. SDXL base); "" = base
    adv_t_range: list = field(default_factory=lambda: [100, 900])
    mask_probs: dict = field(default_factory=lambda: {"brush": 0.45, "shape": 0.45, "perlin": 0.1})


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


def is_flow(base) -> bool:
    """A FLUX base (trainers.common.flux_base) rather than a UNet one (anything without ``is_flow`` is a UNet)."""
    return bool(getattr(base, "is_flow", False))


def network(base):
    """The base's denoiser: the UNet, or a FLUX base's transformer (docs/methods.md §1.6)."""
    return base.transformer if is_flow(base) else base.unet


def forward_fn(base, model):
    """``fn(x, t, **cond)`` of a network of the base's kind: ε̂ at a discrete t (UNet) or v̂ at t = σ (FLUX)."""
    return flux_velocity_fn(model) if is_flow(base) else unet_eps_fn(model)


def generate(base, g_fn, x_T: torch.Tensor, cond: dict) -> torch.Tensor:
    """G: one step from noise (UNet: t = 999, x̂0 from ε̂; FLUX: x̂0 = x_1 − v̂(x_1, 1))."""
    if is_flow(base):
        return one_step_generate_flow(g_fn, x_T, **cond)
    return one_step_generate(g_fn, x_T, base.alphas_cumprod, **cond)


def inversion(base, f_fn, masked_latent: torch.Tensor, cond: dict) -> torch.Tensor:
    """F: ẑ_T from the masked latent (UNet: ε̂ at t = 500; FLUX: x + (1 − t)·v̂ at t = 0.5)."""
    return invert_flow(f_fn, masked_latent, **cond) if is_flow(base) else invert(f_fn, masked_latent, **cond)


def decode(base, z: torch.Tensor, dtype) -> torch.Tensor:
    """Model-space latents → images in [0, 1]."""
    vae_latent = base.latent_out(z) if is_flow(base) else z / base.scaling_factor
    return ((base.vae.decode(vae_latent.to(dtype)).sample.float() + 1) / 2).clamp(0, 1)


def encode(base, image: torch.Tensor, dtype) -> torch.Tensor:
    """Images in [0, 1] → model-space latents (the VAE's mean)."""
    mean = base.vae.encode((image * 2 - 1).to(dtype)).latent_dist.mean.float()
    return base.latent_in(mean) if is_flow(base) else mean * base.scaling_factor


@torch.no_grad()
def make_batch(cfg: InverFillConfig, base: BaseModel, prompts: list[str], generator: torch.Generator,
               device, dtype) -> Batch:
    """Synthesise one image-free training batch (everything random comes from ``generator``)."""
    b, res = cfg.batch_size, cfg.resolution
    factor = 2 ** (len(base.vae.config.block_out_channels) - 1)
    h = w = res // factor
    channels = base.latent_channels if is_flow(base) else base.unet.config.in_channels
    picked = [prompts[int(i)] for i in torch.randint(len(prompts), (b,), generator=generator)]
    eps = torch.randn(b, channels, h, w, generator=generator).to(device)
    fresh = torch.randn(b, channels, h, w, generator=generator).to(device)
    pixel_mask = random_hole_masks(b, res, res, generator, cfg.mask_probs).to(device)
    cond = base.encode_prompts(picked, device, (res, res))
    z0 = generate(base, forward_fn(base, network(base)), eps.to(dtype), cast_tree(cond, dtype)).float()
    image = decode(base, z0, dtype)
    mask = F.interpolate(pixel_mask, size=(h, w), mode="bilinear", align_corners=False)
    if cfg.masking == "latent":
        masked_latent = black_out(z0, mask)
    else:
        masked_latent = encode(base, black_out(image, pixel_mask), dtype)
    return Batch(picked, cond, eps, z0, image, pixel_mask, mask, masked_latent, fresh)


# ------------------------------------------------------------------------------------- model


def inverfill_forward(f_eps, g_eps, base: BaseModel, batch: Batch, dtype, reblend: bool = True) -> dict:
    """F → Re-Blend → G, with gradients through G into F's output (``reblend=False``: F → G, the ablation)."""
    cond = cast_tree(batch.cond, dtype)
    inverted = inversion(base, f_eps, batch.masked_latent.to(dtype), cond).float()
    blended = blended_start(inverted, batch.fresh, batch.mask) if reblend else inverted
    recon = generate(base, g_eps, blended.to(dtype), cond).float()
    return {"inverted": inverted, "blended": blended, "recon": recon}


def compute_losses(cfg: InverFillConfig, out: dict, batch: Batch) -> dict:
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
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_t = add_noise(x0, noise, self.base.alphas_cumprod.to(x0.device)[t].float())
        with self.tap.capture():
            self.base.unet(x_t.to(dtype), t, **cast_tree(cond, dtype), return_dict=False)
        return heads(self.tap.take())


# -------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(cfg, base, f_model, eval_batches: list[Batch], dtype) -> float:
    """Held-out reconstruction error of the known region: mean over batches of known_mse(ẑ0, z0)."""
    f_eps, g_eps = forward_fn(base, f_model), forward_fn(base, network(base))
    errors = [float(known_mse(inverfill_forward(f_eps, g_eps, base, b, dtype)["recon"], b.z0, b.mask))
              for b in eval_batches]
    return sum(errors) / len(errors)


@torch.no_grad()
def preview_rows(cfg, base, f_model, batch: Batch, dtype, steps: int = 4) -> list[torch.Tensor]:
    """Masked input | one-step G(ẑ_T^blend) | 4-step blended sampling from ẑ_T^blend | ground truth."""
    out = inverfill_forward(forward_fn(base, f_model), forward_fn(base, network(base)), base, batch, dtype)
    if is_flow(base):  # FLUX: x̂0 = x − σ·v̂, the flow grid through the scheduler's shift, starting at x_1 = ẑ_T^blend
        velocity = flux_velocity_fn(base.transformer)

        def denoiser(x, sigma, seed=None, **c):
            return x - sigma.view(-1, 1, 1, 1) * velocity(x.to(dtype), sigma, **cast_tree(c, dtype)).float()

        sigmas = flux_sigmas([1 - k / steps for k in range(steps)], base.shift).to(batch.z0.device)
        x, renoise = out["blended"], flow_renoise
    else:
        denoiser = EpsDenoiser(lambda x, t, **c: unet_eps_fn(base.unet)(x.to(dtype), t, **cast_tree(c, dtype)).float(),
                               base.alphas_cumprod)
        sigmas = fewstep_sigmas(trailing_timesteps(steps), sigmas_from_alphas_cumprod(base.alphas_cumprod)).to(
            batch.z0.device)
        x, renoise = out["blended"] * math.sqrt(1 + float(sigmas[0]) ** 2), None
    sampled = sample_fewstep_blended(denoiser, x, sigmas, {**batch.cond, "seed": cfg.seed}, disable=True,
                                     source=batch.z0, mask=batch.mask, **({"renoise": renoise} if renoise else {}))
    return [black_out(batch.image, batch.pixel_mask), decode(base, out["recon"], dtype),
            decode(base, sampled, dtype), batch.image]


# ---------------------------------------------------------------------------------- training


def split_prompts(cfg: InverFillConfig) -> tuple[list[str], list[str]]:
    prompts = read_prompts(cfg.prompts_file, "prompts_file")
    if cfg.eval_prompts_file:
        return prompts, read_prompts(cfg.eval_prompts_file, "eval_prompts_file")
    if len(prompts) <= cfg.eval_count:
        return prompts, prompts
    return prompts[: -cfg.eval_count], prompts[-cfg.eval_count:]


def check_config(cfg: InverFillConfig) -> None:
    check_common_config(cfg, flux=True)
    if is_flux_folder(cfg.base_model):
        if cfg.lambda_adv > 0:
            raise ValueError("lambda_adv: the LADD critic reads a UNet's mid/up blocks; set lambda_adv=0 for a FLUX "
                             "base (InverFill's DiT runs train without it here)")
        if cfg.teacher_model:
            raise ValueError("teacher_model: only the LADD critic reads a teacher, and a FLUX base runs without it")
    if cfg.teacher_model:
        try:
            check_base_model(cfg.teacher_model, cfg.single_file_config or None)
        except ValueError as err:
            raise ValueError(str(err).replace("base_model:", "teacher_model:", 1)) from None
    if cfg.masking not in ("pixel", "latent"):
        raise ValueError(f"masking: {cfg.masking!r} is not 'pixel' or 'latent'")
    if cfg.image_loss not in ("all", "known"):
        raise ValueError(f"image_loss: {cfg.image_loss!r} is not 'all' or 'known'")
    if cfg.resolution % 8:
        raise ValueError(f"resolution: {cfg.resolution} is not a multiple of 8")


def train(cfg: InverFillConfig, config_path: str = "") -> dict:
    """Run (or resume) training; returns a summary. Multi-process when launched with ``accelerate``."""
    check_config(cfg)
    train_prompts, eval_prompts = split_prompts(cfg)
    accelerator, compute_dtype, base = start_run(cfg)
    device, rank = accelerator.device, accelerator.process_index

    f_model = copy.deepcopy(network(base)).float().requires_grad_(True).train()  # F starts as the generator
    if cfg.gradient_checkpointing:
        f_model.enable_gradient_checkpointing()
        network(base).enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(f_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    adversary = (Adversary(cfg, critic_backbone(cfg, base, device, compute_dtype), device)
                 if cfg.lambda_adv > 0 else None)
    d_optimizer = torch.optim.AdamW(adversary.heads.parameters(), lr=cfg.adv_lr) if adversary else None
    if adversary:
        f_model, optimizer, adversary.heads, d_optimizer = accelerator.prepare(
            f_model, optimizer, adversary.heads, d_optimizer)
    else:
        f_model, optimizer = accelerator.prepare(f_model, optimizer)
    unwrapped = accelerator.unwrap_model(f_model)
    eval_batches = [make_batch(cfg, base, eval_prompts, step_generator(cfg.seed, i, 0, "eval"), device,
                               compute_dtype) for i in range(math.ceil(cfg.eval_count / cfg.batch_size))]
    f_eps, g_eps = forward_fn(base, f_model), forward_fn(base, network(base))

    def loss(batch, generator, critic_inputs):
        out = inverfill_forward(f_eps, g_eps, base, batch, compute_dtype, cfg.reblend)
        losses = compute_losses(cfg, out, batch)
        total = losses["loss"]
        if adversary:
            losses["adv_g"] = hinge_g_loss(adversary.logits(adversary.heads, out["recon"], batch.cond, generator,
                                                            compute_dtype))
            total = total + cfg.lambda_adv * losses["adv_g"]
            critic_inputs.append((out["recon"].detach(), batch, generator))
        return total, losses

    def step(i: int) -> dict:
        micro, critic_inputs = [], []
        for m in range(cfg.grad_accum):
            generator = step_generator(cfg.seed, i * cfg.grad_accum + m, rank)
            micro.append((make_batch(cfg, base, train_prompts, generator, device, compute_dtype), generator))
        logs = accumulate(accelerator, f_model, optimizer, list(f_model.parameters()),
                          [lambda b=b, g=g: loss(b, g, critic_inputs) for b, g in micro], cfg.max_grad_norm)[-1]
        if adversary:
            logs["adv_d"] = float(critic_step(adversary, d_optimizer, accelerator, critic_inputs, compute_dtype))
        return logs

    return run_training(cfg, accelerator, Recipe(
        name="InverFill", model=f_model, optimizer=optimizer, step=step, metric="known_mse",
        extras={"critic": (adversary.heads, d_optimizer)} if adversary else {},
        evaluate=lambda: evaluate(cfg, base, unwrapped, eval_batches, compute_dtype),
        preview=lambda: preview_rows(cfg, base, unwrapped, head(eval_batches[0], cfg.preview_count), compute_dtype),
        export=lambda: export(cfg, config_path, base, unwrapped),
        summary={"critic_backbone": (cfg.teacher_model or cfg.base_model) if adversary else None}))


def critic_step(adversary, d_optimizer, accelerator, inputs, dtype) -> torch.Tensor:
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


def export(cfg, config_path, base, model) -> Path:
    """F as InverFill Loader reads it (called with the EMA weights loaded)."""
    if is_flow(base):
        metadata = {"key_format": "diffusers", "architecture": "flux", "inversion_time": "0.5",
                    "masking": cfg.masking, "transformer_config": jsonable(base.transformer_config)}
    else:
        metadata = {"key_format": "diffusers", "inversion_timestep": "500", "masking": cfg.masking,
                    "unet_config": jsonable(base.unet_config)}
    return export_run(cfg, config_path, MODULE, model.state_dict(), metadata, base=base, kind="inverfill",
                      title="InverFill inversion network",
                      reference="https://arxiv.org/abs/2603.23463",
                      description=f"InverFill one-step inversion network trained from {Path(cfg.base_model).name} "
                                  f"for {cfg.max_steps} steps")


def main(argv: list[str] | None = None) -> int:
    return cli(InverFillConfig, train, argv)


if __name__ == "__main__":
    sys.exit(main())
