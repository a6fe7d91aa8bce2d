"""Standalone trainers that produce the pack's weights, run as ``python -m trainers.<name>`` from the
pack folder: ``inverfill`` (InverFill inversion network), ``turbofill`` (TurboFill adapter),
``rad`` (RAD LoRA + time layers) and ``turboedit`` (TurboEdit inversion encoder); ``region_dataset``
builds TurboFill training data (SAM2 regions + captions) from a folder of photos.
The four trainers import ``core`` so training and inference share every schedule and network; each writes a
``.safetensors`` file with metadata and its ``weights_manifest.json`` entry. Shared pieces live in
``trainers/common``.
"""
