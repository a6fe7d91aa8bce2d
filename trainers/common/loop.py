"""The one training loop every trainer drives, and the pieces of a trainer's command line they share.

A trainer builds its networks, batches and losses, then hands :func:`run_training` a :class:`Recipe`: ``step``
(one optimizer step over the micro-batches, through :func:`accumulate`), ``evaluate`` (on fixed held-out
batches), ``preview`` (rows of images) and ``export`` (the file the nodes load). The loop owns the rest, the same
way for all four: EMA, checkpoint/resume (bit-identical: every draw comes from a per-step generator), logging,
the evaluation/preview/checkpoint cadence, the progress bar, the summary, the export and ``metrics.json``.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import latest_checkpoint
from .config import build_config, check_output_paths, config_dict
from .ema import EMA
from .export import atomic_json
from .tracking import log_images, save_preview
from .run import (ema_weights, peak_memory, peak_of_step, rank_file, resume_state, save_state, split_config_arg,
                  weights_digest)

EXPORT_DTYPES = ("fp32", "fp16", "bf16")
COUNTS = ("batch_size", "grad_accum", "max_steps", "eval_every", "preview_every")


@dataclass
class Recipe:
    """What is particular to one paper's trainer; :func:`run_training` does everything else."""

    name: str  # progress bar ("InverFill"); its lower case names the tracker project
    model: torch.nn.Module  # the prepared trainable module: EMA, checkpoints and the weights digest follow it
    optimizer: torch.optim.Optimizer
    step: Callable[[int], dict]  # step index → logged floats ("loss" shown on the bar)
    evaluate: Callable[[], Any]  # a float, or a dict of floats; run with the EMA weights loaded
    preview: Callable[[], list]  # rows of (B,3,H,W) images in 0..1; EMA weights loaded
    export: Callable[[], Path]  # writes the weight file; EMA weights loaded
    metric: str = ""  # "known_mse": metrics["eval_known_mse"], "eval/known_mse", "initial_known_mse"; "": a dict
    extras: dict = field(default_factory=dict)  # name → (module, optimizer) checkpointed beside the model
    trainable_only: bool = False  # checkpoint only the trainable weights (LoRA, adapters in a frozen UNet)
    metrics: dict = field(default_factory=dict)  # kept in metrics.json from the start (e.g. skipped inputs)
    summary: dict = field(default_factory=dict)  # added to the returned summary


def accumulate(accelerator, module, optimizer, params, micro_losses: list[Callable],
               max_grad_norm: float) -> list[dict]:
    """One optimizer update over the micro-batches: each ``micro_losses[i]() -> (loss, logs)`` runs under autocast
    and backpropagates (Accelerate divides by ``grad_accum``), gradients sync on the last only, then clip and step.
    Returns each micro-batch's logs as floats, ``loss`` first."""
    logs = []
    for i, compute in enumerate(micro_losses):
        last = i == len(micro_losses) - 1
        with (contextlib.nullcontext() if last else accelerator.no_sync(module)), accelerator.autocast():
            loss, log = compute()
            accelerator.backward(loss)
        logs.append({"loss": float(loss.detach()), **{k: float(v) for k, v in log.items()}})
    accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return logs


def run_training(cfg, accelerator, recipe: Recipe) -> dict:
    """Train (or resume) to ``cfg.max_steps``; export from the main process; return the summary."""
    from tqdm.auto import tqdm

    out_dir = Path(cfg.output_dir)
    unwrapped = accelerator.unwrap_model(recipe.model)
    ema = EMA(unwrapped, cfg.ema_decay) if cfg.ema_decay > 0 else None
    eval_key = f"eval_{recipe.metric}" if recipe.metric else "eval"
    metrics: dict = {eval_key: {}, **recipe.metrics}
    start = 0
    found = latest_checkpoint(out_dir)
    if found is not None:
        start, metrics = resume_state(found, cfg, unwrapped, recipe.optimizer, ema, recipe.extras, accelerator,
                                      trainable_only=recipe.trainable_only)
    accelerator.init_trackers(recipe.name.lower(), config={k: str(v) for k, v in config_dict(cfg).items()})
    if "initial" not in metrics:
        metrics["initial"] = recipe.evaluate()
        metrics[eval_key]["0"] = metrics["initial"]

    def log_eval(value, done: int) -> None:
        values = value if isinstance(value, dict) else {recipe.metric: value}
        accelerator.log({f"eval/{k}": v for k, v in values.items()}, step=done)

    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc=recipe.name,
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    t0, step_times, peaks = time.time(), [], {}
    for step in bar:
        step_start = time.perf_counter()
        with peak_of_step(accelerator.device, peaks):
            logs = recipe.step(step)
            if ema is not None:
                ema.update(unwrapped, step)
        step_times.append(time.perf_counter() - step_start)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=done)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k.endswith("loss")})
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            with ema_weights(unwrapped, ema):
                metrics[eval_key][str(done)] = value = recipe.evaluate()
            log_eval(value, done)
        if accelerator.is_main_process and (done % cfg.preview_every == 0 or done == cfg.max_steps):
            with ema_weights(unwrapped, ema):
                rows = recipe.preview()
            log_images(accelerator, "preview", save_preview(out_dir / "previews" / f"step_{done:08d}.png", rows), done)
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps):
            save_state(out_dir, done, cfg, unwrapped, recipe.optimizer, ema, recipe.extras, metrics, accelerator,
                       trainable_only=recipe.trainable_only)
    metrics["final"] = metrics[eval_key].get(str(cfg.max_steps), metrics["initial"])
    digest = weights_digest(unwrapped, ema)
    rank_file(out_dir, accelerator.process_index, digest)
    suffix = f"_{recipe.metric}" if recipe.metric else ""
    summary = {"steps": cfg.max_steps, "resumed_from": start, "seconds": round(time.time() - t0, 2),
               "seconds_per_step": round(sum(step_times[1:]) / max(1, len(step_times) - 1), 4) if step_times else None,
               **peak_memory(accelerator.device, peaks), f"initial{suffix}": metrics["initial"],
               f"final{suffix}": metrics["final"], **recipe.summary, "weights_sha256": digest}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with ema_weights(unwrapped, ema):
            summary["weights"] = str(recipe.export())
        atomic_json(out_dir / "metrics.json", {**metrics, **summary})
    accelerator.end_training()
    return summary


def start_run(cfg):
    """(the run's Accelerator, the frozen networks' dtype, the base model loaded onto the device in that dtype)."""
    from .base_model import load_base_model
    from .run import frozen_dtype, make_accelerator

    accelerator = make_accelerator(cfg, Path(cfg.output_dir))
    dtype = frozen_dtype(cfg, accelerator.device)
    base = load_base_model(cfg.base_model, single_file_config=cfg.single_file_config or None)
    return accelerator, dtype, base.to(accelerator.device, dtype)


def check_common_config(cfg, counts: tuple[str, ...] = COUNTS, *, flux: bool = False) -> None:
    """What every trainer checks first, before anything loads: writable outputs, a usable base model (a FLUX
    folder only where the trainer takes one: ``flux``), the export dtype, and counts of at least 1."""
    from .base_model import BaseModelError, check_base_model
    from .flux_base import is_flux_folder

    check_output_paths(cfg)
    if not cfg.base_model:
        raise ValueError("base_model: set it to a local diffusers folder or single-file checkpoint")
    check_base_model(cfg.base_model, cfg.single_file_config or None)
    if not flux and is_flux_folder(cfg.base_model):
        raise BaseModelError(f"base_model: {cfg.base_model} is a FLUX folder (transformer/); this trainer trains "
                             "for UNet bases (SD1.5/SD2.1/SDXL); trainers.inverfill takes FLUX")
    if cfg.export_dtype not in EXPORT_DTYPES:
        raise ValueError(f"export_dtype: {cfg.export_dtype!r} is not fp32, fp16 or bf16")
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: must be at least 1")
    if cfg.checkpoint_every < 0:
        raise ValueError("checkpoint_every: must be 0 (no checkpoints, no resume) or a step count")


def split_eval(items: list, eval_count: int) -> tuple[list, list]:
    """(train, eval): the last ``eval_count`` items are held out, unless that would leave none to train on."""
    train = items[:-eval_count] if len(items) > eval_count else items
    return train, items[-eval_count:]


def cli(config_cls, train: Callable, argv: list[str] | None = None) -> int:
    """``python -m trainers.<name> [--config FILE] [--key=value …]``: build the config, train, print the summary."""
    config_path, argv = split_config_arg(sys.argv[1:] if argv is None else argv)
    cfg = build_config(config_cls, config_path or None, argv)
    print(json.dumps(train(cfg, config_path)))
    return 0
