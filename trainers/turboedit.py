"""TurboEdit trainer: learn the iterative inversion encoder E for a few-step base model.

    python -m trainers.turboedit --config trainers/configs/turboedit_sdxl_turbo.yaml [--key=value …]

E is the base UNet with 2C input channels cat[z, x̂0_{k−1}] and 2C outputs (μ, log σ²), initialised
from the base (extra input channels and the log σ² head start at zero). For a random step k of the
N-step trajectory (Wu et al., ECCV 2024; docs/methods.md §4.2): run E and the frozen one-step generator G
without gradients through steps < k (backward simulation, as DMD2 trains its generator), then
ε_k = μ + σ⊙n, x_k = ε_k·√(1+σ_0²) (k = 0) or x̂0_{k−1} + σ_k·ε_k, x̂0_k = G(x_k, σ_k); loss
‖x̂0_k − z‖² + λ_KL·KL(N(μ,σ²)‖N(0,I)). Data: a folder of images with optional ``.txt`` captions.
Output ``<output_dir>/<name>.safetensors`` loads into *TurboEdit Encoder Loader* as is.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.denoiser import EpsDenoiser
from core.schedules import fewstep_sigmas, sigmas_from_alphas_cumprod, trailing_timesteps
from core.turboedit import encoder_step, gaussian_kl, invert_with_encoder, reparameterise
from trainers.common.base_model import BaseModel, unet_eps_fn
from trainers.common.config import RunConfig
from trainers.common.data import step_generator
from trainers.common.export import export_run
from trainers.common.images import load_image, scan_images
from trainers.common.loop import (
    COUNTS, Recipe, accumulate, check_common_config, cli, run_training, split_eval, start_run,
)
from trainers.common.run import cast_tree, head, jsonable

MODULE = "trainers.turboedit"


@dataclass
class TurboEditConfig(RunConfig):
    """Every option; defaults follow the TurboEdit paper's SDXL-Turbo setting where it states one."""

    images_dir: str = ""  # images with optional same-name .txt captions
    default_caption: str = ""  # caption for images without .txt (empty: such images are skipped)
    eval_count: int = 4  # the last images (sorted by name) are held out for evaluation
    output_dir: str = "runs/turboedit"
    name: str = "turboedit"
    resolution: int = 512
    steps: int = 4  # the few-step trajectory inverted (trailing timesteps: 999, 749, 499, 249)
    max_steps: int = 5000
    lambda_kl: float = 1e-3
    sample_noise: bool = True  # reparameterised sampling of ε during training (μ at evaluation/inference)
    extra: dict = field(default_factory=dict)  # free-form notes stored in the metadata


@dataclass
class Batch:
    images: torch.Tensor  # (B,3,H,W) in [0, 1]
    source: torch.Tensor  # z, model space
    cond: dict
    captions: list[str]


def encoder_from_base(unet: torch.nn.Module) -> torch.nn.Module:
    """A UNet like ``unet`` with 2C in/out channels; base weights copied, new channels zero (σ = 1 at init)."""
    from diffusers import UNet2DConditionModel

    c = unet.config.in_channels
    config = {**dict(unet.config), "in_channels": 2 * c, "out_channels": 2 * c}
    encoder = UNet2DConditionModel.from_config(config).to(dtype=torch.float32)
    base, new = unet.state_dict(), encoder.state_dict()
    with torch.no_grad():
        for key, value in new.items():
            if key == "conv_in.weight":
                value.zero_()
                value[:, :c] = base[key]
            elif key in ("conv_out.weight", "conv_out.bias"):
                value.zero_()
                value[:c] = base[key]
            elif key in base and base[key].shape == value.shape:
                value.copy_(base[key])
    return encoder


def generator_denoiser(base: BaseModel, dtype) -> EpsDenoiser:
    """The frozen few-step generator G as a VE x̂0-denoiser (same maths as ComfyUI's EPS sampling)."""
    eps = unet_eps_fn(base.unet)
    return EpsDenoiser(lambda x, t, **c: eps(x.to(dtype), t, **cast_tree(c, dtype)).float(), base.alphas_cumprod)


def encoder_fn(encoder, sigma_table, cond: dict, dtype, *, sample: bool = False, generator=None):
    """``encoder(z, x̂0_prev, σ) → ε`` for core.invert_with_encoder, on discrete timesteps t(σ)."""
    from core.schedules import timestep_from_sigma

    eps = unet_eps_fn(encoder)

    def fn(source, previous, sigma):
        t = timestep_from_sigma(sigma, sigma_table).round()
        mean, logvar = encoder_step(lambda x, tt, **c: eps(x.to(dtype), tt, **cast_tree(c, dtype)).float(),
                                    source, previous, t, **cond)
        return reparameterise(mean, logvar, generator) if sample else mean

    return fn


@torch.no_grad()
def make_batch(cfg, base: BaseModel, items, indices, device, dtype) -> Batch:
    images = torch.stack([load_image(items[i].path, cfg.resolution) for i in indices]).to(device)
    latent = base.vae.encode((images * 2 - 1).to(dtype)).latent_dist.mean.float() * base.scaling_factor
    captions = [items[i].caption for i in indices]
    return Batch(images, latent, base.encode_prompts(captions, device, (cfg.resolution, cfg.resolution)), captions)


def compute_losses(cfg, encoder, g_model, sigmas, sigma_table, batch: Batch, k: int, generator, dtype) -> dict:
    """Loss of step k after a gradient-free simulation of steps < k with the current encoder."""
    previous = torch.zeros_like(batch.source)
    if k > 0:
        with torch.no_grad():
            first_k = torch.cat([sigmas[:k], sigmas.new_zeros(1)])  # the k steps before this one
            partial = invert_with_encoder(g_model, encoder_fn(encoder, sigma_table, batch.cond, dtype), batch.source,
                                          first_k, batch.cond, disable=True)
            previous = partial.x0s[k - 1]
    s_in = batch.source.new_ones(batch.source.shape[0])
    t = torch.round(_timestep(sigmas[k], sigma_table)).expand(batch.source.shape[0])
    eps_unet = unet_eps_fn(encoder)
    mean, logvar = encoder_step(lambda x, tt, **c: eps_unet(x.to(dtype), tt, **cast_tree(c, dtype)).float(),
                                batch.source, previous, t, **batch.cond)
    eps = reparameterise(mean, logvar, generator) if cfg.sample_noise else mean
    x = eps * torch.sqrt(1 + sigmas[0] ** 2) if k == 0 else previous + sigmas[k] * eps
    x0 = g_model(x, sigmas[k] * s_in, **batch.cond)
    recon = F.mse_loss(x0, batch.source)
    kl = gaussian_kl(mean, logvar)
    return {"loss": recon + cfg.lambda_kl * kl, "recon": recon, "kl": kl}


def _timestep(sigma, table):
    from core.schedules import timestep_from_sigma

    return timestep_from_sigma(sigma.reshape(1), table)[0]


@torch.no_grad()
def evaluate(encoder, g_model, sigmas, sigma_table, batches: list[Batch], dtype) -> float:
    """Held-out reconstruction error: ‖x̂0_{N−1} − z‖² after the full 2N-pass inversion with ε = μ."""
    errors = []
    for b in batches:
        traj = invert_with_encoder(g_model, encoder_fn(encoder, sigma_table, b.cond, dtype), b.source, sigmas,
                                   b.cond, disable=True)
        errors.append(float(F.mse_loss(traj.x0s[-1], b.source)))
    return sum(errors) / len(errors)


@torch.no_grad()
def preview_rows(base, encoder, g_model, sigmas, sigma_table, batch: Batch, dtype) -> list[torch.Tensor]:
    """Input | reconstruction after each of the N steps."""
    traj = invert_with_encoder(g_model, encoder_fn(encoder, sigma_table, batch.cond, dtype), batch.source, sigmas,
                               batch.cond, disable=True)

    def decode(z):
        return ((base.vae.decode((z / base.scaling_factor).to(dtype)).sample.float() + 1) / 2).clamp(0, 1)

    return [batch.images] + [decode(x0) for x0 in traj.x0s]


def check_config(cfg: TurboEditConfig) -> None:
    check_common_config(cfg, ("steps", *COUNTS))
    if not cfg.images_dir:
        raise ValueError("images_dir: set it to a folder of images (optional same-name .txt captions)")
    if cfg.resolution % 8:
        raise ValueError(f"resolution: {cfg.resolution} is not a multiple of 8")


def train(cfg: TurboEditConfig, config_path: str = "") -> dict:
    check_config(cfg)
    items, skipped = scan_images(cfg.images_dir, cfg.default_caption)
    train_items, eval_items = split_eval(items, cfg.eval_count)
    accelerator, dtype, base = start_run(cfg)
    device, rank = accelerator.device, accelerator.process_index
    sigma_table = sigmas_from_alphas_cumprod(base.alphas_cumprod).float()
    sigmas = fewstep_sigmas(trailing_timesteps(cfg.steps), sigma_table).to(device)
    g_model = generator_denoiser(base, dtype)

    encoder = encoder_from_base(base.unet).to(device).train()
    if cfg.gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
        base.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    encoder, optimizer = accelerator.prepare(encoder, optimizer)
    unwrapped = accelerator.unwrap_model(encoder)
    eval_batches = [make_batch(cfg, base, eval_items, range(i, min(i + cfg.batch_size, len(eval_items))), device, dtype)
                    for i in range(0, len(eval_items), cfg.batch_size)]

    def step(i: int) -> dict:
        micro = []
        for m in range(cfg.grad_accum):
            generator = step_generator(cfg.seed, i * cfg.grad_accum + m, rank)
            indices = torch.randint(len(train_items), (cfg.batch_size,), generator=generator).tolist()
            k = int(torch.randint(cfg.steps, (), generator=generator))
            micro.append((make_batch(cfg, base, train_items, indices, device, dtype), k, generator))

        def loss(batch, k, generator):
            losses = compute_losses(cfg, encoder, g_model, sigmas, sigma_table, batch, k, generator, dtype)
            return losses["loss"], losses

        out = accumulate(accelerator, encoder, optimizer, list(encoder.parameters()),
                         [lambda b=b, k=k, g=g: loss(b, k, g) for b, k, g in micro], cfg.max_grad_norm)
        return out[-1]

    return run_training(cfg, accelerator, Recipe(
        name="TurboEdit", model=encoder, optimizer=optimizer, step=step, metric="recon_mse",
        evaluate=lambda: evaluate(unwrapped, g_model, sigmas, sigma_table, eval_batches, dtype),
        preview=lambda: preview_rows(base, unwrapped, g_model, sigmas, sigma_table,
                                     head(eval_batches[0], cfg.preview_count), dtype),
        export=lambda: export(cfg, config_path, base, unwrapped),
        metrics={"skipped": skipped}, summary={"skipped_images": len(skipped)}))


def export(cfg, config_path, base, model) -> Path:
    """The encoder as TurboEdit Encoder Loader reads it (called with the EMA weights loaded)."""
    metadata = {"key_format": "diffusers", "steps": str(cfg.steps), "unet_config": jsonable(dict(model.config)),
                "timesteps": ",".join(map(str, trailing_timesteps(cfg.steps)))}
    return export_run(cfg, config_path, MODULE, model.state_dict(), metadata, base=base, kind="turboedit",
                      title="TurboEdit inversion encoder",
                      reference="https://arxiv.org/abs/2408.08332",
                      description=f"TurboEdit {cfg.steps}-step inversion encoder trained from "
                                  f"{Path(cfg.base_model).name}")


def main(argv: list[str] | None = None) -> int:
    return cli(TurboEditConfig, train, argv)


if __name__ == "__main__":
    sys.exit(main())
