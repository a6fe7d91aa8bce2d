"""ComfyUI glue for FewStep Fill & Edit: V3 node classes that convert types and call ``core``.

``_api.py`` is the only module that imports ``comfy_api``; other ComfyUI modules are imported
inside the functions that need them, so node schemas load without a running host.
"""
