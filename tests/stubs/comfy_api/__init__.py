"""Test stand-in package for ComfyUI's ``comfy_api`` (see tests/stubs/README.md)."""
