"""The parts of a training run every trainer shares: accelerator set-up, EMA swaps, resume state,
digests, memory figures and command-line handling."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint
from .config import config_dict
from .ema import EMA

PRECISIONS = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_only_launch() -> bool:
    """Launched by torchrun/accelerate (LOCAL_RANK set) on a machine without CUDA: use multi-CPU (gloo).

    Accelerate only picks its MULTI_CPU mode when asked for the CPU, and ``accelerate launch --cpu``
    starts a single process, so CPU runs launch with ``--multi_gpu`` (or torchrun) and land here.
    """
    return "LOCAL_RANK" in os.environ and not torch.cuda.is_available()


def make_accelerator(cfg, out_dir: Path):
    """The run's Accelerator; then every global RNG is seeded from ``cfg.seed``, so networks built after it (LoRA
    ``down`` weights, new heads) start the same on every run and every rank."""
    from accelerate import Accelerator

    if cfg.mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision: {cfg.mixed_precision!r} is not one of {list(PRECISIONS)}")
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              log_with="tensorboard", project_dir=str(out_dir), cpu=cpu_only_launch())
    seed_global_rngs(cfg.seed)
    return accelerator


def seed_global_rngs(seed: int) -> None:
    """torch (CPU and every GPU), numpy and ``random`` from one seed."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def frozen_dtype(cfg, device) -> torch.dtype:
    """Frozen networks run in the mixed-precision dtype on a GPU, in float32 on the CPU."""
    return PRECISIONS[cfg.mixed_precision] if device.type == "cuda" else torch.float32


def cast_tree(tree, dtype):
    """Cast every tensor of a (nested) dict of conditioning tensors."""
    if isinstance(tree, dict):
        return {k: cast_tree(v, dtype) for k, v in tree.items()}
    return tree.to(dtype) if torch.is_tensor(tree) else tree


@contextlib.contextmanager
def ema_weights(model: torch.nn.Module, ema: EMA | None):
    """Temporarily load EMA weights into ``model`` (no-op without EMA)."""
    if ema is None:
        yield
        return
    backup = {k: p.detach().clone() for k, p in model.named_parameters() if k in ema.shadow}
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in ema.shadow:
                p.copy_(ema.shadow[k].to(p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k in backup:
                    p.copy_(backup[k])


def weights_digest(model: torch.nn.Module, ema: EMA | None) -> str:
    """sha256 over the exported weights (EMA if any): equal digests = equal weights."""
    digest = hashlib.sha256()
    state = ema.full_state_dict(model) if ema is not None else model.state_dict()
    for k in sorted(state):
        digest.update(k.encode())
        digest.update(state[k].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def peak_memory(device, steps: dict | None = None) -> dict:
    """Peak memory of this process: CUDA allocator peak on a GPU (with ``steps``, what :func:`peak_of_step`
    recorded: also the peak of the training steps alone), else the peak resident set size."""
    if device.type == "cuda":
        steps = steps or {}
        run = max(torch.cuda.max_memory_allocated(device), steps.get("run", 0))
        out = {"peak_memory_gib": round(run / 2**30, 3), "memory": "cuda"}
        if "step" in steps:
            out["step_peak_memory_gib"] = round(steps["step"] / 2**30, 3)
        return out
    import resource

    return {"peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3), "memory": "rss"}


@contextlib.contextmanager
def peak_of_step(device, peaks: dict):
    """On a GPU, record in ``peaks`` the CUDA allocator peak of the enclosed training step ("step", the largest
    so far) and of the run up to its end ("run"; evaluation and previews count there); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize(device)
    peaks["run"] = max(peaks.get("run", 0), torch.cuda.max_memory_allocated(device))
    torch.cuda.reset_peak_memory_stats(device)
    yield
    torch.cuda.synchronize(device)
    step = torch.cuda.max_memory_allocated(device)
    peaks["step"] = max(peaks.get("step", 0), step)
    peaks["run"] = max(peaks["run"], step)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {k for k, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


def save_state(out_dir, step: int, cfg, model, optimizer, ema: EMA | None, extras: dict, metrics: dict,
               accelerator, trainable_only: bool = False) -> None:
    """Checkpoint weights (all, or only the trainable ones for adapters), optimizer, EMA and extra
    (module, optimizer) pairs, from the main process."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    weights = trainable_state(model) if trainable_only else model.state_dict()
    tensors = {"model": weights, "optimizer": opt_tensors}
    state = {"config": config_dict(cfg), "optimizer": opt_meta, "metrics": metrics}
    if ema is not None:
        tensors["ema"] = ema.state_dict()
    for name, (module, opt) in extras.items():
        o_tensors, o_meta = optimizer_to_tensors(opt)
        tensors[name] = accelerator.unwrap_model(module).state_dict()
        tensors[f"{name}_optimizer"], state[f"{name}_optimizer"] = o_tensors, o_meta
    save_checkpoint(out_dir, step, tensors, state, keep_last=cfg.keep_checkpoints)


def resume_state(path, cfg, model, optimizer, ema: EMA | None, extras: dict, accelerator,
                 trainable_only: bool = False) -> tuple[int, dict]:
    """Load a checkpoint written by :func:`save_state`; refuse one made for another base model."""
    tensors, state = load_checkpoint(path)
    previous = state.get("config", {})
    if previous.get("base_model") and previous["base_model"] != cfg.base_model:
        raise ValueError(f"output_dir {cfg.output_dir} holds a run for base_model {previous['base_model']}; "
                         "use another output_dir")
    if trainable_only:
        missing = set(trainable_state(model)) - set(tensors["model"])
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {len(missing)} trainable weights (another configuration?)")
        model.load_state_dict(tensors["model"], strict=False)
    else:
        model.load_state_dict(tensors["model"])
    optimizer_from_tensors(optimizer, tensors["optimizer"], state["optimizer"])
    if ema is not None and "ema" in tensors:
        ema.load_state_dict(tensors["ema"])
    for name, (module, opt) in extras.items():
        if name in tensors:
            accelerator.unwrap_model(module).load_state_dict(tensors[name])
            optimizer_from_tensors(opt, tensors[f"{name}_optimizer"], state[f"{name}_optimizer"])
    accelerator.print(f"resumed from {path} (step {state['step']})")
    return int(state["step"]), state.get("metrics", {"eval": {}})


def head(batch, n: int):
    """The first ``n`` samples of a dataclass batch (tensors, lists and nested dicts are cut)."""
    def cut(v):
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        return v[:n] if torch.is_tensor(v) or isinstance(v, list) else v

    return type(batch)(**{f.name: cut(getattr(batch, f.name)) for f in dataclasses.fields(batch)})


def jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=lambda v: list(v) if isinstance(v, (tuple, set)) else str(v)))


def split_config_arg(argv: list[str]) -> tuple[str, list[str]]:
    """Pull ``--config PATH`` / ``--config=PATH`` out of the arguments."""
    argv = list(argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a file path")
        path = argv[i + 1]
        del argv[i: i + 2]
        return path, argv
    for a in argv:
        if a.startswith("--config="):
            return a.split("=", 1)[1], [x for x in argv if x != a]
    return "", argv


def rank_file(out_dir: Path, rank: int, digest: str) -> None:
    Path(out_dir, f"rank{rank}.weights.sha256").write_text(digest + "\n")
