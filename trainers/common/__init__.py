"""Pieces every trainer shares: typed config, atomic safetensors checkpoints, EMA, base-model
loading, prompt files, logging. Nothing here imports ComfyUI or the nodes."""
