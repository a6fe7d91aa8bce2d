"""Benchmark: per-step cost of the FewStep Blended Sampler and of the Region-Aware Sampler (FLUX's per-token
patch) against core's sampler on the same flow model.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/flow_overhead.py [--size 512] [--steps 4] [--repeats 3]

ComfyUI in-process, cfg 1 (one model call per step), a random FLUX.1-schnell-architecture DiT built from
ComfyUI's own classes (tests/support/tiny_flow.py; width 768, 2 double + 4 single blocks, 81 M parameters,
T5 context of 256 tokens), one latent of the ``size``² image with a centre-box hole. Core: KSampler (euler,
simple, 4 steps) on the latent with its noise mask, i.e. core's inpainting through KSamplerX0Inpaint. Ours: the
FewStep Blended Sampler on FewStep Schedule's grid via SamplerCustomAdvanced; RAD: the Region-Aware Sampler node
(per-token modulation through every block). Alternating order after one warm-up each; prints JSON with the
median seconds per step and the ratios. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import alternate, centre_box_mask, guided_sample, host_arguments, start_from_arguments, test_support

FLUX_SIZES = {"hidden_size": 768, "num_heads": 6, "depth": 2, "depth_single_blocks": 4, "mlp_ratio": 4.0,
              "axes_dim": [16, 56, 56]}


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=512, repeats=3)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    start_from_arguments(parser, args)
    import torch

    import comfy.model_management as mm
    import nodes as comfy_nodes
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise

    from fewstep_pack.nodes.rad import RegionAwareSampler
    from fewstep_pack.nodes.sampler import FewStepBlendedSampler
    from fewstep_pack.nodes.schedule import FewStepSchedule

    tiny_flow = test_support("tiny_flow")
    model = tiny_flow.tiny_flow_model("flux_schnell", **FLUX_SIZES)
    model.model.diffusion_model.to(mm.get_torch_device())
    parameters = sum(p.numel() for p in model.model.diffusion_model.parameters())
    conds = tiny_flow.tiny_flow_conditioning("flux_schnell", tokens=256)
    z = torch.randn(1, 16, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))
    latent = {"samples": z, "noise_mask": centre_box_mask(args.size)}
    sigmas = FewStepSchedule.execute(model=model, steps=args.steps, spacing="trailing").result[0]
    blended = FewStepBlendedSampler.execute(hole_init="source").result[0]

    def core():
        comfy_nodes.common_ksampler(model, 1, args.steps, 1.0, "euler", "simple", conds, conds, latent)

    def ours():
        guided_sample(model, conds, Noise_RandomNoise(1), blended, sigmas, latent)

    def rad():
        RegionAwareSampler.execute(model=model, positive=conds, latent=latent, steps=args.steps, seed=1)

    runs = {"core": core, "blended": ours, "rad": rad}
    with torch.inference_mode():
        times = alternate(runs, args.repeats)
    per_step = {k: statistics.median(v) / args.steps for k, v in times.items()}
    report = {"model": f"random FLUX.1-schnell architecture, {parameters / 1e6:.0f} M parameters", "sizes": FLUX_SIZES,
              "size": args.size, "steps": args.steps, "device": str(mm.get_torch_device()),
              "threads": torch.get_num_threads(), "seconds_per_step": per_step, "runs": times,
              "blended_over_core": per_step["blended"] / per_step["core"],
              "rad_over_core": per_step["rad"] / per_step["core"]}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
