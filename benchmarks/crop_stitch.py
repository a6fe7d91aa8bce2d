"""Benchmark: a big photo inpainted whole vs through FewStep Crop → sample → FewStep Stitch, in a real ComfyUI.

    COMFYUI_DIR=/path/to/ComfyUI python benchmarks/crop_stitch.py [--width 2048 --height 1536] [--hole 0.05]
        [--steps 4] [--target 512] [--repeats 1] [--gpu] [--out FILE.json]

A smooth random 2048×1536 photo with a box hole of 5 % of its area, 4 steps of the FewStep Blended Sampler
(cfg 1) on the random SD1.5-shaped checkpoint the other benchmarks use (~100 M UNet parameters, TAESD-layout
VAE; tests/support/build_tiny_checkpoint.py), in ComfyUI's own nodes: VAE Encode, Set Latent Noise Mask,
SamplerCustomAdvanced, VAE Decode, then Exact Composite (whole) or FewStep Stitch (crop, 512² by default).
Each run is a fresh child process (so its peak memory is its own), the two variants alternating; a run is
timed from the image to the composited result, after loading the model. Peak memory: the child's peak RSS
on the CPU, ``torch.cuda.max_memory_allocated`` with --gpu. Prints each run, the medians and the ratios
whole / crop. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("whole", "crop")


def photo_and_mask(width: int, height: int, hole: float):
    """A smooth seeded random picture (IMAGE) and a box MASK of ``hole`` × its area, off-centre."""
    import torch
    import torch.nn.functional as F

    coarse = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    image = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    side_h, side_w = round(height * hole**0.5), round(width * hole**0.5)
    top, left = height // 3 - side_h // 2, width * 2 // 5 - side_w // 2
    mask = torch.zeros(1, height, width)
    mask[:, top: top + side_h, left: left + side_w] = 1
    return image.permute(0, 2, 3, 1).contiguous(), mask


def run_variant(args) -> dict:
    """One timed run of ``args.variant`` in this (child) process."""
    from comfy_host import start_from_arguments, tiny_sd15

    parser = argparse.ArgumentParser()
    start_from_arguments(parser, args)
    import comfy.samplers
    import nodes as comfy_nodes
    import torch
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise, SamplerCustomAdvanced

    from fewstep_pack.nodes.composite import ExactComposite
    from fewstep_pack.nodes.crop_stitch import FewStepCrop, FewStepStitch
    from fewstep_pack.nodes.sampler import FewStepBlendedSampler
    from fewstep_pack.nodes.schedule import FewStepSchedule

    _, (model, clip, vae) = tiny_sd15(args.checkpoint)
    conds = clip.encode_from_tokens_scheduled(clip.tokenize("a wooden bench"))
    image, mask = photo_and_mask(args.width, args.height, args.hole)
    sigmas = FewStepSchedule.execute(model=model, steps=args.steps, spacing="trailing").result[0]
    sampler = FewStepBlendedSampler.execute(hole_init="source").result[0]
    cuda = args.gpu and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_gib()
    start = time.perf_counter()
    if args.variant == "crop":
        pixels, crop_mask, plan = FewStepCrop.execute(image=image, mask=mask, target_size=args.target,
                                                      context_px=32).result
    else:
        pixels, crop_mask = image, mask
    (latent,) = comfy_nodes.VAEEncode().encode(vae, pixels)
    (latent,) = comfy_nodes.SetLatentNoiseMask().set_mask(latent, crop_mask)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conds, conds)
    guider.set_cfg(1.0)
    samples, _ = SamplerCustomAdvanced().sample(Noise_RandomNoise(42), guider, sampler, sigmas, latent)
    (decoded,) = comfy_nodes.VAEDecode().decode(vae, samples)
    if args.variant == "crop":
        out, used = FewStepStitch.execute(stitch=plan, generated=decoded).result
    else:
        out, used = ExactComposite.execute(original=image, generated=decoded, mask=mask).result
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    keep = used == 0
    return {"variant": args.variant, "seconds": seconds, "sampled_px": [int(pixels.shape[2]), int(pixels.shape[1])],
            "peak_gib": (torch.cuda.max_memory_allocated() / 2**30) if cuda else _rss_gib(peak=True),
            "rss_before_gib": rss_before, "memory": "cuda_max_allocated" if cuda else "peak_rss",
            "device": str(torch.cuda.get_device_name()) if cuda else "cpu", "threads": torch.get_num_threads(),
            "exact_outside": bool(torch.equal(out[keep], image[keep]))}


def _rss_gib(peak: bool = False) -> float:
    """This process's peak RSS (Linux: ru_maxrss in KiB), or its current RSS from /proc."""
    if peak:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main() -> int:
    from comfy_host import host_arguments

    parser = host_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), size=0, repeats=1)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--hole", type=float, default=0.05, help="hole area as a share of the photo")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--target", default="512", help="FewStep Crop's target_size")
    parser.add_argument("--out", help="write the runs and the ratios as JSON here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # a child's one run
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return 0
    if not args.comfyui:
        parser.error("set COMFYUI_DIR or pass --comfyui")
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    child = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for repeat in range(args.repeats):
        for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:  # alternate to cancel order effects
            done = subprocess.run([*child, "--variant", variant], cwd=HERE, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                return done.returncode
            row = json.loads(done.stdout.strip().splitlines()[-1])
            runs[variant].append(row)
            print(f"{variant:>5}: {row['seconds']:.2f} s, peak {row['peak_gib']:.2f} GiB ({row['memory']}), "
                  f"sampled {row['sampled_px'][0]}×{row['sampled_px'][1]} px, exact outside: {row['exact_outside']}")
    medians = {v: {"seconds": statistics.median(r["seconds"] for r in runs[v]),
                   "peak_gib": statistics.median(r["peak_gib"] for r in runs[v])} for v in VARIANTS}
    ratios = {"seconds_whole_over_crop": medians["whole"]["seconds"] / medians["crop"]["seconds"],
              "peak_whole_over_crop": medians["whole"]["peak_gib"] / medians["crop"]["peak_gib"]}
    first = runs["crop"][0]
    print(f"photo {args.width}×{args.height}, hole {args.hole:.0%}, {args.steps} steps, crop target {args.target}, "
          f"device {first['device']}, threads {first['threads']}")
    for v in VARIANTS:
        print(f"{v:>5}: median {medians[v]['seconds']:.2f} s, peak {medians[v]['peak_gib']:.2f} GiB")
    print(f"whole / crop: {ratios['seconds_whole_over_crop']:.1f}× the time, {ratios['peak_whole_over_crop']:.1f}× "
          f"the peak memory")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "variant"},
                                              "runs": runs, "medians": medians, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
