"""The learned world: a procedural captioned image world and a small learned few-step diffusion model on it
(VAE, text encoder, multi-step teacher, few-step student, judge), in the formats the nodes and trainers take."""
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
