"""Start a real ComfyUI server (``COMFYUI_DIR``) on loopback with the pack installed, and talk to it.

The pack is linked into a temporary ``custom_nodes`` folder under a deliberately awkward name;
models, input, output, temp and user files live in the same temporary tree (``--base-directory``),
weight folders wired through an ``extra_model_paths.yaml`` like a user's, the database in memory.
ComfyUI's own folder is only read (it may be read-only, as in CI); nothing of it is copied or
installed here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .processes import SAFETY_TIMEOUT_S, pinned_env

REPO = Path(__file__).resolve().parents[2]
PACK_FOLDER = "ComfyUI-FewStep.Fill_Edit-test"  # dots and dashes: the loader must cope
CHECKPOINT = "tiny_sd15.safetensors"
BUILDER = Path(__file__).with_name("build_tiny_checkpoint.py")
TINY_FLUX_NODES = Path(__file__).with_name("tiny_flux_nodes")  # TestTinyFluxCheckpoint (test-only node pack)


def comfyui_dir() -> Path | None:
    value = os.environ.get("COMFYUI_DIR")
    return Path(value).resolve() if value else None


def comfyui_python() -> str:
    return os.environ.get("COMFYUI_PYTHON") or sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(cache_dir: Path, levels: int = 1) -> Path:
    """Build (or reuse, keyed by the builder's source) the random SD1.5-architecture checkpoint."""
    key = hashlib.sha256(BUILDER.read_bytes() + str(levels).encode()).hexdigest()[:12]
    path = cache_dir / f"tiny_sd15_l{levels}_{key}.safetensors"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([comfyui_python(), str(BUILDER), "--comfyui", str(comfyui_dir()), "--out", str(path),
                        "--levels", str(levels)], check=True, cwd=str(comfyui_dir()))
    return path


class ComfyServer:
    """A running ComfyUI with the pack; use as a context manager."""

    def __init__(self, base: Path, checkpoint: Path, *, cpu: bool = True, extra_args: tuple[str, ...] = (),
                 test_nodes: tuple[Path, ...] = ()):
        """``cpu``: ``--cpu`` (else ComfyUI's default device); ``extra_args``: more of main.py's options;
        ``test_nodes``: test-only custom node folders installed beside the pack (e.g. ``TINY_FLUX_NODES``)."""
        self.base = base
        self.cpu, self.extra_args = cpu, tuple(extra_args)
        self.test_nodes = tuple(path.name for path in test_nodes)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.input_dir = base / "input"
        self.output_dir = base / "output"
        self.log_path = base / "comfyui.log"
        for d in (base / "custom_nodes", base / "models" / "checkpoints", self.input_dir, self.output_dir):
            d.mkdir(parents=True, exist_ok=True)
        link = base / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        for folder in test_nodes:
            if not (base / "custom_nodes" / folder.name).exists():
                (base / "custom_nodes" / folder.name).symlink_to(folder, target_is_directory=True)
        if not (base / "models" / "checkpoints" / CHECKPOINT).exists():
            self.install("checkpoints", checkpoint, CHECKPOINT, link=True)
        self.yaml = base / "extra_model_paths.yaml"
        self.yaml.write_text(
            "fewstep_test:\n"
            f"  base_path: {base}\n"
            "  custom_nodes: custom_nodes\n"
            "  checkpoints: models/checkpoints\n"
            "  fewstep_inverfill: models/extra_inverfill\n"
            "  fewstep_rad: models/extra_rad\n"
            "  fewstep_turboedit: models/extra_turboedit\n"
            "  fewstep_turbofill: models/extra_turbofill\n"
            "  sam2: models/extra_sam2\n"
        )
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ComfyServer":
        cmd = [comfyui_python(), "main.py", *(["--cpu"] if self.cpu else []), "--listen", "127.0.0.1",
               "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base), "--output-directory", str(self.output_dir),
               "--input-directory", str(self.input_dir), "--extra-model-paths-config", str(self.yaml),
               "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_FOLDER, *self.test_nodes,
               "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = pinned_env(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=str(comfyui_dir()), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 900  # a start takes 10–30 s; this only catches a hung server
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited early:\n{self.log_text()[-4000:]}")
            try:
                self.get_json("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not start:\n{self.log_text()[-4000:]}")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()

    def install(self, folder: str, source: Path, name: str, *, link: bool = False) -> str:
        """Copy a weight file into ``models/<folder>`` as a user drops a file in (``link``: a hard link where
        it can be, for big files nobody alters); returns ``name``, the value a loader widget takes."""
        target = self.base / "models" / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if link and target.exists() and os.path.samefile(source, target):
            return name  # already linked
        if link and not target.exists() and _same_fs(source, target):
            os.link(source, target)
        else:
            shutil.copy(source, target)
        return name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get_json(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, route: str) -> bytes:
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return r.read()

    def post_json(self, route: str, value) -> int:
        """POST a JSON value (e.g. /settings/<id>); returns the HTTP status."""
        req = urllib.request.Request(self.url + route, data=json.dumps(value).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status

    def submit(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt → (HTTP status, JSON body)."""
        body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def run(self, prompt: dict, timeout: float = SAFETY_TIMEOUT_S) -> dict:
        """Submit a prompt and wait for its /history entry (raises if it was refused)."""
        status, body = self.submit(prompt)
        if status != 200:
            raise AssertionError(f"prompt refused ({status}): {json.dumps(body)[:2000]}")
        prompt_id = body["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if not self.alive():
                raise RuntimeError(f"ComfyUI died:\n{self.log_text()[-4000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def output_images(self, entry: dict, node_id: str) -> list[bytes]:
        images = entry["outputs"].get(node_id, {}).get("images", [])
        return [self.get_bytes("/view?" + urllib.parse.urlencode(
            {"filename": i["filename"], "subfolder": i["subfolder"], "type": i["type"]})) for i in images]


def error_message(entry: dict) -> str:
    """The exception message of a failed prompt, from its /history status messages."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return ""


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b.parent).st_dev
    except OSError:
        return False
