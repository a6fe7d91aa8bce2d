"""Prompt files and per-step random generators (so a resumed run sees the same data)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch


class DataError(ValueError):
    """A dataset file that is missing, empty or unusable."""


def read_prompts(path: str | Path, what: str = "prompts_file") -> list[str]:
    """Non-blank, stripped lines of a UTF-8 text file; errors name the option and the path."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise DataError(f"{what}: {path} holds no prompts (one prompt per line)")
    return prompts


def step_generator(seed: int, step: int, rank: int = 0, stream: str = "data") -> torch.Generator:
    """A CPU generator determined by (seed, step, rank, stream): identical after a resume."""
    digest = hashlib.sha256(f"{seed}/{step}/{rank}/{stream}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little"))
