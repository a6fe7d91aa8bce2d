"""Benchmark: the 4-step inpaint graph with and without Inverse Noise Init, plus one InverFill trainer step.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/inverfill_overhead.py [--size 256] [--repeats 5] [--gpu]

Graph part (ComfyUI in-process): VAE-encode the image, [Inverse Noise Init: encode the masked image,
one inversion-network pass], 4 blended steps at cfg 1, VAE-decode. The inversion network is the
checkpoint's own UNet (what the trainer initialises F from), so the extra cost is exactly one UNet
pass plus one VAE encode. Default checkpoint: the ~100 M-parameter random SD1.5-architecture one
from tests/support/build_tiny_checkpoint.py; pass --checkpoint for another (e.g. SDXL on a GPU).

Trainer part (--trainer-base DIR): runs ``trainers.inverfill`` for a few steps at batch 1 on a local
diffusers base and reports its seconds per step and peak memory. Prints the ratio with/without.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ is on sys.path when a benchmark runs as a script
from comfy_host import centre_box_mask, host_arguments, start_from_arguments, tiny_sd15

REPO = Path(__file__).resolve().parent.parent


def graph_timings(args) -> dict:
    import torch

    import comfy.model_management as mm
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise, SamplerCustomAdvanced

    from fewstep_pack.nodes.comfy_inverfill import InverseNoise, build_network, encode_masked_image
    from fewstep_pack.nodes.sampler import FewStepBlendedSampler
    from fewstep_pack.nodes.schedule import FewStepSchedule

    checkpoint, (model, clip, vae) = tiny_sd15(args.checkpoint)
    conds = clip.encode_from_tokens_scheduled(clip.tokenize("a wooden bench"))
    base_sd = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    net = build_network(model, base_sd, {"kind": "inverfill", "key_format": "ldm", "masking": "pixel"}, "bench")
    image = torch.rand(1, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    mask = centre_box_mask(args.size)
    sigmas = FewStepSchedule.execute(model=model, steps=4, spacing="trailing").result[0]
    sampler = FewStepBlendedSampler.execute(known_noise="start").result[0]

    def guider():
        g = comfy.samplers.CFGGuider(model)
        g.set_conds(conds, conds)
        g.set_cfg(1.0)
        return g

    def without() -> None:
        latent = {"samples": vae.encode(image), "noise_mask": mask}
        out, _ = SamplerCustomAdvanced().sample(Noise_RandomNoise(1), guider(), sampler, sigmas, latent)
        vae.decode(out["samples"])

    def with_inverfill() -> None:
        latent = {"samples": vae.encode(image), "noise_mask": mask}
        noise = InverseNoise(model, net, conds, mask, 1, encode_masked_image(vae, image, mask), None)
        out, _ = SamplerCustomAdvanced().sample(noise, guider(), sampler, sigmas, latent)
        vae.decode(out["samples"])

    times: dict[str, list[float]] = {"without": [], "with": []}
    with torch.inference_mode():
        for fn in (without, with_inverfill):
            fn()
        for repeat in range(args.repeats):
            pair = [("without", without), ("with", with_inverfill)]
            for name, fn in pair if repeat % 2 == 0 else pair[::-1]:
                if args.gpu:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn()
                if args.gpu:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"checkpoint": Path(checkpoint).name, "size": args.size, "device": str(mm.get_torch_device()),
            "runs": times, "median_without_s": medians["without"], "median_with_s": medians["with"],
            "ratio_with_over_without": medians["with"] / medians["without"]}


def trainer_step(args) -> dict:
    out = Path(tempfile.mkdtemp(prefix="inverfill_bench_"))
    cmd = [sys.executable, "-m", "trainers.inverfill", "--config", "trainers/configs/inverfill_tiny.yaml",
           f"--base_model={args.trainer_base}", f"--output_dir={out}", "--batch_size=1",
           f"--resolution={args.trainer_resolution}", f"--max_steps={args.trainer_steps}", "--masking=pixel",
           f"--eval_every={args.trainer_steps}", f"--preview_every={args.trainer_steps}",
           f"--checkpoint_every={args.trainer_steps}", "--eval_count=1",
           f"--mixed_precision={'bf16' if args.gpu else 'no'}", f"--gradient_checkpointing={str(args.gpu).lower()}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: summary[k] for k in ("seconds_per_step", "peak_memory_gib", "memory")} | {
        "batch": 1, "resolution": args.trainer_resolution, "steps": args.trainer_steps}


def main() -> int:
    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=256, repeats=5)
    parser.add_argument("--trainer-base", help="diffusers folder for the trainer-step measurement")
    parser.add_argument("--trainer-resolution", type=int, default=64)
    parser.add_argument("--trainer-steps", type=int, default=6)
    args = parser.parse_args()
    start_from_arguments(parser, args)
    report = {"graph": graph_timings(args)}
    if args.trainer_base:
        report["trainer"] = trainer_step(args)
    print(json.dumps(report, indent=1))
    g = report["graph"]
    print(f"4-step inpaint at {g['size']}² on {g['device']}: without {g['median_without_s']:.3f} s, "
          f"with Inverse Noise Init {g['median_with_s']:.3f} s, ratio {g['ratio_with_over_without']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
