"""Benchmark: FewStep Blended Sampler vs core KSampler + SetLatentNoiseMask, same model, same steps.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/blended_vs_core.py [--size 512] [--steps 4] [--repeats 5]

Runs ComfyUI in-process on the CPU (or its default device with --gpu) with a random-weight
SD1.5-architecture checkpoint (2 levels, 320/640 channels, ~100 M UNet parameters, built by
tests/support/build_tiny_checkpoint.py), one masked latent, cfg 1 (one UNet call per step), and
times the two sampling paths in alternating order after one warm-up each. Prints per-run times, the
medians and the ratio ours / core. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import guided_sample, host_arguments, masked_scene, start_from_arguments, tiny_sd15


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=512, repeats=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    start_from_arguments(parser, args)
    import torch

    import nodes as comfy_nodes
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from fewstep_pack.nodes.sampler import FewStepBlendedSampler

    checkpoint, (model, clip, _) = tiny_sd15(args.checkpoint)
    conds, latent, sigmas = masked_scene(model, clip, args.size, args.steps)
    ours_sampler = FewStepBlendedSampler.execute(hole_init="source").result[0]

    def ours() -> None:
        guided_sample(model, conds, Noise_RandomNoise(1), ours_sampler, sigmas, latent)

    def core() -> None:
        comfy_nodes.common_ksampler(model, 1, args.steps, 1.0, "lcm", "sgm_uniform", conds, conds, latent)

    timings: dict[str, list[float]] = {"ours": [], "core": []}
    for fn in (ours, core):  # warm-up: model load, allocator
        fn()
    for repeat in range(args.repeats):
        pair = (("ours", ours), ("core", core))
        for name, fn in pair if repeat % 2 == 0 else pair[::-1]:  # alternate to cancel order effects
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)

    device = "cpu" if not args.gpu else str(torch.device("cuda") if torch.cuda.is_available() else "cpu")
    print(f"model: {Path(checkpoint).name}  image: {args.size}²  steps: {args.steps}  cfg: 1  device: {device}  "
          f"threads: {torch.get_num_threads()}")
    for name in ("ours", "core"):
        runs = ", ".join(f"{t:.3f}" for t in timings[name])
        print(f"{name:>4}: median {statistics.median(timings[name]):.3f} s  runs [{runs}]")
    ratio = statistics.median(timings["ours"]) / statistics.median(timings["core"])
    print(f"ratio ours/core (median): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
