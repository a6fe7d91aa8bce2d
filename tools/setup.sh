#!/usr/bin/env bash
# One command to set up: a virtual environment with the pinned torch pair (torch 2.14.1, torchvision 0.29.1) and every
# requirement of the pack, its trainers and its tests, SAM2 (Meta's sam2 1.1.0, built without CUDA), and ComfyUI's own
# requirements when a ComfyUI checkout is there (COMFYUI_DIR, or ../shared/comfyui/ComfyUI-0.3.64 as in CI) so the
# real-host tests run. Idempotent: run it again and it installs only what is missing. .ci/run uses it too.
#
#   bash tools/setup.sh [VENV]          # default VENV: .venv
#   . .venv/bin/activate && python -m tools.demo && python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${1:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    echo "created the virtual environment $venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
constraints="$(mktemp)"
trap 'rm -f "$constraints" "$constraints.comfyui"' EXIT
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$constraints"
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
before="$(python -m pip freeze --all 2>/dev/null | sort)"

pip_install torch==2.14.1 torchvision==0.29.1
pip_install -c "$constraints" -r requirements.txt -r tests/requirements.txt  # tests/ pulls in trainers/requirements.txt
# SAM2 (Meta's code, PyPI sam2 1.1.0): after torch, without build isolation or CUDA (no nvcc, no second torch)
pip_install setuptools wheel
SAM2_BUILD_CUDA=0 pip_install --no-build-isolation -c "$constraints" sam2==1.1.0

comfyui="${COMFYUI_DIR:-$(cd .. && pwd)/shared/comfyui/ComfyUI-0.3.64}"
if [ -f "$comfyui/requirements.txt" ]; then
    # ComfyUI's requirements under the same torch pins; torchaudio left out (the pack never uses audio and no
    # torchaudio build matches torch 2.14.1 here; ComfyUI then logs its audio nodes as not imported)
    grep -vE '^[[:space:]]*(torch|torchvision|torchaudio)([^A-Za-z0-9_.-]|$)' "$comfyui/requirements.txt" \
        > "$constraints.comfyui"
    pip_install -c "$constraints" -r "$constraints.comfyui"
    echo "ComfyUI's requirements: from $comfyui (real-host tests: export COMFYUI_DIR=$comfyui)"
else
    echo "no ComfyUI checkout at $comfyui: the real-host tests will be skipped (set COMFYUI_DIR to run them)"
fi

installed="$(comm -13 <(echo "$before") <(python -m pip freeze --all | sort))"
if [ -n "$installed" ]; then
    echo "installed or updated $(echo "$installed" | wc -l) packages, among them:"
    echo "$installed" | grep -iE '^(torch|torchvision|diffusers|transformers|accelerate|safetensors|sam2|pytest|ruff)==' \
        | sed 's/^/  /' || true
else
    echo "nothing new to install"
fi
python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
echo "ready: . $venv/bin/activate"
