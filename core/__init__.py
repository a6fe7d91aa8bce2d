"""Pure-torch model math for FewStep Fill & Edit.

Nothing in this package imports ComfyUI (``comfy*``, ``folder_paths``), ``nodes/`` or ``trainers/``;
``tests/test_import_boundary.py`` enforces it. Imports inside ``core`` are relative so the package
works both as ``<pack>.core`` inside ComfyUI and as top-level ``core`` for trainers and tests.
"""
