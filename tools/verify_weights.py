"""Check the weight files weights_manifest.json lists, on disk.

Run from the pack folder::

    python -m tools.verify_weights --models-dir /path/to/ComfyUI/models [--present-only] [--no-hash]

It checks every entry's file for presence, size, sha256 and a readable safetensors header, and
exits 1 with one line per problem (naming the file, its folder and the command that makes it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.manifest import MANIFEST_PATH, PACK_DIR, load_manifest, verify_manifest


def default_models_dir() -> Path:
    """``ComfyUI/models`` when the pack sits in ``ComfyUI/custom_nodes/<pack>``."""
    return PACK_DIR.parent.parent / "models"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.verify_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(MANIFEST_PATH))
    parser.add_argument("--models-dir", default=str(default_models_dir()))
    parser.add_argument("--present-only", action="store_true", help="do not report missing files")
    parser.add_argument("--no-hash", action="store_true", help="skip sha256 (size and header only)")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    checks = verify_manifest(manifest, args.models_dir, check_hash=not args.no_hash)
    if args.present_only:
        checks = [c for c in checks if c.status != "missing"]
    for check in checks:
        print(check.line())
    bad = sum(not c.ok for c in checks)
    print(f"{len(checks)} checked, {bad} problem(s); models dir: {args.models_dir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
