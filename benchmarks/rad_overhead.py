"""Benchmark: Region-Aware Sampler vs core KSampler + Set Latent Noise Mask (same steps), and vs a
RePaint-style resampling loop.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/rad_overhead.py [--size 512] [--steps 4] [--resample 10]

ComfyUI in-process, cfg 1, the ~100 M-parameter random SD1.5-architecture checkpoint from
tests/support (or --checkpoint). Per-step time of each path (median of alternating runs): the RAD
overhead is the per-pixel time embedding; RePaint re-noises and re-denoises every step
``--resample`` times (the known region blended by core's KSamplerX0Inpaint).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import alternate, guided_sample, host_arguments, masked_scene, start_from_arguments, tiny_sd15


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=512, repeats=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--resample", type=int, default=10)
    args = parser.parse_args()
    start_from_arguments(parser, args)
    import torch

    import comfy.model_management as mm
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    import nodes as comfy_nodes
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from fewstep_pack.nodes.rad import RegionAwareSampler

    checkpoint, (model, clip, _) = tiny_sd15(args.checkpoint, vae=False)
    conds, latent, sigmas = masked_scene(model, clip, args.size, args.steps)

    def repaint_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            for u in range(args.resample):
                denoised = model_k(x, sigmas[i] * s_in, **extra_args)
                target = sigmas[i] if u < args.resample - 1 else sigmas[i + 1]
                x = denoised + target * torch.randn_like(x) if target > 0 else denoised
        return x

    def rad():
        RegionAwareSampler.execute(model=model, positive=conds, latent=latent, steps=args.steps, seed=1)

    def core():
        comfy_nodes.common_ksampler(model, 1, args.steps, 1.0, "lcm", "sgm_uniform", conds, conds, latent)

    def repaint():
        guided_sample(model, conds, Noise_RandomNoise(1), comfy.samplers.KSAMPLER(repaint_fn), sigmas, latent)

    runs = {"rad": rad, "core": core, "repaint": repaint}
    with torch.inference_mode():
        times = alternate(runs, args.repeats)
    per_step = {k: statistics.median(v) / args.steps for k, v in times.items()}
    report = {"checkpoint": Path(checkpoint).name, "size": args.size, "steps": args.steps,
              "resample": args.resample, "device": str(mm.get_torch_device()),
              "seconds_per_step": per_step, "runs": times,
              "rad_over_core_per_step": per_step["rad"] / per_step["core"],
              "repaint_over_rad": statistics.median(times["repaint"]) / statistics.median(times["rad"])}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
