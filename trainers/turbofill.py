"""TurboFill trainer: a BrushNet-style adapter trained directly on a few-step model, three alternating updates.

    python -m trainers.turbofill --config trainers/configs/turbofill_sdxl.yaml [--key=value …]

Per step (Xie et al., CVPR 2025; docs/methods.md §2.3 — the wiring marked [I] there is decided here):
1. slow generator: t ~ U{0..999}, x_t = add_noise(z0, ε, t), ε̂ = teacher(x_t; + adapter) —
   ``L_diff = ‖ε̂ − ε‖²``; adapter updated.
2. fast generator: k ~ U{0..K−1} on the few-step grid (999/749/499/249); x_{t_k} by DMD2 backward
   simulation (the few-step model + adapter run without gradient from pure noise through the steps
   before k, fresh re-noise); x̂0 = x0_from_eps(fast(x_{t_k}; + adapter));
   ``λ_gan·softplus(−D(add_noise(x̂0, ε′, t′))) + λ_bg·‖(1−m)⊙(z0 − x̂0)‖²`` (masked mean over the
   known region); adapter updated, D frozen.
3. discriminator: real add_noise(z0, ·, t′) and fake add_noise(sg(x̂0), ε′, t′) in one pass;
   ``‖ε_D(fake) − ε′‖² + λ_d·[softplus(D(fake)) + softplus(−D(real))]``; D updated.
Adapter input: the noisy latent, the VAE latent of image·(1−m) (hole black) and the hole mask m
(1 = hole) at latent size (nearest-exact) — exactly what TurboFill Adapter Apply feeds in ComfyUI.
The adapter is initialised from the few-step UNet (BrushNet's from_unet, docs/methods.md §2.1), D's encoder
from the teacher.
Output: the adapter's (EMA) weights in one ``.safetensors`` that TurboFill Loader reads as is.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from core.schedules import add_noise, trailing_timesteps, x0_from_eps
from core.turbofill import (
    FillDiscriminator,
    TurboFillAdapter,
    config_from_unet,
    hint_mask,
    init_from_unet,
    masked_image,
)
from trainers.common.base_model import BaseModel, BaseModelError, load_base_model
from trainers.common.config import RunConfig
from trainers.common.data import step_generator
from trainers.common.export import export_run
from trainers.common.fill_data import load_mask, scan_fill_dataset
from trainers.common.images import load_image
from trainers.common.loop import COUNTS, Recipe, accumulate, check_common_config, cli, run_training, split_eval
from trainers.common.run import cast_tree, frozen_dtype, head, make_accelerator
from trainers.common.unet_walk import adm_vector, check_unet, walk_unet

MODULE = "trainers.turbofill"


@dataclass
class TurboFillConfig(RunConfig):
    """Every option; defaults follow the paper (docs/methods.md §2.3) where it states them."""

    base_model: str = ""  # the multi-step base (slow generator, discriminator init), diffusers folder or single file
    fast_unet: str = ""  # the few-step UNet (e.g. DMD2): diffusers UNet folder or .safetensors; "" = base_model's UNet
    images_dir: str = ""
    default_caption: str = ""
    eval_count: int = 4
    output_dir: str = "runs/turbofill"
    name: str = "turbofill"
    batch_size: int = 2
    grad_accum: int = 4
    max_steps: int = 40000
    d_lr: float = 1e-5
    max_grad_norm: float = 10.0
    lambda_gan: float = 1e-3
    lambda_bg: float = 1e-1
    lambda_d: float = 1e-2
    lambda_fake_diff: float = 1.0  # D's auxiliary ε loss on the fakes (L^F_Diff); 0 ablates it (TurboFill Table 3)
    steps: int = 4  # the fast generator's grid: trailing 999/749/499/249
    d_width: int = 256  # width of D's classifier and auxiliary decoder
    eval_every: int = 500
    preview_every: int = 1000
    phases: list = field(default_factory=lambda: ["slow", "fast", "disc"])  # drop one to ablate it


@dataclass
class Batch:
    images: torch.Tensor  # (B,3,R,R) in [0, 1]
    hole: torch.Tensor  # (B,1,R,R) pixel hole, 1 = regenerate
    source: torch.Tensor  # z0, model space
    hint: torch.Tensor  # [masked-image latent, hole mask at latent size]
    keep: torch.Tensor  # (B,1,h,w) 1 − latent hole
    cond: dict
    y: torch.Tensor | None


def masked_mean(value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.expand_as(value)
    return (value * weight).sum() / weight.sum().clamp_min(1.0)


def fast_unet_folder(fast_unet: str) -> Path | None:
    """The diffusers UNet folder ``fast_unet`` names, None for a ``.safetensors`` file; anything else is refused."""
    path = Path(fast_unet)
    if path.is_dir():
        folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise BaseModelError(f"fast_unet: {path} holds no diffusers UNet (config.json)")
        return folder
    if path.suffix != ".safetensors" or not path.is_file():
        raise BaseModelError(f"fast_unet: {path} is not a UNet folder or a .safetensors file (no pickle checkpoints)")
    return None


def load_fast_unet(cfg, base: BaseModel):
    """The few-step UNet: a diffusers UNet folder, a diffusers-keyed .safetensors with the base's config,
    or the base's."""
    if not cfg.fast_unet:
        return base.unet
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    folder = fast_unet_folder(cfg.fast_unet)
    if folder is not None:
        return UNet2DConditionModel.from_pretrained(folder, local_files_only=True)
    path = Path(cfg.fast_unet)
    unet = UNet2DConditionModel.from_config(base.unet.config)
    state = load_file(str(path))
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BaseModelError(f"fast_unet: {path} does not match the base UNet ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[:3]})")
    return unet


@torch.no_grad()
def make_batch(cfg, base: BaseModel, items, indices, device, dtype) -> Batch:
    images = torch.stack([load_image(items[i].image, cfg.resolution) for i in indices]).to(device)
    hole = torch.stack([load_mask(items[i].mask, cfg.resolution) for i in indices]).to(device)

    def encode(pixels):
        return base.vae.encode((pixels * 2 - 1).to(dtype)).latent_dist.mean.float() * base.scaling_factor

    source, background = encode(images), encode(masked_image(images, hole))
    latent_hole = hint_mask(hole, source.shape[-2:])
    cond = base.encode_prompts([items[i].caption for i in indices], device, (cfg.resolution, cfg.resolution))
    y = adm_vector(base.unet, cond.get("added_cond_kwargs"))
    return Batch(images, hole, source, torch.cat([background, latent_hole], 1), 1 - latent_hole, cond,
                 None if y is None else y.float())


class Networks:
    """The frozen teacher and few-step UNets, the trainable adapter and discriminator, and the schedule."""

    def __init__(self, cfg, base: BaseModel, fast_unet, adapter, disc, dtype):
        self.cfg, self.base, self.fast, self.adapter, self.disc, self.dtype = cfg, base, fast_unet, adapter, disc, dtype
        self.alphas = base.alphas_cumprod.float()
        self.grid = list(trailing_timesteps(cfg.steps))

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas.to(t.device)[t.long()]

    def eps(self, unet, adapter, x, t, batch: Batch, checkpointing=False):
        """ε̂ of a frozen UNet with the adapter's residuals (ComfyUI's control layout)."""
        cond = cast_tree(batch.cond, self.dtype)
        control = adapter(x.to(torch.float32), batch.hint, t.float(), y=batch.y)
        return walk_unet(unet, x.to(self.dtype), cond["encoder_hidden_states"], timesteps=t,
                         added_cond_kwargs=cond.get("added_cond_kwargs"), control=control,
                         gradient_checkpointing=checkpointing).float()

    def slow_loss(self, adapter, batch: Batch, g: torch.Generator) -> torch.Tensor:
        """Step 1: ε-MSE of the multi-step base + adapter (L^R_Diff)."""
        b = batch.source.shape[0]
        t = torch.randint(0, 1000, (b,), generator=g).to(batch.source.device)
        noise = torch.randn(batch.source.shape, generator=g).to(batch.source)
        x_t = add_noise(batch.source, noise, self.abar(t))
        return F.mse_loss(self.eps(self.base.unet, adapter, x_t, t, batch, self.cfg.gradient_checkpointing), noise)

    def fast_x0(self, adapter, x, step: int, batch: Batch, checkpointing=False):
        t = torch.full((x.shape[0],), self.grid[step], device=x.device, dtype=torch.long)
        return x0_from_eps(x, self.eps(self.fast, adapter, x, t, batch, checkpointing), self.abar(t))

    @torch.no_grad()
    def simulate(self, adapter, batch: Batch, k: int, g: torch.Generator) -> torch.Tensor:
        """DMD2 backward simulation: x_{t_k} from pure noise through the few-step model's steps before k."""
        x = torch.randn(batch.source.shape, generator=g).to(batch.source)
        for j in range(k):
            x0 = self.fast_x0(adapter, x, j, batch)
            t_next = torch.full((x.shape[0],), self.grid[j + 1], device=x.device, dtype=torch.long)
            x = add_noise(x0, torch.randn(x.shape, generator=g).to(x), self.abar(t_next))
        return x

    def fast_loss(self, adapter, disc_module, batch: Batch,
                  g: torch.Generator) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Step 2: λ_gan·L_G + λ_bg·L_BG on the few-step model's x̂0 (D's weights frozen)."""
        k = int(torch.randint(0, len(self.grid), (1,), generator=g))
        x = self.simulate(adapter, batch, k, g)
        x0 = self.fast_x0(adapter, x, k, batch, self.cfg.gradient_checkpointing)
        l_bg = masked_mean((batch.source - x0) ** 2, batch.keep)
        l_gan = torch.zeros((), device=x0.device)
        if self.cfg.lambda_gan > 0 and disc_module is not None:
            t = torch.randint(0, 1000, (x0.shape[0],), generator=g).to(x0.device)
            noisy = add_noise(x0, torch.randn(x0.shape, generator=g).to(x0), self.abar(t))
            logit, _ = disc_module(noisy, batch.hint, t.float(), y=batch.y)
            l_gan = F.softplus(-logit).mean()
        loss = self.cfg.lambda_bg * l_bg + self.cfg.lambda_gan * l_gan
        return loss, {"bg": float(l_bg.detach()), "gan_g": float(l_gan.detach())}, x0.detach()

    def disc_loss(self, disc, batch: Batch, fake_x0: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Step 3: fake diffusion loss (auxiliary decoder) + λ_d·softplus GAN loss, real and fake in one pass."""
        b = fake_x0.shape[0]
        t = torch.randint(0, 1000, (2 * b,), generator=g).to(fake_x0.device)
        noise = torch.randn((2 * b, *fake_x0.shape[1:]), generator=g).to(fake_x0)
        x = add_noise(torch.cat([fake_x0, batch.source]), noise, self.abar(t))
        y = None if batch.y is None else torch.cat([batch.y, batch.y])
        logit, eps = disc(x, torch.cat([batch.hint, batch.hint]), t.float(), y=y)
        l_diff = F.mse_loss(eps[:b], noise[:b])
        l_d = F.softplus(logit[:b]).mean() + F.softplus(-logit[b:]).mean()
        loss = self.cfg.lambda_fake_diff * l_diff + self.cfg.lambda_d * l_d
        return loss, {"fake_diff": float(l_diff.detach()), "gan_d": float(l_d.detach())}

    @torch.no_grad()
    def generate(self, adapter, batch: Batch, g: torch.Generator) -> torch.Tensor:
        """The few-step model + adapter from pure noise over the whole grid (DMD2 sampling, no blending)."""
        return self.fast_x0(adapter, self.simulate(adapter, batch, len(self.grid) - 1, g), len(self.grid) - 1, batch)

    @torch.no_grad()
    def evaluate(self, adapter, batches: list[Batch], seed: int) -> dict:
        """Held-out known-region error of the 4-step fill and hole ε-MSE of the slow generator (fixed noise)."""
        bg, hole = [], []
        for i, batch in enumerate(batches):
            x0 = self.generate(adapter, batch, torch.Generator().manual_seed(seed + i))
            bg.append(float(masked_mean((batch.source - x0) ** 2, batch.keep)))
            g = torch.Generator().manual_seed(seed + 1000 + i)
            t = torch.randint(0, 1000, (x0.shape[0],), generator=g).to(x0.device)
            noise = torch.randn(x0.shape, generator=g).to(x0)
            eps = self.eps(self.base.unet, adapter, add_noise(batch.source, noise, self.abar(t)), t, batch)
            hole.append(float(masked_mean((eps - noise) ** 2, 1 - batch.keep)))
        return {"background_loss": sum(bg) / len(bg), "hole_eps_mse": sum(hole) / len(hole)}

    @torch.no_grad()
    def preview_rows(self, adapter, batch: Batch, seed: int) -> list[torch.Tensor]:
        """Masked input | 4-step fill | fill pasted into the original | original."""
        x0 = self.generate(adapter, batch, torch.Generator().manual_seed(seed))
        fill = ((self.base.vae.decode((x0 / self.base.scaling_factor).to(self.dtype)).sample.float() + 1)
                / 2).clamp(0, 1)
        fill = F.interpolate(fill, size=batch.images.shape[-2:], mode="bilinear", align_corners=False)
        pasted = batch.images * (1 - batch.hole) + fill * batch.hole
        return [masked_image(batch.images, batch.hole), fill, pasted, batch.images]


def check_config(cfg: TurboFillConfig) -> None:
    check_common_config(cfg, (*COUNTS, "steps"))
    if not cfg.images_dir:
        raise ValueError("images_dir: set it to a folder of name.png + name_mask.png + name.txt samples "
                         "(python -m trainers.region_dataset builds one)")
    unknown = set(cfg.phases) - {"slow", "fast", "disc"}
    if unknown or not cfg.phases:
        raise ValueError(f"phases: {cfg.phases} must be a non-empty subset of slow, fast, disc")
    for name in ("lambda_gan", "lambda_bg", "lambda_d", "lambda_fake_diff"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}: must not be negative")
    if cfg.fast_unet:
        fast_unet_folder(cfg.fast_unet)


def three_updates(cfg, accelerator, nets: Networks, micro: list, adapter, optimizer, disc, d_optimizer) -> dict:
    """One training step: the slow-generator, fast-generator and discriminator updates (TurboFill §3.2), each over
    all micro-batches ``[(batch, generator), …]``; the fast step's x̂0 are the discriminator's fakes."""
    adapter_params = [p for p in adapter.parameters() if p.requires_grad]
    disc_unwrapped = accelerator.unwrap_model(disc)
    logs = {}
    if "slow" in cfg.phases:
        out = accumulate(accelerator, adapter, optimizer, adapter_params,
                         [lambda b=b, g=g: (nets.slow_loss(adapter, b, g), {}) for b, g in micro], cfg.max_grad_norm)
        logs["slow/loss"] = sum(o["loss"] for o in out) / len(out)
    fakes = []
    if "fast" in cfg.phases or "disc" in cfg.phases:
        disc_unwrapped.requires_grad_(False)

        def fast_micro(b, g, fakes=fakes):
            loss, log, x0 = nets.fast_loss(adapter, disc_unwrapped, b, g)
            fakes.append(x0)
            return loss, log

        if "fast" in cfg.phases:
            out = accumulate(accelerator, adapter, optimizer, adapter_params,
                             [lambda b=b, g=g: fast_micro(b, g) for b, g in micro], cfg.max_grad_norm)
            logs.update({"fast/loss": out[-1]["loss"], "fast/background": out[-1]["bg"],
                         "fast/gan_g": out[-1]["gan_g"]})
        else:
            fakes = [nets.generate(adapter, b, g) for b, g in micro]
        disc_unwrapped.requires_grad_(True)
    if "disc" in cfg.phases:
        d_optimizer.zero_grad(set_to_none=True)
        out = accumulate(accelerator, disc, d_optimizer, list(disc.parameters()),
                         [lambda b=b, g=g, f=f: nets.disc_loss(disc, b, f, g) for (b, g), f in zip(micro, fakes)],
                         cfg.max_grad_norm)
        logs.update({"disc/loss": out[-1]["loss"], "disc/fake_diffusion": out[-1]["fake_diff"],
                     "disc/gan": out[-1]["gan_d"]})
    return logs


def train(cfg: TurboFillConfig, config_path: str = "") -> dict:
    check_config(cfg)
    items, skipped = scan_fill_dataset(cfg.images_dir, cfg.default_caption)
    train_items, eval_items = split_eval(items, cfg.eval_count)
    accelerator = make_accelerator(cfg, Path(cfg.output_dir))
    device, rank = accelerator.device, accelerator.process_index
    dtype = frozen_dtype(cfg, device)
    base = load_base_model(cfg.base_model, single_file_config=cfg.single_file_config or None).frozen()
    fast = load_fast_unet(cfg, base)
    for unet in {id(base.unet): base.unet, id(fast): fast}.values():
        check_unet(unet)
        unet.requires_grad_(False).eval()
    base.to(device, dtype)
    fast.to(device, dtype)
    torch.manual_seed(cfg.seed)  # D's new heads start the same on every rank and every (re)start
    adapter = TurboFillAdapter(config_from_unet(dict(fast.config)))
    init_from_unet(adapter, fast.state_dict())
    disc = FillDiscriminator(config_from_unet(dict(base.unet.config)), width=cfg.d_width)
    init_from_unet(disc.encoder, base.unet.state_dict())
    if cfg.gradient_checkpointing:
        adapter.gradient_checkpointing = disc.encoder.gradient_checkpointing = True
    adapter.to(device)
    disc.to(device)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    d_optimizer = torch.optim.AdamW(disc.parameters(), lr=cfg.d_lr, weight_decay=cfg.weight_decay)
    adapter, optimizer, disc, d_optimizer = accelerator.prepare(adapter, optimizer, disc, d_optimizer)
    unwrapped = accelerator.unwrap_model(adapter)
    nets = Networks(cfg, base, fast, adapter, disc, dtype)
    eval_batches = [make_batch(cfg, base, eval_items, range(i, min(i + cfg.batch_size, len(eval_items))), device, dtype)
                    for i in range(0, len(eval_items), cfg.batch_size)]

    def step(i: int) -> dict:
        micro = []
        for m in range(cfg.grad_accum):
            g = step_generator(cfg.seed, i * cfg.grad_accum + m, rank)
            indices = torch.randint(len(train_items), (cfg.batch_size,), generator=g).tolist()
            micro.append((make_batch(cfg, base, train_items, indices, device, dtype), g))
        return three_updates(cfg, accelerator, nets, micro, adapter, optimizer, disc, d_optimizer)

    return run_training(cfg, accelerator, Recipe(
        name="TurboFill", model=adapter, optimizer=optimizer, step=step, extras={"discriminator": (disc, d_optimizer)},
        evaluate=lambda: nets.evaluate(unwrapped, eval_batches, cfg.seed),
        preview=lambda: nets.preview_rows(unwrapped, head(eval_batches[0], cfg.preview_count), cfg.seed),
        export=lambda: export(cfg, config_path, base, unwrapped),
        metrics={"skipped": skipped}, summary={"skipped_samples": len(skipped)}))


def export(cfg, config_path, base, adapter: TurboFillAdapter) -> Path:
    metadata = {"adapter_config": adapter.config.to_dict(), "mask_polarity": "1=hole",
                "masked_image": "image*(1-hole), hole black, VAE-encoded, model space",
                "timesteps": ",".join(map(str, trailing_timesteps(cfg.steps)))}
    state = {k: v.detach().cpu() for k, v in adapter.state_dict().items()}
    return export_run(cfg, config_path, MODULE, state, metadata, base=base, kind="turbofill", title="TurboFill adapter",
                      reference="https://arxiv.org/abs/2504.00996",
                      description=f"TurboFill inpainting adapter for the few-step "
                                  f"{Path(cfg.fast_unet or cfg.base_model).name}")


def main(argv: list[str] | None = None) -> int:
    return cli(TurboFillConfig, train, argv)


if __name__ == "__main__":
    sys.exit(main())
