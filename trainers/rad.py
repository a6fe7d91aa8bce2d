"""RAD trainer: LoRA + fully trained time layers so a few-step UNet works with per-pixel noise levels.

    python -m trainers.rad --config trainers/configs/rad_sdxl.yaml [--key=value …]

Per step (Kim et al., CVPR 2025, §3.4, adapted to latents, docs/methods.md §3.6): a Perlin hole m at
latent resolution (random cell size, masked fraction ~ U(0, 1)), t ~ U{t_min..t_max}; per-pixel
ā = ᾱ_t^{g(m)}, x = √ā⊙z0 + √(1−ā)⊙ε, τ = τ(ā) per pixel; ε̂ = UNet(x, τ-map) with the spatial time
embedding; loss = element-wise ε-MSE over the noised pixels. Trained: LoRA (rank r) on attention
(to_q/k/v/out) and convolutions (conv1/conv2/conv_in/conv_out), and every time layer in full; the
base stays frozen. Output: one ``.safetensors`` in the kohya LoRA layout with ``.diff`` keys for the
time layers: core LoraLoader and the Region-Aware Sampler both load it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.lora import diff_state, inject_lora, lora_state
from core.rad import abar_phase1, nu_of, region_aware_denoise, sample_region_aware, sigma_maps, timestep_map
from core.random_masks import perlin_mask, pixel_mask
from core.schedules import fewstep_sigmas, sigmas_from_alphas_cumprod, trailing_timesteps
from trainers.common.base_model import BaseModel
from trainers.common.config import RunConfig
from trainers.common.data import step_generator
from trainers.common.export import export_run
from trainers.common.images import load_image, scan_images
from trainers.common.loop import Recipe, accumulate, check_common_config, cli, run_training, split_eval, start_run
from trainers.common.run import cast_tree, head
from trainers.common.unet_walk import check_unet, spatial_forward

MODULE = "trainers.rad"
TIME_LAYERS = ("time_embedding.linear_1", "time_embedding.linear_2", "time_emb_proj")
RAD_MASKS = {"perlin": perlin_mask, "pixel": pixel_mask}


@dataclass
class RADConfig(RunConfig):
    """Every option; defaults follow the paper (docs/methods.md §3.4) where they carry over to latents."""

    images_dir: str = ""
    default_caption: str = "a photo"
    eval_count: int = 4
    output_dir: str = "runs/rad"
    name: str = "rad"
    grad_accum: int = 8
    max_steps: int = 10000
    lr: float = 1e-4
    rank: int = 16
    lora_alpha: float = 16.0
    lora_targets: list = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2",
                                                        "conv_in", "conv_out"])
    timestep_range: list = field(default_factory=lambda: [0, 999])
    mask_fraction: list = field(default_factory=lambda: [0.0, 1.0])
    mask_kind: str = "perlin"  # perlin (the paper's) | pixel (independent pixels: the paper's ablation)
    steps: int = 4  # the few-step grid used for previews and recorded in the metadata
    preview_every: int = 500


@dataclass
class Batch:
    images: torch.Tensor
    source: torch.Tensor  # z0, model space
    cond: dict
    mask: torch.Tensor  # (B,1,h,w) hole at latent resolution (Perlin, or independent pixels)
    t: torch.Tensor  # (B,)
    noise: torch.Tensor


def is_time_layer(name: str) -> bool:
    return any(part in name for part in TIME_LAYERS)


def prepare_unet(unet, cfg: RADConfig) -> tuple[dict, dict]:
    """Freeze the base, inject LoRA, unfreeze the time layers; returns (loras, base time weights)."""
    check_unet(unet)
    unet.requires_grad_(False)
    time_base = {k: v.detach().clone() for k, v in unet.state_dict().items() if is_time_layer(k)}
    loras = inject_lora(unet, list(cfg.lora_targets), cfg.rank, cfg.lora_alpha)
    adapter_prefixes = tuple(f"{p}.{part}." for p in loras for part in ("down", "up"))
    for name, param in unet.named_parameters():
        if name.startswith(adapter_prefixes) or is_time_layer(name):
            param.requires_grad_(True)
    return loras, time_base


def exported_state(unet, loras: dict, time_base: dict) -> dict[str, torch.Tensor]:
    """kohya LoRA tensors + ``.diff`` deltas of the time layers."""
    trained = {k: v for k, v in unet.state_dict().items() if is_time_layer(k)}
    return {**lora_state(loras), **diff_state(trained, time_base)}


@torch.no_grad()
def make_batch(cfg, base: BaseModel, items, indices, generator, device, dtype) -> Batch:
    images = torch.stack([load_image(items[i].path, cfg.resolution) for i in indices]).to(device)
    source = base.vae.encode((images * 2 - 1).to(dtype)).latent_dist.mean.float() * base.scaling_factor
    b, _, h, w = source.shape
    draw = RAD_MASKS[cfg.mask_kind]
    mask = torch.stack([draw(h, w, generator, fraction=tuple(cfg.mask_fraction)) for _ in range(b)]).to(device)
    lo, hi = cfg.timestep_range
    t = torch.randint(lo, hi + 1, (b,), generator=generator).to(device)
    noise = torch.randn(source.shape, generator=generator).to(device)
    cond = base.encode_prompts([items[i].caption for i in indices], device, (cfg.resolution, cfg.resolution))
    return Batch(images, source, cond, mask, t, noise)


def compute_loss(unet, base: BaseModel, batch: Batch, dtype, checkpointing: bool) -> torch.Tensor:
    """Element-wise ε-MSE over the noised pixels at per-pixel noise levels ā = ᾱ_t^{g(m)}."""
    alphas = base.alphas_cumprod.to(batch.source.device)
    abar = torch.stack([abar_phase1(float(alphas[t]), m, nu_of(alphas)) for t, m in zip(batch.t, batch.mask)])
    abar = abar.to(batch.source.device)
    x = abar.sqrt().float() * batch.source + (1 - abar).sqrt().float() * batch.noise
    tau = timestep_map(abar, alphas)
    cond = cast_tree(batch.cond, dtype)
    eps = spatial_forward(unet, x.to(dtype), tau, cond["encoder_hidden_states"], cond.get("added_cond_kwargs"),
                          gradient_checkpointing=checkpointing).float()
    weight = (batch.mask > 0).float().expand_as(eps)
    return ((eps - batch.noise) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def evaluate(unet, base, batches, dtype) -> float:
    return sum(float(compute_loss(unet, base, b, dtype, False)) for b in batches) / len(batches)


@torch.no_grad()
def preview_rows(cfg, unet, base: BaseModel, batch: Batch, dtype) -> list[torch.Tensor]:
    """Masked input | region-aware few-step fill | original."""
    table = sigmas_from_alphas_cumprod(base.alphas_cumprod).float()
    timesteps = trailing_timesteps(cfg.steps)
    hole = (batch.mask > 0.5).float()
    maps = sigma_maps(base.alphas_cumprod, timesteps, hole)
    cond = cast_tree(batch.cond, dtype)

    def eps_fn(x, tau, **c):
        return spatial_forward(unet, x.to(dtype), tau, cond["encoder_hidden_states"],
                               cond.get("added_cond_kwargs")).float()

    def model(x, smap, **kw):
        return region_aware_denoise(eps_fn, x, smap.to(x), table.to(x.device))

    generator = torch.Generator().manual_seed(cfg.seed)
    out = sample_region_aware(model, batch.source, fewstep_sigmas(timesteps, table), disable=True,
                              source=batch.source, maps=maps,
                              noise_sampler=lambda i: torch.randn(batch.source.shape,
                                                                  generator=generator).to(batch.source))

    def decode(z):
        return ((base.vae.decode((z / base.scaling_factor).to(dtype)).sample.float() + 1) / 2).clamp(0, 1)

    pixel_hole = torch.nn.functional.interpolate(hole, size=batch.images.shape[-2:], mode="nearest")
    return [batch.images * (1 - pixel_hole), decode(out), batch.images]


def check_config(cfg: RADConfig) -> None:
    check_common_config(cfg)
    if not cfg.images_dir:
        raise ValueError("images_dir: set it to a folder of images (optional same-name .txt captions)")
    if cfg.rank < 1:
        raise ValueError(f"rank: must be at least 1, got {cfg.rank}")
    lo, hi = cfg.timestep_range
    if not 0 <= lo <= hi <= 999:
        raise ValueError(f"timestep_range: {cfg.timestep_range} must satisfy 0 ≤ lo ≤ hi ≤ 999")
    if cfg.mask_kind not in RAD_MASKS:
        raise ValueError(f"mask_kind: {cfg.mask_kind!r} is not one of {', '.join(RAD_MASKS)}")


def train(cfg: RADConfig, config_path: str = "") -> dict:
    check_config(cfg)
    items, skipped = scan_images(cfg.images_dir, cfg.default_caption)
    train_items, eval_items = split_eval(items, cfg.eval_count)
    accelerator, dtype, base = start_run(cfg)
    device, rank = accelerator.device, accelerator.process_index
    unet = base.unet
    loras, time_base = prepare_unet(unet, cfg)
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    unwrapped = accelerator.unwrap_model(unet)
    eval_batches = []
    for i in range(0, len(eval_items), cfg.batch_size):
        g = step_generator(cfg.seed, i, 0, "eval")
        eval_batches.append(make_batch(cfg, base, eval_items, range(i, min(i + cfg.batch_size, len(eval_items))), g,
                                       device, dtype))

    def step(i: int) -> dict:
        micro = []
        for m in range(cfg.grad_accum):
            generator = step_generator(cfg.seed, i * cfg.grad_accum + m, rank)
            indices = torch.randint(len(train_items), (cfg.batch_size,), generator=generator).tolist()
            micro.append(make_batch(cfg, base, train_items, indices, generator, device, dtype))
        out = accumulate(accelerator, unet, optimizer, trainable,
                         [lambda b=b: (compute_loss(unwrapped, base, b, dtype, cfg.gradient_checkpointing), {})
                          for b in micro], cfg.max_grad_norm)
        return out[-1]

    return run_training(cfg, accelerator, Recipe(
        name="RAD", model=unet, optimizer=optimizer, step=step, metric="masked_eps_mse", trainable_only=True,
        evaluate=lambda: evaluate(unwrapped, base, eval_batches, dtype),
        preview=lambda: preview_rows(cfg, unwrapped, base, head(eval_batches[0], cfg.preview_count), dtype),
        export=lambda: export(cfg, config_path, base, exported_state(unwrapped, loras, time_base)),
        metrics={"skipped": skipped}, summary={"skipped_images": len(skipped)}))


def export(cfg, config_path, base, state: dict) -> Path:
    metadata = {"key_format": "kohya", "rank": str(cfg.rank), "lora_alpha": str(cfg.lora_alpha),
                "timesteps": ",".join(map(str, trailing_timesteps(cfg.steps)))}
    return export_run(cfg, config_path, MODULE, state, metadata, base=base, kind="rad", title="RAD LoRA + time layers",
                      reference="https://arxiv.org/abs/2412.09191",
                      description=f"RAD per-pixel time embedding LoRA (rank {cfg.rank}) for "
                                  f"{Path(cfg.base_model).name}")


def main(argv: list[str] | None = None) -> int:
    return cli(RADConfig, train, argv)


if __name__ == "__main__":
    sys.exit(main())
