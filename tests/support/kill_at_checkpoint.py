"""Run a trainer and SIGKILL it at a chosen checkpoint: a deterministic stand-in for a user's kill -9.

    python tests/support/kill_at_checkpoint.py STEP {after,during} trainers.<name> [trainer args…]

``after``: the process dies right after the checkpoint of step STEP is complete (``latest.json`` points at it).
``during``: it dies while that checkpoint is half written (its first file is on disk, the rest is not),
so the previous checkpoint must be the one a resume finds. The process always exits by SIGKILL, at that
point and no other, whatever the machine's load; without such a checkpoint it exits with status 3.
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path


def main() -> None:
    step, when, module, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
    if when not in ("after", "during"):
        raise SystemExit(f"when: {when!r} is not 'after' or 'during'")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import trainers.common.checkpoint as checkpoint
    import trainers.common.run as run

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    save_checkpoint, save_file = run.save_checkpoint, checkpoint.save_file

    def save_then_die(run_dir, at, *a, **k):
        if when == "during" and at == step:
            def first_file_then_die(tensors, path, *fa, **fk):
                save_file(tensors, path, *fa, **fk)
                die()

            checkpoint.save_file = first_file_then_die
        path = save_checkpoint(run_dir, at, *a, **k)
        if at == step:
            die()
        return path

    run.save_checkpoint = save_then_die
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    sys.exit(3)  # the run ended without reaching the checkpoint it was to die at


if __name__ == "__main__":
    main()
