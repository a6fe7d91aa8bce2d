"""Build the learned world: VAE → judge → text encoder + teacher → teacher trajectories → student → report.

Every stage writes its result atomically under ``OUT/.work`` and is skipped when that result exists; the
long stages checkpoint (safetensors + JSON, trainers/common/checkpoint) and resume bit for bit: every batch
and every noise draw is seeded by (seed, stage, step), not by a running RNG.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from core.weights import load_weights, save_weights, sha256_file
from trainers.common.checkpoint import latest_checkpoint, load_checkpoint, optimizer_from_tensors, \
    optimizer_to_tensors, save_checkpoint
from trainers.common.ema import EMA

from . import models, sampling, scene
from .judge import caption_agreement, judge_accuracy, judge_batch


@dataclass
class BuildConfig:
    """Sizes of one build; ``full`` is the committed world, ``mini`` a CI-sized check of the same code."""

    seed: int = 0
    train_scenes: int = 12000
    eval_scenes: int = 256
    vae_steps: int = 800
    vae_batch: int = 32
    judge_steps: int = 1500
    judge_batch: int = 64
    teacher_steps: int = 2400
    teacher_batch: int = 16
    teacher_object_weight: float = 3.0
    teacher_phase_steps: int = 7200
    teacher_phase_batch: int = 16
    teacher_phase_t_min: int = 850
    teacher_phase_object_weight: float = 10.0
    offset_noise: float = 0.3
    cfg_scale: float = 3.0
    trajectories: int = 2048
    trajectory_steps: int = 20
    student_steps: int = 700
    student_batch: int = 64
    checkpoint_every: int = 200

    @classmethod
    def preset(cls, name: str) -> "BuildConfig":
        if name == "full":
            return cls()
        if name == "mini":
            return cls(train_scenes=96, eval_scenes=8, vae_steps=4, vae_batch=8, judge_steps=4, judge_batch=8,
                       teacher_steps=6, teacher_batch=8, teacher_object_weight=3.0, teacher_phase_steps=2,
                       teacher_phase_batch=4, trajectories=16, trajectory_steps=4, student_steps=4,
                       student_batch=8, checkpoint_every=3)
        raise ValueError(f"preset: {name!r} is not one of full, mini")

    def with_overrides(self, pairs: list[str]) -> "BuildConfig":
        """A copy with ``KEY=VALUE`` fields replaced (``--set``), each value parsed as its field's type."""
        values = asdict(self)
        for pair in pairs:
            key, sep, text = pair.partition("=")
            if not sep or key not in values or key == "seed":
                raise ValueError(f"--set: {pair!r} is not KEY=VALUE with KEY one of "
                                 f"{', '.join(k for k in values if k != 'seed')} (the seed has --seed)")
            try:
                values[key] = type(values[key])(text)
            except ValueError:
                raise ValueError(f"--set: {key} is a {type(values[key]).__name__} field; {text!r} is not one") from None
        if not 0 <= values["teacher_phase_t_min"] <= 999:
            raise ValueError(f"--set: teacher_phase_t_min must be in 0..999, not {values['teacher_phase_t_min']}")
        return BuildConfig(**values)


class Builder:
    def __init__(self, out: Path, cfg: BuildConfig, device: str = "cpu"):
        self.out, self.cfg, self.device = Path(out), cfg, torch.device(device)
        self.work = self.out / ".work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        config_file = self.work / "config.json"
        if config_file.is_file() and json.loads(config_file.read_text()) != asdict(cfg):
            raise ValueError(f"{self.out}: holds a build with another config; use a new --out or delete it")
        _atomic_text(config_file, json.dumps(asdict(cfg), indent=1))
        self._data = None

    # ------------------------------------------------------------------ data
    def data(self) -> dict:
        """Train scenes in memory: uint8 images, captions, visible masks, params (deterministic by seed)."""
        if self._data is None:
            scenes = [scene.scene(scene.seed_of("train", i))
                      for i in tqdm(range(self.cfg.train_scenes), desc="world: render train scenes", leave=False)]
            self._data = {"images": torch.from_numpy(np.stack([s["image"] for s in scenes])).permute(0, 3, 1, 2),
                          "captions": [s["caption"] for s in scenes], "scenes": scenes}
        return self._data

    def batch_rng(self, stage: str, step: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, _stage_id(stage), step])

    def torch_gen(self, stage: str, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.batch_rng(stage, step).integers(2**62)))

    # ------------------------------------------------------------------ a resumable loop
    def loop(self, stage: str, modules: dict, optimizer, steps: int, step_fn, ema: EMA | None = None) -> None:
        run = self.work / stage
        start = 0
        found = latest_checkpoint(run)
        if found is not None:
            tensors, state = load_checkpoint(found)
            for name, module in modules.items():
                module.load_state_dict(tensors[name])
            optimizer_from_tensors(optimizer, tensors["optimizer"], state["optimizer"])
            if ema is not None:
                ema.load_state_dict(tensors["ema"])
            start = state["step"]
        bar = tqdm(range(start, steps), desc=f"world: {stage}", initial=start, total=steps)
        for step in bar:
            lr_scale = min(1.0, (step + 1) / 50)
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * lr_scale
            loss = step_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
            optimizer.step()
            if ema is not None:
                ema.update(next(iter(modules.values())), step)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if (step + 1) % self.cfg.checkpoint_every == 0 or step + 1 == steps:
                opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
                groups = {name: m.state_dict() for name, m in modules.items()}
                groups["optimizer"] = opt_tensors
                if ema is not None:
                    groups["ema"] = ema.state_dict()
                save_checkpoint(run, step + 1, groups, {"optimizer": opt_meta})

    def timed(self, name: str, fn):
        """Run a stage and keep its wall time in .work/timings.json (so a resumed build still reports it)."""
        t0 = time.perf_counter()
        result = fn()
        path = self.work / "timings.json"
        timings = json.loads(path.read_text()) if path.is_file() else {}
        timings[name] = round(time.perf_counter() - t0, 1)
        _atomic_text(path, json.dumps(timings, indent=1))
        self.timings.update(timings)
        return result

    # ------------------------------------------------------------------ stages
    def vae(self):
        folder = self.work / "vae"
        if not folder.is_dir():
            self.timed("vae", lambda: self._train_vae(folder))
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).to(self.device).eval()

    def _train_vae(self, folder: Path) -> None:
        """Reconstruction (L1 + L2) and a small KL (1e-6, as SD's autoencoder) on world images."""
        torch.manual_seed(self.cfg.seed)
        vae = models.vae().to(self.device)
        opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
        images = self.data()["images"]

        def step_fn(step):
            idx = self.batch_rng("vae", step).integers(len(images), size=self.cfg.vae_batch)
            x = images[idx].to(self.device) * 2 - 1
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=self.torch_gen("vae", step))
            rec = vae.decode(z).sample
            return F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * posterior.kl().mean()

        self.loop("vae_run", {"vae": vae}, opt, self.cfg.vae_steps, step_fn)
        vae.eval()
        with torch.no_grad():  # SD's scaling factor: unit variance latents
            sample = images[: min(512, len(images))].to(self.device) * 2 - 1
            std = float(vae.encode(sample).latent_dist.mean.std())
        vae.register_to_config(scaling_factor=round(1.0 / std, 5))
        _save_pretrained(vae.to(torch.float16), folder)

    def latents(self, vae) -> torch.Tensor:
        """Scaled VAE latents (posterior mean × scaling factor) of every train scene."""
        path = self.work / "latents.safetensors"
        if not path.is_file():
            images = self.data()["images"]
            chunks = []
            with torch.no_grad():
                for i in tqdm(range(0, len(images), 256), desc="world: encode train latents", leave=False):
                    x = images[i:i + 256].to(self.device) * 2 - 1
                    chunks.append(vae.encode(x).latent_dist.mean.cpu() * vae.config.scaling_factor)
            save_weights(path, {"latents": torch.cat(chunks)})
        return load_weights(path)[0]["latents"]

    def reconstructions(self, vae, latents: torch.Tensor) -> torch.Tensor:
        """VAE decodes of the train latents, uint8 (the judge also learns what decoded images look like)."""
        path = self.work / "reconstructions.safetensors"
        if not path.is_file():
            chunks = []
            with torch.no_grad():
                for i in tqdm(range(0, len(latents), 256), desc="world: decode train latents", leave=False):
                    chunks.append(decode(vae, latents[i:i + 256].to(self.device)).cpu())
            save_weights(path, {"images": (torch.cat(chunks) * 255).round().to(torch.uint8)})
        return load_weights(path)[0]["images"].float() / 255

    def judge(self, recon: torch.Tensor) -> models.Judge:
        path = self.work / "judge.safetensors"
        if not path.is_file():
            self.timed("judge", lambda: self._train_judge(path, recon))
        judge = models.Judge()
        judge.load_state_dict(load_weights(path)[0])
        return judge.to(self.device).eval()

    def _train_judge(self, path: Path, recon: torch.Tensor) -> None:
        torch.manual_seed(self.cfg.seed + 1)
        judge = models.Judge().to(self.device)
        opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
        data = self.data()

        def step_fn(step):
            rng = self.batch_rng("judge", step)
            idx = rng.integers(len(data["scenes"]), size=self.cfg.judge_batch)
            use_recon = torch.from_numpy(rng.random(len(idx)) < 0.5).view(-1, 1, 1, 1)
            images = torch.where(use_recon, recon[idx], data["images"][idx])
            regions, labels = judge_batch([data["scenes"][i] for i in idx], rng)
            out = judge(images.to(self.device), regions.to(self.device))
            return sum(F.cross_entropy(out[k], labels[k].to(self.device), ignore_index=-100) for k in labels)

        self.loop("judge_run", {"judge": judge}, opt, self.cfg.judge_steps, step_fn)
        save_weights(path, judge.state_dict())

    def teacher(self, latents: torch.Tensor):
        """Text encoder and teacher UNet trained together: ε-prediction on SD's scaled-linear 1000-step schedule,
        10 % empty captions for classifier-free guidance, each step's ε error weighted by min(1/ᾱ_t, 50) — the
        v-prediction loss of Salimans & Ho 2022 (§4) on an ε-parameterised net, capped so low-noise detail still
        trains. With the plain ε loss a small net ignores the text: the caption decides the image at high noise,
        where x̂0 = (x − √(1−ᾱ)ε̂)/√ᾱ magnifies ε errors 15× and the ε loss barely sees them (measured: after
        1000 steps the x̂0 error at t = 999 was 2.65, worse than predicting zero, conditional ≈ unconditional).
        The training noise carries an offset per image and channel (``offset_noise``): SD's schedule keeps
        √ᾱ_999 = 0.068 of the image at t = 999, so the colour (the latent's per-channel mean) leaks through the
        noise and plain training never learns to choose it from the caption
        (docs/benchmarks.md, 'What holds at this scale'). An optional first phase (``teacher_phase_steps``,
        ``teacher_recipe``) trains on high noise only with the objects' latent cells weighted up, where the caption
        alone must place the objects; ``teacher_object_weight`` weights them in the full-range steps."""
        folder = self.work / "teacher"
        if not folder.is_dir():
            self.timed("teacher", lambda: self._train_teacher(folder, latents))
        return self._load_unet(folder / "unet"), self._load_text(folder / "text_encoder")

    def _train_teacher(self, folder: Path, latents: torch.Tensor) -> None:
        torch.manual_seed(self.cfg.seed + 2)
        tokenizer = models.word_tokenizer()
        unet, text = models.unet().to(self.device), models.text_encoder(len(tokenizer)).to(self.device)
        opt = torch.optim.AdamW(list(unet.parameters()) + list(text.parameters()), lr=4e-4, weight_decay=0.0)
        ema = EMA(unet, 0.998)
        captions = self.data()["captions"]
        objects = object_masks(self.data()["scenes"])
        abar = sampling.scaled_linear_alphas_cumprod().to(torch.float32).to(self.device)
        encode = caption_encoder(text, tokenizer, self.device)

        def step_fn(step):
            r = teacher_recipe(self.cfg, step)
            rng = self.batch_rng(r["stage"], r["step"])
            idx = rng.integers(len(captions), size=r["batch"])
            drop = rng.random(len(idx)) < 0.1
            texts = ["" if d else captions[i] for i, d in zip(idx, drop)]
            weight = 1.0 + r["object_weight"] * objects[idx] if r["object_weight"] else None
            gen = self.torch_gen(r["stage"], r["step"])
            return teacher_loss(unet, encode, latents[idx].to(self.device), texts, gen, self.cfg.offset_noise, abar,
                                weight, r["t_min"])

        steps = self.cfg.teacher_phase_steps + self.cfg.teacher_steps
        self.loop("teacher_run", {"unet": unet, "text": text}, opt, steps, step_fn, ema=ema)
        unet.load_state_dict(ema.full_state_dict(unet))
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        unet.to(torch.float16).save_pretrained(tmp / "unet")
        text.save_pretrained(tmp / "text_encoder")
        tokenizer.save_pretrained(tmp / "tokenizer")
        os.replace(tmp, folder)

    def trajectories(self, teacher, text) -> dict:
        """Teacher DDIM trajectories (20 trailing steps, CFG) from seeded noise: the VE states at t = 999, 749,
        499, 249 (steps 0, 5, 10, 15) and the ODE endpoint — the paired data of the student's regression."""
        path = self.work / "trajectories.safetensors"
        if not path.is_file():
            self.timed("trajectories", lambda: self._make_trajectories(path, teacher, text))
        return load_weights(path)[0]

    def _make_trajectories(self, path: Path, teacher, text) -> None:
        tokenizer = models.word_tokenizer()
        captions = self.data()["captions"]
        n, chunk = self.cfg.trajectories, 64
        steps = self.cfg.trajectory_steps
        record = tuple(int(i * steps / 4) for i in range(4))
        sigmas = sampling.grid_sigmas(steps).to(self.device)
        denoiser = sampling.unet_denoiser(teacher)
        states, ends, idxs = [], [], []
        with torch.no_grad():
            uncond = sampling.encode_text(text, tokenizer, [""], self.device)
            for i in tqdm(range(0, n, chunk), desc="world: teacher trajectories"):
                size = min(chunk, n - i)
                idx = self.batch_rng("trajectories", i).integers(len(captions), size=size)
                cond = sampling.encode_text(text, tokenizer, [captions[j] for j in idx], self.device)
                _, x = sampling.start_noise((size, 4, 16, 16), self.cfg.seed * 1_000_003 + i, sigmas[0])
                end, got = sampling.sample_euler(sampling.guided(denoiser, cond, uncond, self.cfg.cfg_scale),
                                                 x.to(self.device), sigmas, record=record)
                states.append(torch.stack([got[r] for r in record], dim=1).cpu())
                ends.append(end.cpu())
                idxs.append(torch.from_numpy(idx))
        save_weights(path, {"states": torch.cat(states), "ends": torch.cat(ends), "captions": torch.cat(idxs),
                            "sigmas": sigmas[list(record)].cpu()})

    def student(self, teacher, text, pairs: dict):
        """Few-step student on 999/749/499/249, initialised from the teacher: the paired regression loss of DMD
        (Yin et al. 2024, Eq. 7; Luhman & Luhman 2021) from each grid state of the teacher's ODE trajectory to
        its endpoint, in x̂0 space (ε-parameterised, like the teacher)."""
        folder = self.work / "student"
        if not folder.is_dir():
            self.timed("student", lambda: self._train_student(folder, teacher, text, pairs))
        return self._load_unet(folder)

    def _train_student(self, folder: Path, teacher, text, pairs: dict) -> None:
        torch.manual_seed(self.cfg.seed + 3)
        tokenizer = models.word_tokenizer()
        student = models.unet().to(self.device)
        student.load_state_dict(teacher.state_dict())
        student.float().train()
        opt = torch.optim.AdamW(student.parameters(), lr=5e-5, weight_decay=0.0)
        ema = EMA(student, 0.99)
        denoiser = sampling.unet_denoiser(student)
        captions = self.data()["captions"]
        states, ends, sigmas = pairs["states"], pairs["ends"], pairs["sigmas"]

        def step_fn(step):
            rng = self.batch_rng("student", step)
            idx = rng.integers(len(ends), size=self.cfg.student_batch)
            k = torch.from_numpy(rng.integers(4, size=len(idx)))
            x = states[torch.from_numpy(idx), k].to(self.device)
            with torch.no_grad():
                cond = sampling.encode_text(text, tokenizer, [captions[int(pairs["captions"][i])] for i in idx],
                                            self.device)
            pred = denoiser(x, sigmas[k].to(self.device), encoder_hidden_states=cond)
            return F.mse_loss(pred, ends[torch.from_numpy(idx)].to(self.device))

        self.loop("student_run", {"unet": student}, opt, self.cfg.student_steps, step_fn, ema=ema)
        student.load_state_dict(ema.full_state_dict(student))
        _save_pretrained(student.to(torch.float16), folder)

    def _load_unet(self, folder: Path):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).to(self.device).eval()

    def _load_text(self, folder: Path):
        from transformers import CLIPTextModel

        return CLIPTextModel.from_pretrained(folder, torch_dtype=torch.float32).to(self.device).eval()

    # ------------------------------------------------------------------ assemble and report
    def build(self) -> dict:
        t0 = time.perf_counter()
        vae = self.vae()
        latents = self.latents(vae)
        judge = self.judge(self.reconstructions(vae, latents))
        teacher, text = self.teacher(latents)
        pairs = self.trajectories(teacher, text)
        student = self.student(teacher, text, pairs)
        self.assemble()
        report = self.timed("report", lambda: self.report(vae, judge, teacher, student, text))
        summary_path = self.out / "world.json"
        stages = self.work / "timings.json"
        report["seconds"] = {**(json.loads(stages.read_text()) if stages.is_file() else {}),
                             "this_run_total": round(time.perf_counter() - t0, 1)}
        report["files"] = {str(p.relative_to(self.out)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                           for p in sorted(self.out.rglob("*")) if p.is_file() and ".work" not in p.parts
                           and p.name != "world.json"}
        _atomic_text(summary_path, json.dumps(report, indent=1))
        return report

    def assemble(self) -> None:
        """OUT/turbo (student UNet, the few-step base) and OUT/teacher: complete diffusers folders; OUT/judge."""
        for name, unet_dir in (("turbo", self.work / "student"), ("teacher", self.work / "teacher" / "unet")):
            tmp = self.out / f"{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(unet_dir, tmp / "unet")
            shutil.copytree(self.work / "vae", tmp / "vae")
            shutil.copytree(self.work / "teacher" / "text_encoder", tmp / "text_encoder")
            shutil.copytree(self.work / "teacher" / "tokenizer", tmp / "tokenizer")
            write_scheduler(tmp)
            shutil.rmtree(self.out / name, ignore_errors=True)
            os.replace(tmp, self.out / name)
        shutil.copyfile(self.work / "judge.safetensors", self.out / "judge.safetensors.tmp")
        os.replace(self.out / "judge.safetensors.tmp", self.out / "judge.safetensors")

    def report(self, vae, judge, teacher, student, text) -> dict:
        figures, samples = measure(vae, judge, teacher, student, text, self.cfg.eval_scenes, self.cfg.cfg_scale,
                                   self.device)
        save_contact_sheet(self.out / "samples.png", samples.pop("test"), samples, rows=8)
        return {"world": figures, "config": asdict(self.cfg), "device": str(self.device),
                "threads": torch.get_num_threads()}


@torch.no_grad()
def measure(vae, judge, teacher, student, text, eval_scenes: int, cfg_scale: float, device="cpu") -> tuple[dict, dict]:
    """The world's figures on the first ``eval_scenes`` test scenes: VAE PSNR, the judge's accuracy, and caption
    agreement of text-to-image samples (student 1/2/4 steps, teacher 50 steps with CFG), overall and per attribute
    kind (``judge_accuracy`` read on the samples), and the teacher's one-step reading (``one_step_agreement``); and
    the decoded samples by run, plus the test images."""
    tokenizer = models.word_tokenizer()
    test = [scene.scene(scene.seed_of("test", i)) for i in range(eval_scenes)]
    images = torch.from_numpy(np.stack([s["image"] for s in test])).permute(0, 3, 1, 2).to(device)
    recon = decode(vae, vae.encode(images * 2 - 1).latent_dist.mean)
    psnr = float((10 * torch.log10(1.0 / (recon - images).pow(2).mean(dim=(1, 2, 3)))).mean())
    accuracy = judge_accuracy(judge, test, images, device)
    accuracy_recon = judge_accuracy(judge, test, recon, device)
    encode = caption_encoder(text, tokenizer, device)
    cond, uncond = encode([s["caption"] for s in test]), encode([""])
    shape = (len(test), 4, 16, 16)
    agreement, exact, by_attribute = {}, {}, {}
    runs = {f"student_{n}": lambda n=n: sampling.sample_student(
                sampling.guided(sampling.unet_denoiser(student), cond, None, 1.0), shape, 7, n)
            for n in (1, 2, 4)}
    runs["teacher_50"] = lambda: sampling.sample_teacher(
        sampling.guided(sampling.unet_denoiser(teacher), cond, uncond, cfg_scale), shape, 7, 50)
    samples = {}
    for name, run in tqdm(runs.items(), desc="world: caption agreement"):
        latents = run().to(device)
        samples[name] = decode(vae, latents / vae.config.scaling_factor)
        agreement[name], exact[name] = caption_agreement(judge, test, samples[name], device)
        by_attribute[name] = judge_accuracy(judge, test, samples[name], device)
    figures = {"judge_accuracy": accuracy["overall"], "judge_accuracy_by_head": accuracy,
               "judge_accuracy_on_vae_reconstructions": accuracy_recon["overall"],
               "vae_psnr_db": round(psnr, 2), "caption_agreement": agreement,
               "caption_agreement_by_attribute": by_attribute,
               "teacher_one_step_by_attribute": one_step_agreement(vae, judge, teacher, encode, test, images, device),
               "caption_all_attributes_right": exact, "eval_scenes": len(test), "cfg_scale_teacher": cfg_scale}
    return figures, {"test": images, **samples}


def teacher_recipe(cfg: BuildConfig, step: int) -> dict:
    """What teacher step ``step`` trains on: the high-noise binding phase (``teacher_phase_*``: t ≥ t_min, object
    pixels weighted 1 + w) for the first ``teacher_phase_steps`` steps, then the full t range; ``stage`` and ``step``
    seed its batch, so a config without the phase draws exactly the batches it always drew."""
    if step < cfg.teacher_phase_steps:
        return {"stage": "teacher_phase", "step": step, "batch": cfg.teacher_phase_batch,
                "t_min": cfg.teacher_phase_t_min, "object_weight": cfg.teacher_phase_object_weight}
    return {"stage": "teacher", "step": step - cfg.teacher_phase_steps, "batch": cfg.teacher_batch, "t_min": 0,
            "object_weight": cfg.teacher_object_weight}


def object_masks(scenes: list[dict], scale_down: int = models.VAE_SCALE_DOWN) -> torch.Tensor:
    """(N,1,h,w) latent-resolution masks of every scene's objects (max over each latent cell's pixels)."""
    masks = np.stack([s["visible"].sum(0).clip(0, 1) if len(s["visible"]) else np.zeros((scene.SIZE,) * 2, np.float32)
                      for s in scenes])
    return F.max_pool2d(torch.from_numpy(masks).unsqueeze(1), scale_down)


def caption_encoder(text, tokenizer, device="cpu") -> Callable[[list[str]], torch.Tensor]:
    """``encode(captions) -> (B, tokens, width)``: the CLIP text encoder's hidden states (SD's conditioning)."""
    return lambda captions: sampling.encode_text(text, tokenizer, captions, device)


@torch.no_grad()
def one_step_agreement(vae, judge, unet, encode: Callable, test: list, images: torch.Tensor, device="cpu",
                       timesteps=(500, 700, 850, 950)) -> dict:
    """Per timestep t: the judge's per-attribute reading of the teacher's one-step x̂0 from the test images noised to
    t (fixed noise, caption given through ``encode``, e.g. ``caption_encoder``). The caption fixes every colour, so a
    net that binds the caption's words to positions gets the objects' colours right at any t, even where x̂0 is too
    blurry for shapes; a net at chance there never learned to place objects from the text, whatever its samples'
    backgrounds show."""
    x0 = vae.encode(images * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    cond = encode([s["caption"] for s in test])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(device)
    abar = sampling.scaled_linear_alphas_cumprod().to(torch.float32).to(device)
    out = {}
    for t in timesteps:
        a = abar[t]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = unet(xt, torch.full((len(test),), t, device=device), encoder_hidden_states=cond).sample
        x0_hat = (xt - (1 - a).sqrt() * pred) / a.sqrt()
        out[str(t)] = judge_accuracy(judge, test, decode(vae, x0_hat / vae.config.scaling_factor), device)
    return out


def teacher_loss(unet, encode: Callable, x0: torch.Tensor, texts: list[str], gen: torch.Generator,
                 offset: float, abar: torch.Tensor, pixel_weight: torch.Tensor | None = None,
                 t_min: int = 0) -> torch.Tensor:
    """The teacher's loss on one batch (``Builder.teacher``'s docstring): t uniform, offset noise, the ε error
    weighted by min(1/ᾱ_t, 50), the captions conditioned through ``encode`` (``caption_encoder``). For
    benchmarks.world.probe: ``pixel_weight`` (B,1,h,w) also weights it per latent pixel, ``t_min`` draws t from
    [t_min, 999] only."""
    device = x0.device
    t = torch.randint(t_min, 1000, (len(x0),), generator=gen).to(device)
    eps = offset_noise(x0.shape, offset, gen).to(device)
    a = abar[t].view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    pred = unet(xt, t, encoder_hidden_states=encode(texts)).sample
    weight = (1.0 / a.flatten()).clamp(max=50.0)  # ‖ε−ε̂‖²/ᾱ_t: the v-loss, capped (see Builder.teacher)
    error = (pred - eps).pow(2)
    if pixel_weight is not None:
        error = error * pixel_weight.to(device)
    return (weight * error.mean(dim=(1, 2, 3))).mean()


def offset_noise(shape, strength: float, generator: torch.Generator) -> torch.Tensor:
    """ε + strength·δ with δ ~ N(0, 1) per image and channel: offset noise (Guttenberg 2023), a stand-in for
    zero terminal SNR (Lin et al. 2024, §3.1) that keeps SD's schedule, so the net learns the colour from the text."""
    eps = torch.randn(shape, generator=generator)
    if strength == 0.0:
        return eps
    return eps + strength * torch.randn(shape[:2] + (1,) * (len(shape) - 2), generator=generator)


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Raw (unscaled) latents → RGB in 0..1."""
    return ((vae.decode(latents).sample + 1) / 2).clamp(0, 1)


def write_scheduler(folder: Path) -> None:
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
        "timestep_spacing": "trailing", "steps_offset": 1}, indent=1))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False},
        indent=1))


def save_contact_sheet(path: Path, originals: torch.Tensor, samples: dict, rows: int = 8) -> None:
    """A PNG grid: per row the test image, then one sample per run (same caption, same seed)."""
    from PIL import Image

    cols = [originals[:rows]] + [s[:rows] for s in samples.values()]
    grid = torch.cat([torch.cat([c[r] for c in cols], dim=2) for r in range(min(rows, len(originals)))], dim=1)
    array = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def _save_pretrained(model, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    os.replace(tmp, folder)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stage_id(stage: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(stage))
